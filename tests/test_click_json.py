"""pointseg_jax.data.click_json: the released two-file click format and our extended one.

Every bad file a user can give gets one DataError naming the file, the image and the field; what
the writer writes, the reader reads back, and what the reader rejects, the writer refuses.
"""
import json

import numpy as np
import pytest

from pointseg_jax.data import click_json
from pointseg_jax.data import clicks as C
from pointseg_jax.errors import DataError

@pytest.mark.parametrize("text, message", [
    ('{"a": [{"x": 1.5, "y": 2', "malformed JSON"),
    ('[1, 2]', r"top level must be an object"),
    ('{"a": 5}', r"image 'a': value must be a list of clicks"),
    ('{"a": {"x": 1}}', r"image 'a': an image's object must have exactly the keys \"asked\" and"),
    # Issue 29: the "asked" classes of an image.
    ('{"a": {"asked": [3], "clicks": 4}}', r"image 'a': value must be a list of clicks"),
    ('{"a": {"asked": "dog", "clicks": []}}', r"image 'a': \"asked\" must be a list of class ids"),
    ('{"a": {"asked": [true], "clicks": []}}', r"\"asked\" must be a list of class ids 1..20"),
    ('{"a": {"asked": [0, 3], "clicks": []}}', r"\"asked\" \[0, 3\] must list distinct class ids "
     r"1..20 \(\[0\] are not\)"),
    ('{"a": {"asked": [3, 3], "clicks": []}}', r"must list distinct class ids 1..20 \(some twice\)"),
    ('{"a": {"asked": [3], "clicks": [{"x": 1.0, "y": 2.0, "cls": 5, "rank": 1}]}}',
     r"image 'a': clicks on classes \[5\] that \"asked\" \[3\] does not list"),
    ('{"a": [3]}', r"image 'a': a click must be an object"),
    ('{"a": [{"x": 1.5, "y": 2.0, "cls": 3}]}', r"image 'a': click .* lacks keys \['rank'\]"),
    ('{"a": [{"x": "1", "y": 2.0, "cls": 3, "rank": 1}]}', r"field 'x' is '1', expected a number"),
    ('{"a": [{"x": NaN, "y": 2.0, "cls": 3, "rank": 1}]}', r"field 'x' is not finite"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 0, "rank": 1}]}', r"click cls 0 not in 1..20"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2.5, "rank": 1}]}', r"'cls' = 2.5 must be an integer"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2, "rank": 0}]}', r"field 'rank' = 0 must be >= 1"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2, "rank": 1, "annotator": "w"}]}', r"'annotator' is 'w'"),
    # Issue 15: each of these used to be accepted.
    ('{"a": [{"x": 1e40, "y": 2.0, "cls": 3, "rank": 1}]}',        # float32(1e40) = inf
     r"image 'a': click field 'x' = 1e\+40 is not a pixel coordinate \(\|x\| must be <= 65536"),
    ('{"a": [{"x": 1.0, "y": -7e5, "cls": 3, "rank": 1}]}', r"field 'y' = -700000.0 is not a pixel"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2, "rank": 1, "annotator": -1}]}',
     r"image 'a': click field 'annotator' = -1 must be >= 0"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2, "rank": 1, "time_ms": -5}]}',
     r"field 'time_ms' = -5 must be >= 0"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2, "rank": 4294967296}]}', r"'rank' = 4294967296 does not fit"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2, "rank": 1}], "b": [], '
     '"a": [{"x": 5.0, "y": 6.0, "cls": 7, "rank": 1}]}',
     r"key 'a' appears twice in one JSON object \(an image id listed twice.*merge the entries"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2, "rank": 1, "x": 3.0}]}', r"key 'x' appears twice"),
    # Issue 25 / 29: each of these used to be a traceback (RecursionError, ValueError, OverflowError).
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", r"JSON nested 100001 levels deep; a click "
     r"file is at most 64 levels deep"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2, "rank": 1%s}]}' % ("0" * 400),
     r"an integer of 401 digits \(100000000000\.\.\.\); numbers in this file must fit 64 bits"),
    ('{"a": [{"x": %s, "y": 2.0, "cls": 2, "rank": 1}]}' % ("9" * 5000), r"an integer of 5000 digits"),
    ('{"a": [{"x": 1e999, "y": 2.0, "cls": 2, "rank": 1}]}', r"field 'x' is not finite \(inf\)"),
    ('{"a": [' + '"' + "w" * 10_000 + '"]}', r"a click must be an object .* got 'wwwwww.*'$"),
])
def test_malformed_click_json(tmp_path, text, message):
  path = tmp_path / "clicks.json"
  path.write_text(text)
  with pytest.raises(DataError, match=r"clicks.json: .*" + message):
    click_json.read_click_json(path)


def test_a_huge_python_int_is_refused_before_any_float_conversion():
  """The writer checks clicks with the reader's checks; float(10**400) would raise OverflowError."""
  with pytest.raises(DataError, match=r"field 'rank' = 1000.* is out of range"):
    click_json.check_click({"x": 1.0, "y": 2.0, "cls": 2, "rank": 10**400}, source="f", image_id="a")


def test_missing_click_json(tmp_path):
  with pytest.raises(DataError, match=r"none.json: click file not found"):
    click_json.load_clicks(tmp_path / "none.json")


def test_released_format_main_and_supp(tmp_path):
  """main -> annotator 0; supp: the k-th rank-1 click of a class starts annotator k."""
  main = {"2008_000001": [{"x": 244.94, "y": 10.5, "cls": 15, "rank": 1},
                          {"x": 30.0, "y": 40.25, "cls": 15, "rank": 2},
                          {"x": 7.75, "y": 8.0, "cls": 3, "rank": 1}],
          "2008_000002": []}
  supp = {"2008_000001": [{"x": 1.0, "y": 1.0, "cls": 15, "rank": 1},
                          {"x": 2.0, "y": 2.0, "cls": 3, "rank": 1},
                          {"x": 3.0, "y": 3.0, "cls": 15, "rank": 2},     # annotator 1's 2nd
                          {"x": 4.0, "y": 4.0, "cls": 15, "rank": 1},     # annotator 2 starts
                          {"x": 5.0, "y": 5.0, "cls": 3, "rank": 1}]}
  (tmp_path / "main.json").write_text(json.dumps(main))
  (tmp_path / "supp.json").write_text(json.dumps(supp))
  got = click_json.load_clicks(tmp_path / "main.json", tmp_path / "supp.json")
  a = got["2008_000001"]
  np.testing.assert_array_equal(a["annotator"], [0, 0, 0, 1, 1, 1, 2, 2])
  np.testing.assert_array_equal(a["cls"], [15, 15, 3, 15, 3, 15, 15, 3])
  np.testing.assert_array_equal(a["rank"], [1, 2, 1, 1, 1, 2, 1, 1])
  assert a["x"].dtype == np.float32 and a["x"][0] == np.float32(244.94)
  assert len(got["2008_000002"]["x"]) == 0 and got["2008_000002"]["rank"].dtype == np.int32


def test_supp_orphan_rank_goes_to_first_annotator(tmp_path, caplog):
  rows, orphans = click_json.assign_supp_annotators([
      {"cls": 4, "rank": 2}, {"cls": 4, "rank": 1}, {"cls": 4, "rank": 1}, {"cls": 4, "rank": 1}])
  assert [r["annotator"] for r in rows] == [1, 1, 2, 3] and orphans == 1
  (tmp_path / "s.json").write_text(json.dumps({"img7": [{"x": 1.0, "y": 1.0, "cls": 2, "rank": 2}]}))
  with caplog.at_level("WARNING"):
    click_json.load_clicks(None, tmp_path / "s.json")
  assert "1 clicks of rank >= 2 come before any rank-1 click of their class" in caplog.text
  assert "in 1 images: img7" in caplog.text


def _simulated(n=12, seed=0, error_model=C.CrowdErrorModel()):
  rng = np.random.default_rng(seed)
  out = {}
  for i in range(n):
    mask = np.zeros((60, 80), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
      y, x = rng.integers(0, 50), rng.integers(0, 70)
      mask[y:y + int(rng.integers(4, 15)), x:x + int(rng.integers(4, 15))] = rng.integers(1, 21)
    out[f"2011_{i:06d}"] = C.simulate_annotations(mask, None, rng, error_model=error_model)["clicks"]
  out["2011_999999"] = click_json.empty_clicks()
  return out


def _assert_same(a, b):
  assert sorted(a) == sorted(b)
  for key in a:
    for field in ("y", "x", "cls", "rank", "annotator"):
      np.testing.assert_array_equal(a[key][field], b[key][field], err_msg=f"{key} {field}")
      assert a[key][field].dtype == b[key][field].dtype


def _sorted(c):
  order = np.lexsort((c["rank"], c["cls"], c["annotator"]))
  return {k: v[order] for k, v in c.items()}


def test_released_two_file_round_trip(tmp_path):
  clicks = _simulated(error_model=C.NO_ERRORS)
  click_json.write_released_json(tmp_path / "m.json", tmp_path / "s.json", clicks)
  main = json.loads((tmp_path / "m.json").read_text())
  assert set(main["2011_000000"][0]) == {"x", "y", "cls", "rank"}     # exactly the released keys
  back = click_json.load_clicks(tmp_path / "m.json", tmp_path / "s.json")
  # Written annotator by annotator, so reading gives the same clicks in that order.
  _assert_same({k: _sorted(c) for k, c in clicks.items()}, back)


def test_released_format_cannot_name_who_missed_a_class(tmp_path):
  """With missed classes the supp file cannot say which worker missed: coordinates, classes and
  ranks still round-trip; the annotator of a class clicked by one supp worker only reads as 1."""
  clicks = _simulated(n=40, error_model=C.CrowdErrorModel(missed_class=0.3))
  click_json.write_released_json(tmp_path / "m.json", tmp_path / "s.json", clicks)
  back = click_json.load_clicks(tmp_path / "m.json", tmp_path / "s.json")
  renamed = 0
  for key, c in clicks.items():
    c, b = _sorted(c), back[key]
    for field in ("y", "x", "cls", "rank"):
      np.testing.assert_array_equal(c[field], b[field])
    np.testing.assert_array_equal(c["annotator"] == 0, b["annotator"] == 0)
    renamed += int((c["annotator"] != b["annotator"]).sum())
    for cls in set(b["cls"][b["annotator"] > 0].tolist()):
      sel = (b["annotator"] > 0) & (b["cls"] == cls)
      np.testing.assert_array_equal(b["annotator"][sel], np.arange(1, sel.sum() + 1))
  assert renamed > 0


def test_extended_format_round_trip(tmp_path):
  clicks = _simulated(seed=1)
  first = clicks["2011_000000"]
  first["time_ms"] = np.arange(len(first["x"]), dtype=np.int32) * 900 + 2400
  click_json.write_click_json(tmp_path / "ext.json", clicks)
  raw = json.loads((tmp_path / "ext.json").read_text())
  assert raw["2011_000000"][0]["time_ms"] == 2400 and "annotator" in raw["2011_000000"][0]
  back = click_json.load_clicks(tmp_path / "ext.json")
  _assert_same(clicks, back)
  np.testing.assert_array_equal(back["2011_000000"]["time_ms"], first["time_ms"])
  # Written twice: byte-identical (float32 coordinates print exactly).
  click_json.write_click_json(tmp_path / "ext2.json", back)
  assert (tmp_path / "ext2.json").read_bytes() == (tmp_path / "ext.json").read_bytes()


def test_extended_clicks_in_a_supp_file_keep_their_annotator(tmp_path):
  (tmp_path / "s.json").write_text(json.dumps({"a": [
      {"x": 1.0, "y": 1.0, "cls": 2, "rank": 1, "annotator": 7},
      {"x": 1.0, "y": 1.0, "cls": 2, "rank": 1}]}))
  np.testing.assert_array_equal(click_json.load_clicks(None, tmp_path / "s.json")["a"]["annotator"], [7, 1])


def test_clip_clicks_hand_computed():
  clicks = {"y": np.array([5.5, 2.0, 40.0, 3.0, -0.5], np.float32),
            "x": np.array([7.25, 60.0, 1.0, -273.0, 2.0], np.float32),
            "cls": np.array([1, 2, 3, 4, 5], np.int32), "rank": np.ones(5, np.int32),
            "annotator": np.zeros(5, np.int32)}
  out, clipped, dropped = click_json.clip_clicks(clicks, height=30, width=50)
  assert (clipped, dropped) == (2, 2)
  np.testing.assert_array_equal(out["y"], [5.5, 2.0, 29.0])
  np.testing.assert_array_equal(out["x"], [7.25, 49.0, 1.0])
  np.testing.assert_array_equal(out["cls"], [1, 2, 3])
  assert out["x"].dtype == np.float32
  # x = 49.9 is inside a 50-wide image (pixel 49): not clipped.
  edge = {k: v[:1] for k, v in clicks.items()}
  edge["x"] = np.array([49.9], np.float32)
  assert click_json.clip_clicks(edge, 30, 50)[1:] == (0, 0)


def _one_image(**fields):
  clicks = {"y": np.array([2.0], np.float32), "x": np.array([1.0], np.float32),
            "cls": np.array([3], np.int32), "rank": np.array([1], np.int32),
            "annotator": np.array([0], np.int32)}
  clicks.update({k: np.asarray(v) for k, v in fields.items()})
  return {"2008_000001": clicks}


@pytest.mark.parametrize("fields, message", [
    (dict(cls=[99]), r"click cls 99 not in 1..20"),                # issue 15: was written
    (dict(cls=[0]), r"click cls 0 not in 1..20"),
    (dict(rank=[0]), r"field 'rank' = 0 must be >= 1"),
    (dict(annotator=[-1]), r"field 'annotator' = -1 must be >= 0"),
    (dict(x=[np.nan]), r"field 'x' is not finite"),
    (dict(y=np.array([1e40])), r"field 'y' = 1e\+40 is not a pixel coordinate"),
    (dict(y=np.array([np.inf], np.float32)), r"field 'y' is not finite"),  # = float32(1e40)
    (dict(x=[1e6]), r"field 'x' = 1000000.0 is not a pixel coordinate"),
    (dict(cls=[2.5]), r"field 'cls' = 2.5 must be an integer"),
    (dict(rank=[1, 2]), r"click fields differ in length"),
])
def test_write_refuses_what_the_reader_rejects(tmp_path, fields, message):
  """Checked on write: a bad click is a DataError naming the file, and nothing is written."""
  out = tmp_path / "out.json"
  with pytest.raises(DataError, match=r"out.json \(not written\): image '2008_000001': .*" + message):
    click_json.write_click_json(out, _one_image(**fields))
  assert not out.exists()
  with pytest.raises(DataError, match=message):
    click_json.write_released_json(tmp_path / "m.json", tmp_path / "s.json", _one_image(**fields))
  assert not (tmp_path / "m.json").exists() and not (tmp_path / "s.json").exists()


def test_write_refuses_a_bad_clicks_dict(tmp_path):
  clicks = _one_image()["2008_000001"]
  with pytest.raises(DataError, match=r"image 7 must be a string|image id 7 must be a string"):
    click_json.write_click_json(tmp_path / "o.json", {7: clicks})
  del clicks["annotator"]
  with pytest.raises(DataError, match=r"image 'a': the clicks dict lacks fields \['annotator'\]"):
    click_json.write_click_json(tmp_path / "o.json", {"a": clicks})
  assert not (tmp_path / "o.json").exists()


def test_write_keeps_an_existing_file_on_a_bad_click(tmp_path):
  out = tmp_path / "mine.json"
  click_json.write_click_json(out, _one_image())
  before = out.read_bytes()
  with pytest.raises(DataError, match="cls 99"):
    click_json.write_click_json(out, _one_image(cls=[99]))
  assert out.read_bytes() == before
  np.testing.assert_array_equal(click_json.load_clicks(out)["2008_000001"]["cls"], [3])


def test_asked_classes_round_trip_and_default_to_all(tmp_path):
  """An image asked about some classes only: written as {"asked", "clicks"}, read back by
  `load_asked`; a plain list (released format) and an all-classes "asked" mean every class."""
  clicks = _one_image()
  clicks["b"] = click_json.empty_clicks()
  clicks["c"] = click_json.empty_clicks()
  out = tmp_path / "mine.json"
  click_json.write_click_json(out, clicks, asked={"2008_000001": [3, 12], "b": [12],
                                                  "c": range(1, 21)})
  raw = json.loads(out.read_text())
  assert raw["b"] == {"asked": [12], "clicks": []} and raw["c"] == []
  assert raw["2008_000001"]["asked"] == [3, 12] and len(raw["2008_000001"]["clicks"]) == 1
  asked = click_json.load_asked(out)
  assert np.flatnonzero(asked["2008_000001"]).tolist() == [0, 3, 12]
  assert np.flatnonzero(asked["b"]).tolist() == [0, 12] and asked["c"].all()
  assert click_json.load_clicks(out)["2008_000001"]["cls"].tolist() == [3]
  # Written again from what was read: byte-identical.
  again = tmp_path / "again.json"
  click_json.write_click_json(again, click_json.load_clicks(out), asked={
      k: np.flatnonzero(v).tolist() for k, v in asked.items()})
  assert again.read_bytes() == out.read_bytes()
  # A click on a class that was not asked is refused on write too; nothing is written.
  with pytest.raises(DataError, match=r"bad.json \(not written\): image '2008_000001': clicks on "
                     r"classes \[3\] that \"asked\" \[12\] does not list"):
    click_json.write_click_json(tmp_path / "bad.json", clicks, asked={"2008_000001": [12]})
  assert not (tmp_path / "bad.json").exists()


def test_check_click_is_the_readers_check():
  """The annotation tool can check one click before it saves anything."""
  ok = click_json.check_click({"x": 3, "y": 4.5, "cls": 2.0, "rank": 1, "annotator": 1}, source="tool",
                     image_id="img")
  assert ok == {"x": 3.0, "y": 4.5, "cls": 2, "rank": 1, "annotator": 1}
  assert isinstance(ok["x"], float) and isinstance(ok["cls"], int)
  with pytest.raises(DataError, match=r"tool: image 'img': click field 'x' = 70000.0"):
    click_json.check_click({"x": 7e4, "y": 0, "cls": 1, "rank": 1}, source="tool", image_id="img")
  # The released files' extremes are inside the bound (x = 754 in main, x = -273 in supp).
  for x in (754.0, -273.0):
    assert click_json.check_click({"x": x, "y": 0, "cls": 1, "rank": 1}, source="t", image_id="i")["x"] == x
