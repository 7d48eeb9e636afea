"""Every image goes to the page through one re-encoding path, so gold images are not recognisable
by their bytes (issue 29: hashing the served files picked out gold images that recurred).

Each serve decodes the file, adds independent noise of -1, 0 or +1 to every pixel value (invisible,
and it changes no pixel's class: the clicks' meaning is untouched) and encodes a fresh baseline JPEG
without metadata. So two serves of one image differ in their bytes and in their decoded pixels,
whatever format the file had (a PNG gold set among JPEG photos no longer stands out), and no EXIF
(camera, date, orientation) reaches the page. The pixel grid is the file's own (no EXIF rotation:
the width and height the page is given, and the clicks, are in the stored pixel grid, which is what
the dataset builders decode). What this cannot hide: an image's size and content, so a gold image
that recurs is recognisable by eye; `db.plan_tasks` makes sure none recurs within an annotator's
tasks of a class.
"""
from __future__ import annotations

import io
import secrets

import numpy as np
from PIL import Image

CONTENT_TYPE = "image/jpeg"
QUALITY = 92


def encode(path: str, rng: np.random.Generator | None = None) -> bytes:
  """The bytes to serve for the image file at `path` (fresh noise per call unless `rng` is given)."""
  rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
  with Image.open(path) as im:
    pixels = np.asarray(im.convert("RGB"), np.int16)
  noisy = np.clip(pixels + rng.integers(-1, 2, pixels.shape, dtype=np.int16), 0, 255)
  out = io.BytesIO()
  Image.fromarray(noisy.astype(np.uint8)).save(out, "JPEG", quality=QUALITY, subsampling=0)
  return out.getvalue()
