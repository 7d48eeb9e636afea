"""pointseg_jax.labels: the VOC palette, label PNGs and objectness PNGs."""
import glob
import os

import numpy as np
import pytest
from PIL import Image

from pointseg_jax import labels
from pointseg_jax.errors import DataError


def test_palette_known_colours():
  pal = labels.voc_palette()
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
  rgb = labels.colorize(ids)
  assert rgb.shape == (2, 4, 3) and rgb.dtype == np.uint8
  np.testing.assert_array_equal(rgb[1, 2], [224, 224, 192])
  np.testing.assert_array_equal(labels.decode_palette(rgb), ids)


def test_decode_rejects_unknown_colours():
  rgb = labels.colorize(np.zeros((3, 3), np.uint8))
  rgb[1, 1] = [10, 20, 30]                      # e.g. a mask resized with interpolation
  with pytest.raises(DataError, match=r"mask.png: 1 pixels have colours that are not VOC class"):
    labels.decode_palette(rgb, source="mask.png")
  # Palette colours of ids 21..254 are not classes either.
  with pytest.raises(DataError, match="not VOC class"):
    labels.decode_palette(labels.colorize(np.full((2, 2), 40, np.uint8)))
  with pytest.raises(DataError, match=r"expected an RGB mask"):
    labels.decode_palette(np.zeros((3, 3), np.uint8))


def test_real_voc_targets_decode_and_round_trip(testdata_dir):
  paths = sorted(glob.glob(os.path.join(testdata_dir, "voc_val_samples", "*_target.png")))
  assert len(paths) == 14
  classes = set()
  for p in paths:
    rgb = np.asarray(Image.open(p).convert("RGB"))
    ids = labels.decode_palette(rgb, source=p)
    assert set(np.unique(ids).tolist()) <= set(range(21)) | {255}
    assert (ids == 255).any() and (ids == 0).any()        # VOC masks have void bands
    np.testing.assert_array_equal(labels.colorize(ids), rgb)
    classes |= set(np.unique(ids).tolist())
  assert len(classes - {0, 255}) >= 8


def _palette_png(path, ids):
  im = Image.fromarray(ids, mode="P")
  im.putpalette(labels.voc_palette().ravel().tolist())
  im.save(path)


def test_read_label_png_reads_indices_not_colours(tmp_path):
  ids = np.array([[0, 1, 255], [20, 15, 0]], np.uint8)
  _palette_png(tmp_path / "p.png", ids)
  np.testing.assert_array_equal(labels.read_label_png(tmp_path / "p.png"), ids)
  Image.fromarray(labels.colorize(ids)).save(tmp_path / "rgb.png")
  np.testing.assert_array_equal(labels.read_label_png(tmp_path / "rgb.png"), ids)
  Image.fromarray(ids, mode="L").save(tmp_path / "l.png")
  np.testing.assert_array_equal(labels.read_label_png(tmp_path / "l.png"), ids)
  _palette_png(tmp_path / "inst.png", np.array([[0, 40]], np.uint8))
  np.testing.assert_array_equal(labels.read_label_png(tmp_path / "inst.png", what="instance"), [[0, 40]])
  with pytest.raises(DataError, match=r"inst.png: unknown class ids \[40\]"):
    labels.read_label_png(tmp_path / "inst.png")
  with pytest.raises(DataError, match=r"nope.png: file not found"):
    labels.read_label_png(tmp_path / "nope.png")
  (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
  with pytest.raises(DataError, match=r"bad.png: cannot read PNG"):
    labels.read_label_png(tmp_path / "bad.png")
  Image.fromarray(np.zeros((2, 2, 4), np.uint8)).save(tmp_path / "rgba.png")
  with pytest.raises(DataError, match=r"rgba.png: unsupported PNG mode 'RGBA'"):
    labels.read_label_png(tmp_path / "rgba.png")


def test_write_label_png_round_trip(tmp_path):
  ids = np.array([[0, 1, 255], [20, 15, 0]], np.uint8)
  labels.write_label_png(tmp_path / "sub" / "m.png", ids)
  with Image.open(tmp_path / "sub" / "m.png") as im:
    assert im.mode == "P"                        # indices, coloured by the VOC palette
    np.testing.assert_array_equal(np.asarray(im.convert("RGB")), labels.colorize(ids))
  np.testing.assert_array_equal(labels.read_label_png(tmp_path / "sub" / "m.png"), ids)
  assert os.listdir(tmp_path / "sub") == ["m.png"]     # no temp file left behind
  with pytest.raises(DataError, match=r"bad.png: unknown class ids \[40\]"):
    labels.write_label_png(tmp_path / "bad.png", np.full((2, 2), 40, np.uint8))
  with pytest.raises(DataError, match=r"bad.png: the label map must be \[H, W\]"):
    labels.write_label_png(tmp_path / "bad.png", np.zeros((2, 2, 3), np.uint8))
  with pytest.raises(DataError, match=r"bad.png: the label map must hold integers 0..255"):
    labels.write_label_png(tmp_path / "bad.png", np.full((2, 2), 1.5))
  assert not (tmp_path / "bad.png").exists()


def test_objectness_png_round_trip_and_errors(tmp_path):
  o = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
  labels.write_objectness_png(tmp_path / "o.png", o[..., None])        # [H, W, 1] as TFDS stores it
  with Image.open(tmp_path / "o.png") as im:
    assert im.mode == "L"
  np.testing.assert_array_equal(labels.read_objectness_png(tmp_path / "o.png"), o)
  # The original release's jet-coloured RGB rendering is not an objectness map.
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "jet.png")
  with pytest.raises(DataError, match=r"jet.png: objectness must be a grayscale \(L\) PNG"):
    labels.read_objectness_png(tmp_path / "jet.png")
  with pytest.raises(DataError, match=r"none.png: file not found \(objectness PNG\)"):
    labels.read_objectness_png(tmp_path / "none.png")
  with pytest.raises(DataError, match=r"neg.png: the objectness map must hold integers 0..255"):
    labels.write_objectness_png(tmp_path / "neg.png", np.full((2, 2), -1))
