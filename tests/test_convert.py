"""Converters between our click JSON and Label Studio / CVAT / labelme: each tool's documented export
format read by hand-checked values, exact round trips (ours -> tool -> ours), and clear errors."""
import io
import json
import logging
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from pointseg_jax import errors
from pointseg_jax.data import convert
from pointseg_jax.data import click_json

DOG, PERSON, AEROPLANE, CAT = 12, 15, 1, 8

# Label Studio "JSON" export of a KeyPointLabels + Choices project (labelstud.io/guide/task_format,
# /tags/keypointlabels): percent coordinates of original_width / original_height.
LABEL_STUDIO = [
    {"id": 7, "data": {"image": "/data/upload/3/1a2b3c4d-2007_000032.jpg"},
     "annotations": [
         {"id": 11, "completed_by": 1, "was_cancelled": False, "lead_time": 12.3, "result": [
             {"original_width": 500, "original_height": 281, "image_rotation": 0,
              "value": {"x": 50.0, "y": 25.0, "width": 0.6, "keypointlabels": ["aeroplane"]},
              "id": "Zm9vYmFy", "from_name": "kp-1", "to_name": "img-1", "type": "keypointlabels",
              "origin": "manual"},
             {"original_width": 500, "original_height": 281, "image_rotation": 0,
              "value": {"x": 10.0, "y": 80.0, "width": 0.6, "keypointlabels": ["Aeroplane"]},
              "id": "YmF6cXV4", "from_name": "kp-1", "to_name": "img-1", "type": "keypointlabels",
              "origin": "manual"},
             {"original_width": 500, "original_height": 281, "image_rotation": 0,
              "value": {"x": 1, "y": 2, "width": 3, "height": 4, "rotation": 0,
                        "rectanglelabels": ["person"]},
              "id": "cmVjdA", "from_name": "box", "to_name": "img-1", "type": "rectanglelabels"},
             {"value": {"choices": ["aeroplane", "person"]}, "id": "dGFncw", "from_name": "tags",
              "to_name": "img-1", "type": "choices", "origin": "manual"}]},
         {"id": 12, "completed_by": 2, "was_cancelled": True, "result": []},
         {"id": 13, "completed_by": 3, "result": [
             {"original_width": 500, "original_height": 281, "image_rotation": 0,
              "value": {"x": 20.0, "y": 40.0, "width": 0.6, "keypointlabels": ["person"]},
              "id": "cGVyc29u", "from_name": "kp-1", "to_name": "img-1", "type": "keypointlabels"}]}]},
    {"id": 8, "data": {"image": "/data/local-files/?d=voc%2FJPEGImages%2F2007_000033.jpg"},
     "annotations": [{"id": 14, "completed_by": 1, "result": []}]},
]

# CVAT for images 1.1 (docs.cvat.ai/docs/other/xml_format): <points> shapes hold "x0,y0;x1,y1".
CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>4</id><name>points</name><size>2</size><mode>annotation</mode><overlap>0</overlap>
      <labels>
        <label><name>dog</name><type>points</type><attributes></attributes></label>
        <label><name>person</name><type>any</type><attributes></attributes></label>
        <label><name>cat</name><type>tag</type><attributes></attributes></label>
      </labels>
    </task>
    <dumped>2024-05-02 10:11:12.000000+00:00</dumped>
  </meta>
  <image id="0" name="voc/2007_000032.jpg" width="500" height="281">
    <points label="dog" source="manual" occluded="0" points="10.50,20.25;300.00,200.75" z_order="0">
    </points>
    <box label="person" source="manual" occluded="0" xtl="1.0" ytl="2.0" xbr="30.0" ybr="40.0" z_order="0">
    </box>
    <points label="person" source="manual" occluded="0" points="100.00,50.00" z_order="0">
      <attribute name="annotator">1</attribute>
    </points>
    <tag label="dog" source="manual">
    </tag>
    <tag label="cat" source="manual">
    </tag>
    <skeleton label="s1" source="manual" z_order="0">
      <points label="1" occluded="0" source="manual" outside="0" points="54.47,94.81">
      </points>
    </skeleton>
  </image>
  <image id="1" name="2007_000033.jpg" width="500" height="366">
  </image>
</annotations>
"""

# labelme (github.com/wkentaro/labelme, LabelFile): one JSON per image, point shapes [[x, y]].
LABELME = {
    "version": "5.5.0", "flags": {"dog": True, "cat": False},
    "shapes": [
        {"label": "dog", "points": [[12.5, 30.0]], "group_id": None, "description": "",
         "shape_type": "point", "flags": {}, "mask": None},
        {"label": "person", "points": [[1.0, 1.0], [5.0, 1.0], [5.0, 5.0]], "group_id": None,
         "description": "", "shape_type": "polygon", "flags": {}, "mask": None},
        {"label": "dog", "points": [[40.0, 10.25]], "group_id": None, "description": "",
         "shape_type": "point", "flags": {}, "mask": None}],
    "imagePath": "..\\JPEGImages\\2007_000032.jpg", "imageData": None,
    "imageHeight": 281, "imageWidth": 500}


def _write(path, text):
  path.write_text(text if isinstance(text, str) else json.dumps(text))
  return str(path)


def _rows(clicks):
  return [(r["x"], r["y"], r["cls"], r["rank"], r["annotator"], r.get("time_ms")) for r in clicks]


def test_label_studio_export(tmp_path, caplog):
  with caplog.at_level(logging.WARNING):
    rows = convert.read_tool("labelstudio", _write(tmp_path / "ls.json", LABEL_STUDIO))
  assert list(rows) == ["2007_000032", "2007_000033"]       # upload prefix and ?d= path understood
  # 50 % / 25 % of 500 x 281 -> (250, 70.25); 10 % / 80 % -> (50, 224.8); the cancelled annotation
  # is skipped, so the third annotation is annotator 1.
  assert _rows(rows["2007_000032"]) == [(250.0, 70.25, AEROPLANE, 1, 0, None),
                                        (50.0, pytest.approx(224.8), AEROPLANE, 2, 0, None),
                                        (100.0, pytest.approx(112.4), PERSON, 1, 1, None)]
  assert rows["2007_000033"] == []
  assert "ignored 1 cancelled annotations, 1 rectanglelabels results" in caplog.text


def test_cvat_export(tmp_path, caplog):
  with caplog.at_level(logging.WARNING):
    rows = convert.read_tool("cvat", _write(tmp_path / "annotations.xml", CVAT))
  assert _rows(rows["2007_000032"]) == [(10.5, 20.25, DOG, 1, 0, None), (300.0, 200.75, DOG, 2, 0, None),
                                        (100.0, 50.0, PERSON, 1, 1, None)]
  assert rows["2007_000033"] == []
  assert "ignored 1 <box> shapes, 1 <skeleton> shapes" in caplog.text
  assert "1 image tags name a class without a click" in caplog.text and "2007_000032:cat" in caplog.text


def test_cvat_zip_and_refusals(tmp_path):
  with zipfile.ZipFile(tmp_path / "task.zip", "w") as z:
    z.writestr("annotations.xml", CVAT)
  assert list(convert.read_tool("cvat", str(tmp_path / "task.zip"))) == ["2007_000032", "2007_000033"]
  bad = CVAT.replace("<annotations>", '<!DOCTYPE a [<!ENTITY x "y">]><annotations>', 1)
  with pytest.raises(errors.DataError, match="DOCTYPE or entities is refused"):
    convert.read_tool("cvat", _write(tmp_path / "bad.xml", bad))
  video = CVAT.replace('<image id="1" name="2007_000033.jpg" width="500" height="366">\n  </image>',
                       '<track id="0" label="dog"></track>')
  with pytest.raises(errors.DataError, match="'CVAT for video' export"):
    convert.read_tool("cvat", _write(tmp_path / "video.xml", video))
  with pytest.raises(errors.DataError, match="malformed XML"):
    convert.read_tool("cvat", _write(tmp_path / "cut.xml", CVAT[:300]))


def test_cvat_archives_and_encodings_that_were_tracebacks_or_passed(tmp_path, monkeypatch):
  """Issue 29: a non-zip .zip was a traceback; the DOCTYPE refusal was a byte search that a UTF-16
  file passed; a 1 MB zip could expand into gigabytes in memory."""
  (tmp_path / "notzip.zip").write_text(CVAT)
  with pytest.raises(errors.DataError, match=r"notzip.zip: not a zip archive \(File is not a zip"):
    convert.read_tool("cvat", str(tmp_path / "notzip.zip"))
  with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
    z.writestr("images/a.jpg", b"")
  with pytest.raises(errors.DataError, match=r"other.zip: the zip holds no annotations.xml"):
    convert.read_tool("cvat", str(tmp_path / "other.zip"))
  # UTF-16 is valid XML: read like UTF-8; its DOCTYPE is refused like UTF-8's.
  (tmp_path / "utf16.xml").write_bytes(CVAT.replace('"utf-8"', '"utf-16"').encode("utf-16"))
  assert convert.read_tool("cvat", str(tmp_path / "utf16.xml")) == convert.read_tool(
      "cvat", _write(tmp_path / "utf8.xml", CVAT))
  lol = CVAT.replace('"utf-8"?>', '"utf-16"?>\n<!DOCTYPE a [<!ENTITY x "y">]>', 1)
  assert b"<!DOCTYPE" not in lol.encode("utf-16")         # what the byte search missed
  (tmp_path / "lol16.xml").write_bytes(lol.encode("utf-16"))
  with pytest.raises(errors.DataError, match=r"lol16.xml: XML with a DOCTYPE or entities is refused"):
    convert.read_tool("cvat", str(tmp_path / "lol16.xml"))
  # The zip member's declared size is checked before anything is decompressed ...
  with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("annotations.xml", CVAT.replace("<annotations>", "<annotations>" + " " * 10**6))
  assert os.path.getsize(tmp_path / "bomb.zip") < 10_000
  monkeypatch.setattr(convert, "MAX_ZIP_XML_BYTES", 10**6)
  with pytest.raises(errors.DataError, match=r"bomb.zip: annotations.xml declares 100\d{4} bytes "
                                             r"uncompressed, over the 0.95\d* MiB this reader takes"):
    convert.read_tool("cvat", str(tmp_path / "bomb.zip"))
  # ... and the stream is cut at the cap whatever the header says.
  with pytest.raises(errors.DataError, match=r"s: more than 9.5\d*e-05 MiB uncompressed"):
    convert._Capped(io.BytesIO(b"x" * 101), 100, "s").read()
  assert convert._Capped(io.BytesIO(b"x" * 100), 100, "s").read() == b"x" * 100


def test_cvat_click_cap(tmp_path, monkeypatch):
  """At most MAX_CVAT_CLICKS clicks, counted before a points attribute is split."""
  path = _write(tmp_path / "a.xml", CVAT)
  monkeypatch.setattr(convert, "MAX_CVAT_CLICKS", 3)
  assert sum(len(r) for r in convert.read_tool("cvat", path).values()) == 3
  monkeypatch.setattr(convert, "MAX_CVAT_CLICKS", 2)
  with pytest.raises(errors.DataError, match=r"image 'voc/2007_000032.jpg': more than 2 clicks in "
                                             "one CVAT file; export fewer images per file"):
    convert.read_tool("cvat", path)


def test_labelme_subfolders_are_read(tmp_path):
  """Files in subfolders were skipped without a word (issue 29); an id twice is an error."""
  for sub, image in (("a", "2007_000032"), ("a/b", "2007_000033"), (".", "2008_000001")):
    (tmp_path / "lm" / sub).mkdir(parents=True, exist_ok=True)
    _write(tmp_path / "lm" / sub / f"{image}.json", {**LABELME, "imagePath": f"{image}.jpg"})
  rows = convert.read_tool("labelme", str(tmp_path / "lm"))
  assert list(rows) == ["2007_000032", "2007_000033", "2008_000001"]
  assert all(len(r) == 2 for r in rows.values())
  _write(tmp_path / "lm" / "a" / "b" / "copy.json", {**LABELME, "imagePath": "2008_000001.jpg"})
  with pytest.raises(errors.DataError, match=r"b/copy.json: image '2008_000001' appears twice"):
    convert.read_tool("labelme", str(tmp_path / "lm"))
  with pytest.raises(errors.DataError, match=r"no labelme .json files in this folder or its subfolders"):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    convert.read_tool("labelme", str(tmp_path / "empty"))


def test_a_truncated_image_is_refused_when_writing_a_tool_file(tmp_path):
  """--to needs every clicked image's size: a truncated one is a one-line error naming it."""
  images, ours, _ = _ours(tmp_path, np.random.default_rng(0))
  path = os.path.join(images, "2007_000033.jpg")
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 2])
  with pytest.raises(errors.DataError, match=r"2007_000033.jpg: corrupt or unreadable "
                                             r"image \(image file is truncated"):
    convert.write_tool("cvat", str(tmp_path / "a.xml"), convert.read_ours(ours), images)
  assert not (tmp_path / "a.xml").exists()


def test_two_images_with_one_id_are_refused_when_writing_a_tool_file(tmp_path):
  """x.jpg beside x.png: the first by name was taken without a word before."""
  images, ours, _ = _ours(tmp_path, np.random.default_rng(0))
  Image.new("RGB", (5, 5)).save(os.path.join(images, "2007_000033.png"))
  with pytest.raises(errors.DataError, match=r"'2007_000033.jpg' and '2007_000033.png' have the same "
                                             "image id"):
    convert.write_tool("labelme", str(tmp_path / "lm"), convert.read_ours(ours), images)


def test_labelme_files(tmp_path, caplog):
  d = tmp_path / "labelme"
  d.mkdir()
  _write(d / "2007_000032.json", LABELME)
  _write(d / "2007_000033.json", {**LABELME, "shapes": [], "flags": {},
                                  "imagePath": "2007_000033.jpg"})
  with caplog.at_level(logging.WARNING):
    rows = convert.read_tool("labelme", str(d))
  assert _rows(rows["2007_000032"]) == [(12.5, 30.0, DOG, 1, 0, None), (40.0, 10.25, DOG, 2, 0, None)]
  assert rows["2007_000033"] == []
  assert "ignored 1 polygon shapes" in caplog.text
  assert list(convert.read_tool("labelme", str(d / "2007_000033.json"))) == ["2007_000033"]


@pytest.mark.parametrize("tool,content,match", [
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "keypointlabels", "original_width": 10, "original_height": 10,
         "value": {"x": 1, "y": 1, "keypointlabels": ["kitten"]}}]}]}],
     r"label 'kitten' is not a PASCAL VOC class; .* --label_map kitten=<voc name>"),
    ("labelstudio", [{"data": {"img": "a.jpg"}}], "data has no image URL under 'image'"),
    ("labelstudio", {"x": 1}, "a task must be an object with a 'data' object"),
    ("labelstudio", [{"data": {"image": "a.jpg"}}, {"data": {"image": "b/a.png"}}],
     "image 'a' appears twice"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "keypointlabels", "value": {"x": 1, "y": 1, "keypointlabels": ["dog"]}}]}]}],
     "original_width None is not a finite number"),
    ("labelme", {"shapes": [{"label": "dog", "shape_type": "point", "points": [[1, 2], [3, 4]]}],
                 "imagePath": "a.jpg"}, r"a point shape needs points \[\[x, y\]\]"),
    ("labelme", {"shapes": [{"label": "dog", "shape_type": "point", "points": [["a", 2]]}],
                 "imagePath": "a.jpg"}, "x 'a' is not a number"),
    ("labelme", {"imagePath": "a.jpg"}, "not a labelme file"),
    ("cvat", '<?xml version="1.0"?><annotations><image name="a.jpg" width="9" height="9">'
             '<points label="dog" points="1,2,3"/></image></annotations>', "must be 'x,y;x,y;...'"),
    ("cvat", '<?xml version="1.0"?><root/>', "expected <annotations>"),
    # Issue 29: type-confused Label Studio files, each a traceback before; now the field is named.
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": 5}],
     r"task 0: field 'annotations' is 5, expected a list"),
    ("labelstudio", [{"id": 3, "data": {"image": "a.jpg"}, "annotations": ["done"]}],
     r"task 3: annotations\[0\] is 'done', expected an object"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": "dog"}]}],
     r"task 0: annotations\[0\]: field 'result' is 'dog', expected a list"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [7]}]}],
     r"task 0: annotations\[0\].result\[0\] is 7, expected an object"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "keypointlabels", "value": "50,25"}]}]}],
     r"annotations\[0\].result\[0\]: field 'value' is '50,25', expected an object"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "keypointlabels", "value": {"x": 1, "y": 1, "keypointlabels": "dog"}}]}]}],
     r"result\[0\].value: field 'keypointlabels' is 'dog', expected a list"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "choices", "value": {"choices": "dog"}}]}]}],
     r"result\[0\].value: field 'choices' is 'dog', expected a list"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "keypointlabels", "original_width": 10, "original_height": 10,
         "value": {"x": 1, "y": 1, "keypointlabels": [["dog"]]}}]}]}],
     r"label \['dog'\] is not a PASCAL VOC class; .* --label_map LABEL=<voc name>"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "keypointlabels", "original_width": 10, "original_height": 10, "meta": "rank=2",
         "value": {"x": 1, "y": 1, "keypointlabels": ["dog"]}}]}]}],
     r"result\[0\]: field 'meta' is 'rank=2', expected an object"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "keypointlabels", "original_width": 10, "original_height": 10,
         "meta": {"text": 5}, "value": {"x": 1, "y": 1, "keypointlabels": ["dog"]}}]}]}],
     r"result\[0\].meta: field 'text' is 5, expected a list"),
    ("labelstudio", [{"data": {"image": "http://[::1/a.jpg"}}], r"task 0: image URL .* is not a URL"),
    ("labelstudio", [{"data": {"image": "/data/"}}], r"task 0: image URL '/data/' names no file"),
    ("labelstudio", '"export"', r"expected Label Studio's JSON export \(a list of tasks\)"),
    # A zero width put every click at x = 0 before; a huge one overflowed.
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "keypointlabels", "original_width": 0, "original_height": 10,
         "value": {"x": 50, "y": 50, "keypointlabels": ["dog"]}}]}]}],
     r"annotations\[0\].result\[0\]: original_width 0 must be >= 1 \(the image's size in pixels\)"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "keypointlabels", "original_width": 1e300, "original_height": 10,
         "value": {"x": 50, "y": 50, "keypointlabels": ["dog"]}}]}]}],
     r"original_width 1e\+300 must be an integer|original_width 1e\+300 is out of range"),
    ("labelstudio", [{"data": {"image": "a.jpg"}, "annotations": [{"result": [
        {"type": "keypointlabels", "original_width": 10, "original_height": 10,
         "value": {"x": 1e999, "y": 50, "keypointlabels": ["dog"]}}]}]}],
     r"x inf is not a finite number"),
    ("labelme", {"shapes": [], "imagePath": 7}, r"field 'imagePath' is 7, expected a string"),
    ("labelme", {"shapes": [], "imagePath": "a.jpg", "imageHeight": 0, "imageWidth": 5},
     r"imageHeight 0 must be >= 1"),
    ("cvat", '<?xml version="1.0"?><annotations><image name="a.jpg" width="0" height="9">'
             '</image></annotations>', r"image 'a.jpg': width 0 must be >= 1"),
    ("cvat", '<?xml version="1.0"?><annotations><image name="a.jpg" width="9" height="9">'
             '<points label="dog" points="1,2"><attribute name="rank">%s</attribute></points>'
             '</image></annotations>' % ("9" * 400), r"rank 9999.* is out of range"),
    ("cvat", '<?xml version="1.0"?><annotations><image name="a.jpg" width="9" height="9">'
             '<points label="dog" points="1,2"><attribute name="rank">%s</attribute></points>'
             '</image></annotations>' % ("9" * 5000), r"rank '9999.*' is not a number"),
    ("cvat", '<?xml version="1.0"?><annotations><version>1.1</version></annotations>',
     r"no <image> elements"),
    # Issue 29: a shape with no point was dropped without a word.
    ("cvat", '<?xml version="1.0"?><annotations><image name="a.jpg" width="9" height="9">'
             '<points label="dog" points=""/></image></annotations>',
     r"image 'a.jpg': a <points> shape of label 'dog' has no point \(points=''\)"),
])
def test_bad_tool_files(tmp_path, tool, content, match):
  with pytest.raises(errors.DataError, match=match) as e:
    convert.read_tool(tool, _write(tmp_path / "in.json", content))
  assert str(e.value).startswith(str(tmp_path / "in.json") + ":")   # names the file
  assert "\n" not in str(e.value) and len(str(e.value)) < 600         # one short line


@pytest.mark.parametrize("tool", ["labelstudio", "labelme"])
def test_deep_and_huge_number_json_is_one_line(tmp_path, tool):
  """json.load raised RecursionError / ValueError here (issue 25 item 7, issue 29)."""
  deep = tmp_path / "deep.json"
  deep.write_text("[" * 50_000 + "]" * 50_000)
  with pytest.raises(errors.DataError, match=r"deep.json: JSON nested 50000 levels deep"):
    convert.read_tool(tool, str(deep))
  big = tmp_path / "big.json"
  big.write_text('[{"data": {"image": "a.jpg"}, "id": %s}]' % ("7" * 5000))
  with pytest.raises(errors.DataError, match=r"big.json: an integer of 5000 digits"):
    convert.read_tool(tool, str(big))


def test_label_studio_tasks_without_annotations_are_left_out_and_counted(tmp_path, caplog):
  """No annotation (or only cancelled ones) = nobody looked: not "no class present" (issue 29).
  An annotation with an empty result is an annotator's answer "nothing here" and is kept."""
  tasks = [{"id": 1, "data": {"image": "seen_empty.jpg"}, "annotations": [{"result": []}]},
           {"id": 2, "data": {"image": "never.jpg"}, "annotations": []},
           {"id": 3, "data": {"image": "no_key.jpg"}},
           {"id": 4, "data": {"image": "cancelled.jpg"},
            "annotations": [{"result": [], "was_cancelled": True}]},
           {"id": 5, "data": {"image": "dog.jpg"}, "annotations": [{"result": [
               {"type": "keypointlabels", "original_width": 100, "original_height": 50,
                "value": {"x": 10.0, "y": 50.0, "keypointlabels": ["dog"]}}]}]}]
  with caplog.at_level(logging.WARNING):
    rows = convert.read_tool("labelstudio", _write(tmp_path / "ls.json", tasks))
  assert rows == {"dog": [{"x": 10.0, "y": 25.0, "cls": DOG, "rank": 1, "annotator": 0}],
                  "seen_empty": []}
  assert ("3 tasks have no annotation (or only cancelled ones) and are left out: nobody said "
          "which classes they hold, so they are not 'no class present': never, no_key, cancelled"
          in caplog.text)
  assert "ignored 1 cancelled annotations" in caplog.text
  # An image left out once and annotated in another task is still an image listed twice.
  with pytest.raises(errors.DataError, match="image 'never' appears twice"):
    convert.read_tool("labelstudio", _write(tmp_path / "ls2.json", tasks + [
        {"data": {"image": "x/never.png"}, "annotations": [{"result": []}]}]))


def test_label_map_and_aliases(tmp_path):
  labels = convert.Labels({"doggo": "dog", "Sofa Chair": "sofa", "TV": "20"})
  assert labels.cls("doggo", source="x") == DOG
  assert labels.cls("sofa-chair", source="x") == 18
  assert labels.cls("Dining Table", source="x") == 11
  assert labels.cls("motorcycle", source="x") == 14
  assert labels.cls("tv", source="x") == 20
  with pytest.raises(errors.ConfigError, match="'unicorn' is not a VOC class"):
    convert.Labels({"x": "unicorn"})


# ----------------------------------------------------------------------------------------------
# Round trips.


def _ours(tmp_path, rng):
  """A click file as the annotation tool exports it: 3 annotators, ranks, time_ms on some clicks,
  an image with no click, float32 coordinates; plus the images it refers to."""
  images = tmp_path / "images"
  images.mkdir()
  sizes = {"2007_000032": (281, 500), "2007_000033": (366, 500), "2008_000001": (48, 64)}
  for image, (h, w) in sizes.items():
    Image.new("RGB", (w, h)).save(images / f"{image}.jpg")
  data = {
      "2007_000032": [
          {"x": 250.0, "y": 70.25, "cls": AEROPLANE, "rank": 1, "annotator": 0, "time_ms": 2410},
          {"x": 50.0, "y": 224.8, "cls": AEROPLANE, "rank": 2, "annotator": 0, "time_ms": 3300},
          {"x": 100.1, "y": 112.4, "cls": PERSON, "rank": 1, "annotator": 0, "time_ms": 4000},
          {"x": 251.5, "y": 71.0, "cls": AEROPLANE, "rank": 1, "annotator": 1},
          {"x": 99.9, "y": 110.0, "cls": PERSON, "rank": 1, "annotator": 2, "time_ms": 1980}],
      "2007_000033": [],
      "2008_000001": [{"x": float(x), "y": float(y), "cls": CAT, "rank": k + 1, "annotator": 0}
                      for k, (x, y) in enumerate(rng.uniform(0, 48, (20, 2)).astype(np.float32))],
  }
  path = tmp_path / "ours.json"
  path.write_text(json.dumps(data))
  canonical = tmp_path / "canonical.json"
  click_json.write_click_json(str(canonical), click_json.load_clicks(str(path)))
  return str(images), str(path), canonical.read_bytes()


@pytest.mark.parametrize("tool", convert.TOOLS)
def test_round_trip_is_exact(tmp_path, tool):
  images, ours, canonical = _ours(tmp_path, np.random.default_rng(0))
  out = str(tmp_path / ("tool_dir" if tool == "labelme" else f"tool.{'xml' if tool == 'cvat' else 'json'}"))
  convert.write_tool(tool, out, convert.read_ours(ours), images)
  back = tmp_path / "back.json"
  convert.write_ours(str(back), convert.read_tool(tool, out))
  assert back.read_bytes() == canonical
  # The tool file is what that tool reads: spot-check the values it holds.
  if tool == "labelstudio":
    task = json.load(open(out))[0]
    kp = task["annotations"][0]["result"][0]
    assert task["data"]["image"] == "2007_000032.jpg" and len(task["annotations"]) == 3
    assert kp["value"]["x"] == pytest.approx(50.0) and kp["original_width"] == 500
    assert kp["value"]["keypointlabels"] == ["aeroplane"] and kp["meta"]["text"] == ["rank=1 time_ms=2410"]
  elif tool == "cvat":
    text = open(out).read()
    assert '<image id="0" name="2007_000032.jpg" width="500" height="281">' in text
    assert 'points="250.0,70.25"' in text and '<tag label="aeroplane" source="manual" />' in text
  else:
    lm = json.load(open(os.path.join(out, "2007_000032.json")))
    assert lm["imagePath"] == "../images/2007_000032.jpg" and lm["imageWidth"] == 500
    assert lm["flags"]["aeroplane"] and lm["flags"]["person"] and not lm["flags"]["dog"]
    assert lm["shapes"][1] == {"label": "aeroplane", "points": [[50.0, 224.8]], "group_id": None,
                               "description": "", "shape_type": "point", "flags": {}, "mask": None,
                               "annotator": 0, "rank": 2, "time_ms": 3300}


def test_label_studio_percentages_round_trip_every_float32(tmp_path):
  """x -> x / W * 100 -> * W / 100 in float64 gives back every float32 x (10,000 random cases)."""
  rng = np.random.default_rng(1)
  rows, images = {}, {}
  for i in range(100):
    h, w = (int(v) for v in rng.integers(1, 5000, 2))
    xy = rng.uniform(0, 1, (100, 2)) * [w, h]
    rows[f"im{i}"] = [{"x": float(np.float32(x)), "y": float(np.float32(y)), "cls": DOG,
                       "rank": k + 1, "annotator": 0} for k, (x, y) in enumerate(xy)]
    images[f"im{i}"] = (f"im{i}.jpg", h, w)
  before = convert.to_arrays(rows)
  convert.write_labelstudio(str(tmp_path / "ls.json"), rows, images)
  after = convert.to_arrays(convert.read_labelstudio(str(tmp_path / "ls.json"), convert.Labels()))
  for image in rows:
    np.testing.assert_array_equal(after[image]["x"], before[image]["x"])
    np.testing.assert_array_equal(after[image]["y"], before[image]["y"])


def test_interleaved_annotators_come_back_grouped(tmp_path):
  """Label Studio keeps one annotation per annotator, so an image's clicks come back grouped by
  annotator (stable); the clicks themselves are the same."""
  images, _, _ = _ours(tmp_path, np.random.default_rng(0))
  rows = {"2007_000032": [{"x": 1.0, "y": 2.0, "cls": DOG, "rank": 1, "annotator": 1},
                          {"x": 3.0, "y": 4.0, "cls": DOG, "rank": 1, "annotator": 0}]}
  convert.write_tool("labelstudio", str(tmp_path / "ls.json"), rows, images)
  back = convert.read_tool("labelstudio", str(tmp_path / "ls.json"))
  assert back["2007_000032"] == sorted(rows["2007_000032"], key=lambda r: r["annotator"])


# ----------------------------------------------------------------------------------------------
# The command line.


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "pointseg_jax.data.convert", *args],
                        capture_output=True, text=True, timeout=60)


@pytest.mark.e2e
def test_cli_both_directions_and_errors(tmp_path):
  images, ours, canonical = _ours(tmp_path, np.random.default_rng(0))
  r = _cli("--to=cvat", f"--input={ours}", f"--images={images}", f"--output={tmp_path / 'a.xml'}")
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip().endswith(f"25 clicks on 3 images: {ours} -> {tmp_path / 'a.xml'}")
  r = _cli("--from=cvat", f"--input={tmp_path / 'a.xml'}", f"--output={tmp_path / 'b.json'}")
  assert r.returncode == 0 and (tmp_path / "b.json").read_bytes() == canonical
  r = _cli("--to=labelme", f"--input={ours}", f"--output={tmp_path / 'lm'}")
  assert r.returncode == 2 and r.stderr.strip() == "error: --to labelme needs --images DIR (each image's file name and size)"
  r = _cli("--from=labelme", "--to=cvat", "--input=x", "--output=y")
  assert r.returncode == 2 and "give exactly one of --from TOOL" in r.stderr
  r = _cli("--from=labelstudio", f"--input={tmp_path / 'missing.json'}", "--output=y")
  assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'missing.json'}: Label Studio export not found"
  r = _cli("--print_labelstudio_config")
  assert r.returncode == 0 and '<KeyPointLabels name="point" toName="image">' in r.stdout
  assert '<Label value="tvmonitor"/>' in r.stdout and 'choice="multiple"' in r.stdout


@pytest.mark.e2e
def test_cli_asked_classes(tmp_path):
  """Issue 29: the tools' formats cannot say which classes were asked. --to logs it and names the
  --asked that restores it; --from --asked writes it; without --asked a class subset is logged."""
  images, ours, canonical = _ours(tmp_path, np.random.default_rng(0))
  asked_file = tmp_path / "asked.json"
  clicks = click_json.load_clicks(ours)
  asked = {k: [AEROPLANE, PERSON, CAT] for k in clicks}
  click_json.write_click_json(str(asked_file), clicks, asked)
  r = _cli("--to=labelme", f"--input={asked_file}", f"--images={images}", f"--output={tmp_path / 'lm'}")
  assert r.returncode == 0, r.stderr
  assert "3 images name the classes they were asked about; labelme files cannot carry that: " \
         "convert back with --asked aeroplane,cat,person" in r.stderr
  r = _cli("--from=labelme", f"--input={tmp_path / 'lm'}", f"--output={tmp_path / 'all.json'}")
  assert r.returncode == 0 and "the clicks use 3 of the 20 classes (aeroplane, cat, person); " \
      "every image is written with all 20 asked" in r.stderr
  assert (tmp_path / "all.json").read_bytes() == canonical
  r = _cli("--from=labelme", f"--input={tmp_path / 'lm'}", f"--output={tmp_path / 'back.json'}",
           "--asked=aeroplane,cat,Person")
  assert r.returncode == 0 and "pass --asked" not in r.stderr
  assert (tmp_path / "back.json").read_bytes() == asked_file.read_bytes()   # exact round trip
  r = _cli("--from=labelme", f"--input={tmp_path / 'lm'}", f"--output={tmp_path / 'x.json'}",
           "--asked=aeroplane,unicorn")
  assert r.returncode == 2 and "--asked: label 'unicorn' is not a PASCAL VOC class" in r.stderr


@pytest.mark.e2e
def test_cli_bad_files_are_one_line(tmp_path):
  """What were tracebacks from `python -m pointseg_jax.data.convert` (issue 25 item 7, issue 29)."""
  (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
  (tmp_path / "task.zip").write_text("<annotations/>")
  for tool, name, line in [
      ("labelstudio", "deep.json", "JSON nested 100000 levels deep; a Label Studio export is at "
       "most 64 levels deep (a damaged or wrong file?)"),
      ("cvat", "task.zip", "not a zip archive (File is not a zip file); give CVAT's export zip or "
       "its annotations.xml")]:
    r = _cli(f"--from={tool}", f"--input={tmp_path / name}", f"--output={tmp_path / 'out.json'}")
    assert (r.returncode, r.stderr.strip()) == (2, f"error: {tmp_path / name}: {line}")
  assert not (tmp_path / "out.json").exists()


@pytest.mark.integration
def test_a_tool_export_feeds_the_dataset_builder(tmp_path):
  """One conversion command and the voc2012_points builder reads the result: a Label Studio export
  of clicks on a fabricated VOC tree becomes the builder's click file, every click on its object."""
  from voc_tree import make_tree
  from pointseg_jax.data.voc2012_points import voc2012_points as vp
  root = tmp_path / "manual"
  root.mkdir()
  truth, _, _ = make_tree(root)
  rows = {}
  for image, (mask, _) in truth.items():      # a person in Label Studio: a click on each object
    rows[image] = []
    for cls in sorted(int(c) for c in np.unique(mask) if 1 <= c <= 20):
      ys, xs = np.nonzero(mask == cls)
      k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
      rows[image].append({"x": xs[k] + 0.5, "y": ys[k] + 0.5, "cls": cls, "rank": 1, "annotator": 0})
  images = str(root / "VOCdevkit" / "VOC2012" / "JPEGImages")
  convert.write_tool("labelstudio", str(tmp_path / "ls.json"), rows, images)
  (root / vp.SUPP_JSON).unlink()
  r = _cli("--from=labelstudio", f"--input={tmp_path / 'ls.json'}", f"--output={root / vp.MAIN_JSON}")
  assert r.returncode == 0, r.stderr
  clicks = click_json.load_clicks(str(root / vp.MAIN_JSON))
  src = vp.Sources(str(root))
  for image, (mask, _) in truth.items():
    ex = vp.make_example(src, image, clicks, vp.Counts())
    c = ex["clicks"]
    assert len(c["x"]) == len(rows[image]) > 0
    np.testing.assert_array_equal(mask[c["y"].astype(int), c["x"].astype(int)], c["cls"])
