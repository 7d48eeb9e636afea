"""Converters between our click JSON and Label Studio / CVAT / labelme: each tool's documented export
format read by hand-checked values, exact round trips (ours -> tool -> ours), and clear errors."""
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
])
def test_bad_tool_files(tmp_path, tool, content, match):
  with pytest.raises(errors.DataError, match=match):
    convert.read_tool(tool, _write(tmp_path / "in.json", content))


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
  assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'missing.json'}: file not found"
  r = _cli("--print_labelstudio_config")
  assert r.returncode == 0 and '<KeyPointLabels name="point" toName="image">' in r.stdout
  assert '<Label value="tvmonitor"/>' in r.stdout and 'choice="multiple"' in r.stdout


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
