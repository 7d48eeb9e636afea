"""Label pictures: the VOC palette, class-id PNGs and objectness PNGs (read, write, colour).

- A VOC mask is a *palette* PNG whose pixel values are the class ids (0..20, 255 = void); the
  palette only colours them. `read_label_png` returns the ids; `decode_palette` turns an RGB
  rendering back into ids (masks that went through an RGB conversion), `colorize` renders ids.
- An objectness map is a grayscale PNG of a byte o in 0..255; training reads it as the probability
  P(object) = (o + 1) / 257 (docs/data_voc.md, "Objectness maps").

`data/` (dataset builders), `objectness/` (precompute, evaluate) and `predict.py` all read and draw
label pictures through this module. Bad input raises `DataError` naming the file and the fix.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from pointseg_jax import IGNORE_INDEX, NUM_CLASSES
from pointseg_jax.errors import DataError

_VALID_IDS = np.array(list(range(NUM_CLASSES)) + [IGNORE_INDEX])


def voc_palette() -> np.ndarray:
  """uint8 [256, 3]: the PASCAL VOC colour map (bit-interleaved class id; 255 -> (224, 224, 192))."""
  ids = np.arange(256)
  pal = np.zeros((256, 3), np.int64)
  for shift in range(8):
    for ch in range(3):
      bit = (ids >> (3 * shift + ch)) & 1
      pal[:, ch] |= bit << (7 - shift)
  return pal.astype(np.uint8)


def decode_palette(rgb: np.ndarray, *, source: str = "<array>") -> np.ndarray:
  """RGB [H, W, 3] rendering of a VOC mask -> uint8 class ids [H, W] (224,224,192 -> 255).

  Colours other than the 21 class colours and void raise `DataError` naming `source`
  (a resized-with-interpolation mask has blended colours: resize masks with nearest neighbour).
  """
  rgb = np.asarray(rgb)
  if rgb.ndim != 3 or rgb.shape[-1] != 3:
    raise DataError(f"{source}: expected an RGB mask [H, W, 3], got shape {rgb.shape}")
  pal = voc_palette().astype(np.int64)
  codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
  pal_codes = (pal[_VALID_IDS, 0] << 16) | (pal[_VALID_IDS, 1] << 8) | pal[_VALID_IDS, 2]
  order = np.argsort(pal_codes)
  pos = np.clip(np.searchsorted(pal_codes[order], codes), 0, len(_VALID_IDS) - 1)
  found = pal_codes[order][pos] == codes
  if not found.all():
    bad = np.unique(rgb[~found].reshape(-1, 3), axis=0)[:5]
    raise DataError(f"{source}: {int((~found).sum())} pixels have colours that are not VOC class "
                    f"colours (outside the VOC palette), e.g. {bad.tolist()}; expected the VOC palette "
                    f"(voc_palette()); resize masks with nearest neighbour, never bilinear")
  return _VALID_IDS[order][pos].astype(np.uint8)


def colorize(class_ids: np.ndarray) -> np.ndarray:
  """uint8 class ids [...] -> uint8 RGB [..., 3] in the VOC palette (for pictures and docs)."""
  return voc_palette()[np.asarray(class_ids).astype(np.uint8)]


def check_class_ids(ids: np.ndarray, *, source: str) -> np.ndarray:
  """`ids`, after raising `DataError` naming `source` when it holds values outside 0..20 and 255."""
  ids = np.asarray(ids)
  bad = ~np.isin(ids, _VALID_IDS)
  if bad.any():
    vals = np.unique(ids[bad])[:10].tolist()
    raise DataError(f"{source}: unknown class ids {vals} (expected 0..{NUM_CLASSES - 1} or "
                    f"{IGNORE_INDEX} = void)")
  return ids


def read_png(path: str | os.PathLike, *, what: str) -> tuple[str, np.ndarray]:
  """(PIL mode, pixel array) of a PNG; a missing or corrupt file is a `DataError` naming it."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise DataError(f"{path}: file not found ({what} PNG)")
  try:
    with Image.open(path) as im:
      im.load()
      return im.mode, np.array(im)
  except (OSError, SyntaxError, ValueError) as e:
    raise DataError(f"{path}: cannot read PNG, a corrupt or unreadable {what} file ({e}); "
                    "re-extract or rewrite it") from e


def read_label_png(path: str | os.PathLike, *, what: str = "class") -> np.ndarray:
  """uint8 [H, W] ids of a VOC label PNG (palette indices, not RGB colours).

  A palette ('P') or grayscale ('L') PNG gives its indices directly; an RGB PNG is decoded through
  the VOC palette. `what='class'` checks ids are 0..20/255; `what='instance'` only checks 8 bits.
  """
  path = os.fspath(path)
  mode, arr = read_png(path, what="label")
  if mode in ("P", "L"):
    ids = arr.astype(np.uint8)
  elif mode == "RGB":
    ids = decode_palette(arr, source=path)
  else:
    raise DataError(f"{path}: unsupported PNG mode {mode!r}; expected a palette (P) or grayscale "
                    "(L) label PNG")
  if what == "class":
    check_class_ids(ids, source=path)
  return ids


def _save_atomic(image: Image.Image, path: str | os.PathLike) -> None:
  """Write through a temp file + rename, so an interrupted run never leaves half a PNG."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
  image.save(tmp, format="PNG")
  os.replace(tmp, path)


def _as_uint8_map(values: np.ndarray, *, path: str, what: str) -> np.ndarray:
  arr = np.asarray(values)
  if arr.ndim == 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  if arr.ndim != 2:
    raise DataError(f"{path}: the {what} map must be [H, W] (or [H, W, 1]), got shape {arr.shape}")
  if arr.dtype != np.uint8:
    if not np.issubdtype(arr.dtype, np.integer) or arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
      raise DataError(f"{path}: the {what} map must hold integers 0..255 (uint8), got {arr.dtype} "
                      f"values {arr.min(initial=0)}..{arr.max(initial=0)}")
    arr = arr.astype(np.uint8)
  return arr


def write_label_png(path: str | os.PathLike, ids: np.ndarray) -> None:
  """Write class ids [H, W] as a VOC palette PNG (what `read_label_png` reads back exactly)."""
  path = os.fspath(path)
  ids = check_class_ids(_as_uint8_map(ids, path=path, what="label"), source=path)
  image = Image.fromarray(ids)
  image.putpalette(voc_palette().ravel().tolist())  # an L image with a palette becomes mode P
  _save_atomic(image, path)


def read_objectness_png(path: str | os.PathLike) -> np.ndarray:
  """uint8 [H, W] objectness o from a grayscale PNG (P(object) = (o + 1) / 257)."""
  path = os.fspath(path)
  mode, arr = read_png(path, what="objectness")
  if mode not in ("L", "P") or arr.ndim != 2:
    raise DataError(f"{path}: objectness must be a grayscale (L) PNG of o in 0..255, got mode "
                    f"{mode!r} (the original release renders a jet colour map: store the gray map)")
  return arr.astype(np.uint8)


def write_objectness_png(path: str | os.PathLike, o: np.ndarray) -> None:
  """Write an objectness map o (uint8 [H, W]) as a grayscale PNG, atomically."""
  path = os.fspath(path)
  _save_atomic(Image.fromarray(_as_uint8_map(o, path=path, what="objectness")), path)
