"""VOC palette, label PNGs and the click JSON formats (released two-file and extended)."""
import glob
import json
import os

import numpy as np
import pytest
from PIL import Image

from pointseg_jax.data import clicks as C
from pointseg_jax.data import formats as F
from pointseg_jax.data.formats import DataError


def test_palette_known_colours():
  pal = F.voc_palette()
  assert pal.shape == (256, 3) and pal.dtype == np.uint8
  # Colours of the VOC devkit (VOCcolormap.m): background, aeroplane, bicycle, person, tvmonitor, void.
  assert pal[0].tolist() == [0, 0, 0]
  assert pal[1].tolist() == [128, 0, 0]
  assert pal[2].tolist() == [0, 128, 0]
  assert pal[15].tolist() == [192, 128, 128]
  assert pal[20].tolist() == [0, 64, 128]
  assert pal[255].tolist() == [224, 224, 192]


def test_decode_colorize_round_trip():
  ids = np.array([[0, 1, 2, 3], [15, 20, 255, 7]], np.uint8)
  rgb = F.colorize(ids)
  assert rgb.shape == (2, 4, 3) and rgb.dtype == np.uint8
  np.testing.assert_array_equal(rgb[1, 2], [224, 224, 192])
  np.testing.assert_array_equal(F.decode_palette(rgb), ids)


def test_decode_rejects_unknown_colours():
  rgb = F.colorize(np.zeros((3, 3), np.uint8))
  rgb[1, 1] = [10, 20, 30]                      # e.g. a mask resized with interpolation
  with pytest.raises(DataError, match=r"mask.png: 1 pixels have colours that are not VOC class"):
    F.decode_palette(rgb, source="mask.png")
  # Palette colours of ids 21..254 are not classes either.
  with pytest.raises(DataError, match="not VOC class"):
    F.decode_palette(F.colorize(np.full((2, 2), 40, np.uint8)))
  with pytest.raises(DataError, match=r"expected an RGB mask"):
    F.decode_palette(np.zeros((3, 3), np.uint8))


def test_real_voc_targets_decode_and_round_trip(testdata_dir):
  paths = sorted(glob.glob(os.path.join(testdata_dir, "voc_val_samples", "*_target.png")))
  assert len(paths) == 14
  classes = set()
  for p in paths:
    rgb = np.asarray(Image.open(p).convert("RGB"))
    ids = F.decode_palette(rgb, source=p)
    assert set(np.unique(ids).tolist()) <= set(range(21)) | {255}
    assert (ids == 255).any() and (ids == 0).any()        # VOC masks have void bands
    np.testing.assert_array_equal(F.colorize(ids), rgb)
    classes |= set(np.unique(ids).tolist())
  assert len(classes - {0, 255}) >= 8


def _palette_png(path, ids):
  im = Image.fromarray(ids, mode="P")
  im.putpalette(F.voc_palette().ravel().tolist())
  im.save(path)


def test_read_label_png_reads_indices_not_colours(tmp_path):
  ids = np.array([[0, 1, 255], [20, 15, 0]], np.uint8)
  _palette_png(tmp_path / "p.png", ids)
  np.testing.assert_array_equal(F.read_label_png(tmp_path / "p.png"), ids)
  Image.fromarray(F.colorize(ids)).save(tmp_path / "rgb.png")
  np.testing.assert_array_equal(F.read_label_png(tmp_path / "rgb.png"), ids)
  Image.fromarray(ids, mode="L").save(tmp_path / "l.png")
  np.testing.assert_array_equal(F.read_label_png(tmp_path / "l.png"), ids)
  _palette_png(tmp_path / "inst.png", np.array([[0, 40]], np.uint8))
  np.testing.assert_array_equal(F.read_label_png(tmp_path / "inst.png", what="instance"), [[0, 40]])
  with pytest.raises(DataError, match=r"inst.png: unknown class ids \[40\]"):
    F.read_label_png(tmp_path / "inst.png")
  with pytest.raises(DataError, match=r"nope.png: file not found"):
    F.read_label_png(tmp_path / "nope.png")
  (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
  with pytest.raises(DataError, match=r"bad.png: cannot read PNG"):
    F.read_label_png(tmp_path / "bad.png")
  Image.fromarray(np.zeros((2, 2, 4), np.uint8)).save(tmp_path / "rgba.png")
  with pytest.raises(DataError, match=r"rgba.png: unsupported PNG mode 'RGBA'"):
    F.read_label_png(tmp_path / "rgba.png")


# ----------------------------------------------------------------------------------------------
# Click JSON.


@pytest.mark.parametrize("text, message", [
    ('{"a": [{"x": 1.5, "y": 2', "malformed JSON"),
    ('[1, 2]', r"top level must be an object"),
    ('{"a": {"x": 1}}', r"image 'a': value must be a list of clicks"),
    ('{"a": [3]}', r"image 'a': a click must be an object"),
    ('{"a": [{"x": 1.5, "y": 2.0, "cls": 3}]}', r"image 'a': click .* lacks keys \['rank'\]"),
    ('{"a": [{"x": "1", "y": 2.0, "cls": 3, "rank": 1}]}', r"field 'x' is '1', expected a number"),
    ('{"a": [{"x": NaN, "y": 2.0, "cls": 3, "rank": 1}]}', r"field 'x' is not finite"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 0, "rank": 1}]}', r"click cls 0 not in 1..20"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2.5, "rank": 1}]}', r"'cls' = 2.5 must be an integer"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2, "rank": 0}]}', r"click rank 0 must be >= 1"),
    ('{"a": [{"x": 1.0, "y": 2.0, "cls": 2, "rank": 1, "annotator": "w"}]}', r"'annotator' is 'w'"),
])
def test_malformed_click_json(tmp_path, text, message):
  path = tmp_path / "clicks.json"
  path.write_text(text)
  with pytest.raises(DataError, match=r"clicks.json: .*" + message):
    F.read_click_json(path)


def test_missing_click_json(tmp_path):
  with pytest.raises(DataError, match=r"none.json: click file not found"):
    F.load_clicks(tmp_path / "none.json")


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
  got = F.load_clicks(tmp_path / "main.json", tmp_path / "supp.json")
  a = got["2008_000001"]
  np.testing.assert_array_equal(a["annotator"], [0, 0, 0, 1, 1, 1, 2, 2])
  np.testing.assert_array_equal(a["cls"], [15, 15, 3, 15, 3, 15, 15, 3])
  np.testing.assert_array_equal(a["rank"], [1, 2, 1, 1, 1, 2, 1, 1])
  assert a["x"].dtype == np.float32 and a["x"][0] == np.float32(244.94)
  assert len(got["2008_000002"]["x"]) == 0 and got["2008_000002"]["rank"].dtype == np.int32


def test_supp_orphan_rank_goes_to_first_annotator(tmp_path, caplog):
  rows, orphans = F.assign_supp_annotators([
      {"cls": 4, "rank": 2}, {"cls": 4, "rank": 1}, {"cls": 4, "rank": 1}, {"cls": 4, "rank": 1}])
  assert [r["annotator"] for r in rows] == [1, 1, 2, 3] and orphans == 1
  (tmp_path / "s.json").write_text(json.dumps({"img7": [{"x": 1.0, "y": 1.0, "cls": 2, "rank": 2}]}))
  with caplog.at_level("WARNING"):
    F.load_clicks(None, tmp_path / "s.json")
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
  out["2011_999999"] = F.empty_clicks()
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
  F.write_released_json(tmp_path / "m.json", tmp_path / "s.json", clicks)
  main = json.loads((tmp_path / "m.json").read_text())
  assert set(main["2011_000000"][0]) == {"x", "y", "cls", "rank"}     # exactly the released keys
  back = F.load_clicks(tmp_path / "m.json", tmp_path / "s.json")
  # Written annotator by annotator, so reading gives the same clicks in that order.
  _assert_same({k: _sorted(c) for k, c in clicks.items()}, back)


def test_released_format_cannot_name_who_missed_a_class(tmp_path):
  """With missed classes the supp file cannot say which worker missed: coordinates, classes and
  ranks still round-trip; the annotator of a class clicked by one supp worker only reads as 1."""
  clicks = _simulated(n=40, error_model=C.CrowdErrorModel(missed_class=0.3))
  F.write_released_json(tmp_path / "m.json", tmp_path / "s.json", clicks)
  back = F.load_clicks(tmp_path / "m.json", tmp_path / "s.json")
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
  F.write_click_json(tmp_path / "ext.json", clicks)
  raw = json.loads((tmp_path / "ext.json").read_text())
  assert raw["2011_000000"][0]["time_ms"] == 2400 and "annotator" in raw["2011_000000"][0]
  back = F.load_clicks(tmp_path / "ext.json")
  _assert_same(clicks, back)
  np.testing.assert_array_equal(back["2011_000000"]["time_ms"], first["time_ms"])
  # Written twice: byte-identical (float32 coordinates print exactly).
  F.write_click_json(tmp_path / "ext2.json", back)
  assert (tmp_path / "ext2.json").read_bytes() == (tmp_path / "ext.json").read_bytes()


def test_extended_clicks_in_a_supp_file_keep_their_annotator(tmp_path):
  (tmp_path / "s.json").write_text(json.dumps({"a": [
      {"x": 1.0, "y": 1.0, "cls": 2, "rank": 1, "annotator": 7},
      {"x": 1.0, "y": 1.0, "cls": 2, "rank": 1}]}))
  np.testing.assert_array_equal(F.load_clicks(None, tmp_path / "s.json")["a"]["annotator"], [7, 1])


def test_clip_clicks_hand_computed():
  clicks = {"y": np.array([5.5, 2.0, 40.0, 3.0, -0.5], np.float32),
            "x": np.array([7.25, 60.0, 1.0, -273.0, 2.0], np.float32),
            "cls": np.array([1, 2, 3, 4, 5], np.int32), "rank": np.ones(5, np.int32),
            "annotator": np.zeros(5, np.int32)}
  out, clipped, dropped = F.clip_clicks(clicks, height=30, width=50)
  assert (clipped, dropped) == (2, 2)
  np.testing.assert_array_equal(out["y"], [5.5, 2.0, 29.0])
  np.testing.assert_array_equal(out["x"], [7.25, 49.0, 1.0])
  np.testing.assert_array_equal(out["cls"], [1, 2, 3])
  assert out["x"].dtype == np.float32
  # x = 49.9 is inside a 50-wide image (pixel 49): not clipped.
  edge = {k: v[:1] for k, v in clicks.items()}
  edge["x"] = np.array([49.9], np.float32)
  assert F.clip_clicks(edge, 30, 50)[1:] == (0, 0)
