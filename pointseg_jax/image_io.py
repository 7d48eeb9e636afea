"""Photos from disk, always fully decoded: a truncated or corrupt file is an error naming it.

`Image.open` reads only the header, so a photo cut short (an interrupted copy or download) passes
a size check and later shows as a partly grey picture, or a thin strip of its first rows; decoding
every pixel is the only check that catches it (a 500 x 375 JPEG takes a few ms). PIL also has a
process-wide switch, `ImageFile.LOAD_TRUNCATED_IMAGES`, that makes it pad a truncated file instead of
failing; TFDS turns it on when it draws thumbnails. `decoded` turns it off again each time: a
truncated photo must never become training data or a task shown to annotators.

Callers decide what a bad photo means: one named file is a one-line error (`DataError`); in a
folder of user photos (the annotation tool's image list, the custom_points builder, objectness
precompute) it is left out, counted and logged by name.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np
from PIL import Image
from PIL import ImageFile

from pointseg_jax.errors import DataError, MissingInputError

# What PIL raises on a bad file: OSError (truncated, unknown format), SyntaxError (bad PNG
# chunks), ValueError, and DecompressionBombError (a header declaring > 2 x MAX_IMAGE_PIXELS).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@contextlib.contextmanager
def decoded(path: str | os.PathLike, *, fix: str = "copy it again or re-export it"
            ) -> Iterator[Image.Image]:
  """The image at `path` with every pixel decoded; else a `DataError` naming the file and `fix`."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise MissingInputError(f"{path}: image not found")
  ImageFile.LOAD_TRUNCATED_IMAGES = False
  try:
    im = Image.open(path)
    im.load()
  except DECODE_ERRORS as e:
    raise DataError(f"{path}: corrupt or unreadable image ({e}); {fix}") from None
  with im:
    yield im


def size(path: str | os.PathLike, **kwargs) -> tuple[int, int]:
  """(height, width) of an image that decodes completely."""
  with decoded(path, **kwargs) as im:
    w, h = im.size
  return h, w


def read_rgb(path: str | os.PathLike, **kwargs) -> np.ndarray:
  """uint8 [H, W, 3] pixels of any PIL mode (L, P, RGBA, CMYK -> RGB), fully decoded."""
  with decoded(path, **kwargs) as im:
    return np.asarray(im.convert("RGB"))
