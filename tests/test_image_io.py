"""pointseg_jax.image_io: a truncated photo is an error naming it (one file) or a counted, logged
drop (a folder of photos), never a partly decoded picture (issue 25 item 7: a truncated PNG was
accepted and shown to annotators as a thin strip)."""
import io
import logging
import zlib

import numpy as np
import pytest
from PIL import Image
from PIL import ImageFile

from pointseg_jax import errors
from pointseg_jax import image_io
from pointseg_jax.annotate import db
from pointseg_jax.data.voc2012_points import voc2012_points as voc
from pointseg_jax.objectness import precompute


def _photo(path, fmt, size=(120, 90)):
  """A noisy photo (so it does not compress to a few bytes) at path; returns its pixels."""
  pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), np.uint8)
  Image.fromarray(pixels).save(path, fmt)
  return pixels


def _truncate(path, fraction=0.5):
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * fraction)])


@pytest.fixture
def pil_pads_truncated_files():
  """PIL's process-wide switch that TFDS turns on when drawing thumbnails."""
  ImageFile.LOAD_TRUNCATED_IMAGES = True
  yield
  ImageFile.LOAD_TRUNCATED_IMAGES = False


@pytest.mark.parametrize("fmt, name", [("PNG", "a.png"), ("JPEG", "a.jpg")])
@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_files_are_refused_naming_the_file(tmp_path, fmt, name, fraction,
                                                     pil_pads_truncated_files):
  path = tmp_path / name
  pixels = _photo(path, fmt)
  assert image_io.size(path) == (90, 120)
  if fmt == "PNG":
    np.testing.assert_array_equal(image_io.read_rgb(path), pixels)
  _truncate(path, fraction)
  with Image.open(path) as im:          # the header alone still looks fine
    assert im.size == (120, 90)
  for read in (image_io.size, image_io.read_rgb):
    with pytest.raises(errors.DataError, match=rf"{name}: corrupt or unreadable image \(image file "
                                               r"is truncated.*\); copy it again or re-export it"):
      read(path)


def test_other_bad_files(tmp_path):
  (tmp_path / "text.png").write_text("not an image")
  with pytest.raises(errors.DataError, match=r"text.png: corrupt or unreadable image \(cannot "
                                             r"identify image file"):
    image_io.size(tmp_path / "text.png")
  with pytest.raises(errors.MissingInputError, match=r"none.png: image not found"):
    image_io.size(tmp_path / "none.png")
  # A header that declares more than twice PIL's pixel limit (a decompression bomb).
  png = io.BytesIO()
  Image.new("L", (1, 1)).save(png, "PNG")
  data = bytearray(png.getvalue())
  data[16:24] = (200_000).to_bytes(4, "big") * 2          # IHDR width, height
  data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
  (tmp_path / "bomb.png").write_bytes(bytes(data))
  with pytest.raises(errors.DataError, match=r"bomb.png: corrupt or unreadable image \(Image size "
                                             r"\(40000000000 pixels\) exceeds limit"):
    image_io.size(tmp_path / "bomb.png")


def test_a_folder_of_photos_drops_and_logs_each_truncated_one(tmp_path, caplog,
                                                              pil_pads_truncated_files):
  """Annotation tool, dataset builders and objectness precompute all refuse the truncated file."""
  _photo(tmp_path / "good.png", "PNG")
  _photo(tmp_path / "cut.png", "PNG")
  _truncate(tmp_path / "cut.png")
  with caplog.at_level(logging.WARNING):
    assert db.scan_images(str(tmp_path)) == {"good.png": (90, 120)}
  assert "1 unreadable images left out: cut.png" in caplog.text
  assert voc.read_image(str(tmp_path / "good.png"))[1:] == (90, 120, True)
  with pytest.raises(errors.DataError, match=r"cut.png: corrupt or unreadable image .*; re-extract "
                                             "it from the archive"):
    voc.read_image(str(tmp_path / "cut.png"))
  name, err = precompute._compute(("cut", str(tmp_path / "cut.png"), str(tmp_path / "o.png"), {}))
  assert name == "cut" and err.startswith(f"DataError: {tmp_path / 'cut.png'}: corrupt or unreadable")
  assert not (tmp_path / "o.png").exists()
