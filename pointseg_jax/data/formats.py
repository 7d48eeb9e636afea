"""File formats of the data package: VOC palette PNGs and click JSON files.

- VOC masks are *palette* PNGs: the pixel values are class ids (0..20, 255 = void) and the palette
  only colours them. `read_label_png` returns the ids; `decode_palette` turns an RGB rendering back
  into ids (e.g. masks that went through an RGB resize), `colorize` renders ids for pictures.
- Click JSON: the authors' released format `{image_id: [{"x", "y", "cls", "rank"}, ...]}`
  (`pascal2012_trainval_main.json` / `..._supp.json`, reference/original_code.md §2.1) and our
  extended format (same top level and keys + optional "annotator", "time_ms", ...; docs/clicks.md).

Bad input raises `DataError` naming the file and what to fix.
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Mapping

import numpy as np
from PIL import Image

from pointseg_jax import IGNORE_INDEX, NUM_CLASSES
from pointseg_jax import errors

# Keys a click carries in the released files; `annotator` / `time_ms` are our extension.
RELEASED_KEYS = ("x", "y", "cls", "rank")
CLICK_FIELDS = ("y", "x", "cls", "rank", "annotator")

log = logging.getLogger(__name__)


class DataError(errors.DataError):
  """A data file is missing, unreadable or holds values the data package cannot use."""


# ----------------------------------------------------------------------------------------------
# VOC palette.


def voc_palette() -> np.ndarray:
  """uint8 [256, 3]: the PASCAL VOC colour map (bit-interleaved class id; 255 -> (224, 224, 192))."""
  ids = np.arange(256)
  pal = np.zeros((256, 3), np.int64)
  for shift in range(8):
    for ch in range(3):
      bit = (ids >> (3 * shift + ch)) & 1
      pal[:, ch] |= bit << (7 - shift)
  return pal.astype(np.uint8)


def _valid_ids() -> np.ndarray:
  return np.array(list(range(NUM_CLASSES)) + [IGNORE_INDEX])


def decode_palette(rgb: np.ndarray, *, source: str = "<array>") -> np.ndarray:
  """RGB [H, W, 3] rendering of a VOC mask -> uint8 class ids [H, W] (224,224,192 -> 255).

  Colours other than the 21 class colours and void raise `DataError` naming `source`
  (a resized-with-interpolation mask has blended colours: resize masks with nearest neighbour).
  """
  rgb = np.asarray(rgb)
  if rgb.ndim != 3 or rgb.shape[-1] != 3:
    raise DataError(f"{source}: expected an RGB mask [H, W, 3], got shape {rgb.shape}")
  pal = voc_palette().astype(np.int64)
  ids = _valid_ids()
  codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
  pal_codes = (pal[ids, 0] << 16) | (pal[ids, 1] << 8) | pal[ids, 2]
  order = np.argsort(pal_codes)
  pos = np.clip(np.searchsorted(pal_codes[order], codes), 0, len(ids) - 1)
  found = pal_codes[order][pos] == codes
  if not found.all():
    bad = np.unique(rgb[~found].reshape(-1, 3), axis=0)[:5]
    raise DataError(f"{source}: {int((~found).sum())} pixels have colours that are not VOC class "
                    f"colours (outside the VOC palette), e.g. {bad.tolist()}; expected the VOC palette "
                    f"(voc_palette())")
  return ids[order][pos].astype(np.uint8)


def colorize(class_ids: np.ndarray) -> np.ndarray:
  """uint8 class ids [...] -> uint8 RGB [..., 3] in the VOC palette (for pictures and docs)."""
  return voc_palette()[np.asarray(class_ids).astype(np.uint8)]


def check_class_ids(ids: np.ndarray, *, source: str) -> np.ndarray:
  """Raise `DataError` naming `source` when a mask holds values outside 0..20 and 255."""
  ids = np.asarray(ids)
  bad = ~np.isin(ids, _valid_ids())
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
    raise DataError(f"{path}: cannot read PNG, a corrupt or unreadable {what} file ({e}); re-extract or rewrite it") from e


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


# ----------------------------------------------------------------------------------------------
# Click JSON files.


def _num(value: Any, *, source: str, key: str, field: str, integer: bool) -> float | int:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise DataError(f"{source}: image {key!r}: click field {field!r} is {value!r}, expected a number")
  if not math.isfinite(value):
    raise DataError(f"{source}: image {key!r}: click field {field!r} is not finite ({value!r})")
  if integer:
    if float(value) != int(value):
      raise DataError(f"{source}: image {key!r}: click field {field!r} = {value!r} must be an integer")
    return int(value)
  return float(value)


def _parse_click(c: Any, *, source: str, key: str) -> dict:
  if not isinstance(c, Mapping):
    raise DataError(f"{source}: image {key!r}: a click must be an object with keys "
                    f"{list(RELEASED_KEYS)}, got {c!r}")
  missing = [k for k in RELEASED_KEYS if k not in c]
  if missing:
    raise DataError(f"{source}: image {key!r}: click {dict(c)!r} lacks keys {missing}")
  out = dict(c)
  out["x"] = _num(c["x"], source=source, key=key, field="x", integer=False)
  out["y"] = _num(c["y"], source=source, key=key, field="y", integer=False)
  out["cls"] = _num(c["cls"], source=source, key=key, field="cls", integer=True)
  out["rank"] = _num(c["rank"], source=source, key=key, field="rank", integer=True)
  if not 1 <= out["cls"] < NUM_CLASSES:
    raise DataError(f"{source}: image {key!r}: click cls {out['cls']} not in 1..{NUM_CLASSES - 1}")
  if out["rank"] < 1:
    raise DataError(f"{source}: image {key!r}: click rank {out['rank']} must be >= 1")
  for opt in ("annotator", "time_ms"):
    if opt in c and c[opt] is not None:
      out[opt] = _num(c[opt], source=source, key=key, field=opt, integer=True)
  return out


def read_click_json(path: str | os.PathLike) -> dict[str, list[dict]]:
  """Validated `{image_id: [click, ...]}` from a released or extended click JSON file."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise DataError(f"{path}: click file not found")
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: malformed JSON ({e})") from e
  if not isinstance(data, dict):
    raise DataError(f"{path}: top level must be an object {{image_id: [clicks]}}, "
                    f"got {type(data).__name__}")
  out = {}
  for key, clicks in data.items():
    if not isinstance(clicks, list):
      raise DataError(f"{path}: image {key!r}: value must be a list of clicks, "
                      f"got {type(clicks).__name__}")
    out[key] = [_parse_click(c, source=path, key=key) for c in clicks]
  return out


def empty_clicks() -> dict[str, np.ndarray]:
  """The clicks dict of an image without clicks (the feature spec's `clicks` sub-dict)."""
  return {"y": np.zeros(0, np.float32), "x": np.zeros(0, np.float32),
          "cls": np.zeros(0, np.int32), "rank": np.zeros(0, np.int32),
          "annotator": np.zeros(0, np.int32)}


def _to_arrays(rows: list[dict]) -> dict[str, np.ndarray]:
  if not rows:
    return empty_clicks()
  out = {"y": np.array([r["y"] for r in rows], np.float32),
         "x": np.array([r["x"] for r in rows], np.float32),
         "cls": np.array([r["cls"] for r in rows], np.int32),
         "rank": np.array([r["rank"] for r in rows], np.int32),
         "annotator": np.array([r["annotator"] for r in rows], np.int32)}
  if any("time_ms" in r for r in rows):
    out["time_ms"] = np.array([r.get("time_ms", -1) for r in rows], np.int32)
  return out


def assign_supp_annotators(clicks: list[dict], *, first: int = 1) -> tuple[list[dict], int]:
  """Annotator ids for one image of the released supp file, which does not name its workers.

  Convention (file order within each class): the k-th rank-1 click of a class starts annotator
  `first + k - 1`; a rank >= 2 click belongs to the annotator of the latest rank-1 click of its
  class. A rank >= 2 click before any rank-1 click of its class goes to `first`; their number is
  returned so the caller can log it. The supp file has two rank-1 clicks for 18,369 of its 18,575
  (image, class) pairs, so this gives annotators 1 and 2 (reference/original_code.md §2.1).
  """
  current: dict[int, int] = {}
  count: dict[int, int] = {}
  orphans = 0
  out = []
  for c in clicks:
    cls = c["cls"]
    if c["rank"] == 1:
      count[cls] = count.get(cls, 0) + 1
      current[cls] = first + count[cls] - 1
    elif cls not in current:
      orphans += 1
      current[cls] = first
    out.append({**c, "annotator": current[cls]})
  return out, orphans


def load_clicks(main_path: str | os.PathLike | None = None,
                supp_path: str | os.PathLike | None = None) -> dict[str, dict[str, np.ndarray]]:
  """`{image_id: clicks dict}` (the feature spec's `clicks` arrays) from click JSON files.

  A click with an "annotator" key (our extended format) keeps it. Otherwise clicks of `main_path`
  are annotator 0 and clicks of `supp_path` get annotators 1, 2 by `assign_supp_annotators`.
  Image ids in either file are kept (empty lists give empty arrays). Coordinates are left as they
  are in the file; clipping to an image needs the image size (`clip_clicks`).
  """
  rows: dict[str, list[dict]] = {}
  if main_path is not None:
    for key, clicks in read_click_json(main_path).items():
      rows.setdefault(key, []).extend({"annotator": 0, **c} for c in clicks)
  if supp_path is not None:
    orphans = {}
    for key, clicks in read_click_json(supp_path).items():
      plain = [c for c in clicks if "annotator" not in c]
      tagged = [c for c in clicks if "annotator" in c]
      assigned, n = assign_supp_annotators(plain)
      if n:
        orphans[key] = n
      rows.setdefault(key, []).extend(tagged + assigned)
    if orphans:
      ids = sorted(orphans)
      log.warning("%s: %d clicks of rank >= 2 come before any rank-1 click of their class "
                  "(given to annotator 1) in %d images: %s", os.fspath(supp_path),
                  sum(orphans.values()), len(ids), ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else ""))
  return {key: _to_arrays(r) for key, r in rows.items()}


def _click_rows(clicks: Mapping[str, np.ndarray], *, annotator: bool) -> list[dict]:
  n = len(np.asarray(clicks["x"]))
  rows = []
  for i in range(n):
    row = {"x": float(np.float32(clicks["x"][i])), "y": float(np.float32(clicks["y"][i])),
           "cls": int(clicks["cls"][i]), "rank": int(clicks["rank"][i])}
    if annotator:
      row["annotator"] = int(clicks["annotator"][i])
      if "time_ms" in clicks and int(clicks["time_ms"][i]) >= 0:
        row["time_ms"] = int(clicks["time_ms"][i])
    rows.append(row)
  return rows


def _write_json(path: str | os.PathLike, data: dict) -> None:
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(data, f)
  os.replace(tmp, path)


def write_click_json(path: str | os.PathLike, clicks_by_id: Mapping[str, Mapping[str, np.ndarray]]
                     ) -> None:
  """Write the extended format: released keys + "annotator" (+ "time_ms" when known) per click."""
  _write_json(path, {key: _click_rows(c, annotator=True) for key, c in clicks_by_id.items()})


def _order(clicks: Mapping[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
  # Stable order annotator -> class -> rank, so that `assign_supp_annotators` recovers annotators.
  keys = (np.asarray(clicks["rank"])[idx], np.asarray(clicks["cls"])[idx],
          np.asarray(clicks["annotator"])[idx])
  return idx[np.lexsort(keys)]


def write_released_json(main_path: str | os.PathLike, supp_path: str | os.PathLike,
                        clicks_by_id: Mapping[str, Mapping[str, np.ndarray]]) -> None:
  """Write the authors' two-file format: annotator 0 -> main, annotators >= 1 -> supp.

  Supp clicks are written annotator by annotator (then class, rank), so `load_clicks` reading both
  files gives back the same clicks. The released format does not name workers: annotator ids come
  back the same when each supp annotator clicked every class another supp annotator clicked; a
  class clicked by annotator 2 only reads back as annotator 1. `write_click_json` is lossless.
  """
  main, supp = {}, {}
  for key, c in clicks_by_id.items():
    ann = np.asarray(c["annotator"])
    sub = {k: np.asarray(v) for k, v in c.items()}
    for target, sel in ((main, ann == 0), (supp, ann >= 1)):
      idx = _order(sub, np.flatnonzero(sel))
      target[key] = _click_rows({k: v[idx] for k, v in sub.items()}, annotator=False)
  _write_json(main_path, main)
  _write_json(supp_path, supp)


def clip_clicks(clicks: Mapping[str, np.ndarray], height: int, width: int
                ) -> tuple[dict[str, np.ndarray], int, int]:
  """Fit clicks into an image of `height` x `width`: returns (clicks, n_clipped, n_dropped).

  Convention (docs/data_voc.md): a click with a negative coordinate is dropped (the released supp
  file has x down to -273: no nearby pixel is meant); a click at or beyond the far border
  (x >= width or y >= height; up to x = 754 in the main file) is moved to the last pixel
  column/row (x = width - 1 / y = height - 1). The caller logs the counts.
  """
  c = {k: np.asarray(v) for k, v in clicks.items()}
  keep = (c["x"] >= 0) & (c["y"] >= 0)
  over = keep & ((c["x"] >= width) | (c["y"] >= height))
  out = {k: v[keep] for k, v in c.items()}
  out["x"] = np.where(out["x"] >= width, width - 1, out["x"]).astype(np.float32)
  out["y"] = np.where(out["y"] >= height, height - 1, out["y"]).astype(np.float32)
  return out, int(over.sum()), int((~keep).sum())
