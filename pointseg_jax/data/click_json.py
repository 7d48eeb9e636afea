"""Click JSON files: the authors' released format and our extended one (read, check, write).

    {image_id: [{"x": 244.94, "y": 10.5, "cls": 15, "rank": 1}, ...], ...}

x = column, y = row: zero-indexed float pixel coordinates of the original image; cls = VOC class id
1..20; rank = the worker's n-th click on that class in that image (1 = first instance). The
authors released two such files, `pascal2012_trainval_main.json` (one worker, every instance) and
`pascal2012_trainval_supp.json` (two more workers, one click per class); our extended format adds
"annotator" (>= 0) and "time_ms" (>= 0) to each click, and lets an image's value be an object
{"asked": [class ids], "clicks": [...]} naming the classes its annotators were asked about: a class
not asked is *unknown* for that image, never absent (a plain list means every class was asked, as in
the released files). Both are described in docs/clicks.md.

Reading and writing apply the same checks (`check_click`), so whatever `write_click_json` writes,
`read_click_json` reads back, and a file it rejects is never written. Bad input raises `DataError`
naming the file, the image id and the field.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from absl import logging
import numpy as np

from pointseg_jax import NUM_CLASSES
from pointseg_jax.data import safe_json
from pointseg_jax.errors import DataError

# Keys a click carries in the released files; "annotator" / "time_ms" are our extension.
RELEASED_KEYS = ("x", "y", "cls", "rank")
# Fields of the clicks dict (`features.click_features`'s `clicks`) that click files fill.
CLICK_FIELDS = ("y", "x", "cls", "rank", "annotator")
# |x|, |y| bound in pixels: far beyond any photo (VOC's are <= 500 px; the released files reach
# x = 754 and x = -273), and small enough that float32 keeps 1/128 px resolution.
MAX_COORD = 65536.0
_INT32_MAX = 2**31 - 1
# How many ids a log line names at most.
_LOG_IDS = 20


def _number(value: Any, *, where: str, field: str, integer: bool, minimum: float) -> float | int:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise DataError(f"{where}: click field {field!r} is {safe_json.show(value)}, expected a number")
  if isinstance(value, int) and abs(value) > 2**63:   # before float(), which overflows on it
    raise DataError(f"{where}: click field {field!r} = {safe_json.show(value)} is out of range")
  if not math.isfinite(value):
    raise DataError(f"{where}: click field {field!r} is not finite ({value!r})")
  if integer:
    if float(value) != int(value):
      raise DataError(f"{where}: click field {field!r} = {value!r} must be an integer")
    value = int(value)
    if value < minimum:
      raise DataError(f"{where}: click field {field!r} = {value} must be >= {int(minimum)}")
    if value > _INT32_MAX:
      raise DataError(f"{where}: click field {field!r} = {value} does not fit int32")
    return value
  value = float(value)
  if not (abs(value) <= MAX_COORD and math.isfinite(np.float32(value))):
    raise DataError(f"{where}: click field {field!r} = {value!r} is not a pixel coordinate "
                    f"(|{field}| must be <= {MAX_COORD:g}: zero-indexed pixels of the image)")
  return value


def check_click(click: Any, *, source: str, image_id: str) -> dict:
  """One click of a click file, checked and normalised: floats x, y; ints cls, rank (+ options).

  cls must be 1..20 (background is never clicked), rank >= 1, annotator and time_ms >= 0;
  coordinates finite and within +-MAX_COORD. Other keys are kept as they are.
  """
  where = f"{source}: image {image_id!r}"
  if not isinstance(click, Mapping):
    raise DataError(f"{where}: a click must be an object with keys {list(RELEASED_KEYS)}, "
                    f"got {safe_json.show(click)}")
  missing = [k for k in RELEASED_KEYS if k not in click]
  if missing:
    raise DataError(f"{where}: click {safe_json.show(dict(click))} lacks keys {missing}")
  out = dict(click)
  for field in ("x", "y"):
    out[field] = _number(click[field], where=where, field=field, integer=False, minimum=-MAX_COORD)
  out["cls"] = _number(click["cls"], where=where, field="cls", integer=True, minimum=-_INT32_MAX)
  out["rank"] = _number(click["rank"], where=where, field="rank", integer=True, minimum=1)
  if not 1 <= out["cls"] < NUM_CLASSES:
    raise DataError(f"{where}: click cls {out['cls']} not in 1..{NUM_CLASSES - 1} (VOC object "
                    "classes; background is not clicked)")
  for opt in ("annotator", "time_ms"):
    if click.get(opt) is not None:
      out[opt] = _number(click[opt], where=where, field=opt, integer=True, minimum=0)
  return out


def check_asked(value: Any, *, source: str, image_id: str) -> frozenset[int]:
  """An image's "asked" list: distinct object class ids 1..20 (background is always known)."""
  where = f"{source}: image {image_id!r}"
  if (not isinstance(value, list)
      or not all(isinstance(c, int) and not isinstance(c, bool) for c in value)):
    raise DataError(f"{where}: \"asked\" must be a list of class ids 1..{NUM_CLASSES - 1}, got "
                    f"{safe_json.show(value)}")
  bad = [c for c in value if not 1 <= c < NUM_CLASSES]
  if bad or len(set(value)) != len(value):
    raise DataError(f"{where}: \"asked\" {safe_json.show(value)} must list distinct class ids 1.."
                    f"{NUM_CLASSES - 1}" + (f" ({bad} are not)" if bad else " (some twice)"))
  return frozenset(value)


def _entry(value: Any, *, source: str, image_id: str) -> tuple[list, frozenset[int] | None]:
  """(clicks, asked or None = every class) of one image's value: a list, or {asked, clicks}."""
  where = f"{source}: image {image_id!r}"
  if isinstance(value, dict):
    if set(value) != {"asked", "clicks"}:
      raise DataError(f"{where}: an image's object must have exactly the keys \"asked\" and "
                      f"\"clicks\", got {safe_json.show(sorted(value))}")
    asked = check_asked(value["asked"], source=source, image_id=image_id)
    value = value["clicks"]
  else:
    asked = None
  if not isinstance(value, list):
    raise DataError(f"{where}: value must be a list of clicks (or {{\"asked\": [...], "
                    f"\"clicks\": [...]}}), got {type(value).__name__}")
  clicks = [check_click(c, source=source, image_id=image_id) for c in value]
  if asked is not None:
    unasked = sorted({c["cls"] for c in clicks} - asked)
    if unasked:
      raise DataError(f"{where}: clicks on classes {unasked} that \"asked\" {sorted(asked)} does "
                      "not list (an annotator only clicks the class asked about); add them to it")
  return clicks, asked


def _read(path: str | os.PathLike) -> tuple[dict[str, list[dict]], dict[str, frozenset[int]]]:
  """(clicks by image id, asked classes by image id for the images that name them)."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise DataError(f"{path}: click file not found")
  data = safe_json.load(path, what="click file",
                        duplicates="an image id listed twice, or a click with a repeated field")
  if not isinstance(data, dict):
    raise DataError(f"{path}: top level must be an object {{image_id: [clicks]}}, "
                    f"got {type(data).__name__}")
  out, asked = {}, {}
  for key, value in data.items():
    out[key], a = _entry(value, source=path, image_id=key)
    if a is not None:
      asked[key] = a
  return out, asked


def read_click_json(path: str | os.PathLike) -> dict[str, list[dict]]:
  """Checked `{image_id: [click, ...]}` from a released or extended click JSON file."""
  return _read(path)[0]


def load_asked(*paths: str | os.PathLike | None) -> dict[str, np.ndarray]:
  """{image id: bool [NUM_CLASSES]} of the classes asked about, for every image in `paths`.

  An image given as a plain list (the released format) had every class asked; one given as
  {"asked", "clicks"} had its listed classes asked. Over several files (main + supp) a class is
  asked when any file asked it. Background (index 0) is always True: every pixel's answer to "is it
  an object of an asked class" is known once a class is asked, and the losses force it into L.
  """
  out: dict[str, np.ndarray] = {}
  for path in paths:
    if path is None:
      continue
    clicks, asked = _read(path)
    for key in clicks:
      row = out.setdefault(key, np.eye(1, NUM_CLASSES, dtype=bool)[0])
      if key in asked:
        row[sorted(asked[key])] = True
      else:
        row[:] = True
  return out


def empty_clicks() -> dict[str, np.ndarray]:
  """The clicks dict of an image without clicks (the feature spec's `clicks` sub-dict)."""
  return {"y": np.zeros(0, np.float32), "x": np.zeros(0, np.float32),
          "cls": np.zeros(0, np.int32), "rank": np.zeros(0, np.int32),
          "annotator": np.zeros(0, np.int32)}


def rows_to_arrays(rows: list[dict]) -> dict[str, np.ndarray]:
  """Checked clicks (each with "annotator") -> clicks dict; "time_ms" = -1 where a click has none."""
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
  (image, class) pairs, so this gives annotators 1 and 2 (docs/clicks.md, "The released files").
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
      logging.warning("%s: %d clicks of rank >= 2 come before any rank-1 click of their class "
                      "(given to annotator 1) in %d images: %s", os.fspath(supp_path),
                      sum(orphans.values()), len(ids),
                      ", ".join(ids[:_LOG_IDS]) + (" ..." if len(ids) > _LOG_IDS else ""))
  return {key: rows_to_arrays(r) for key, r in rows.items()}


def _click_rows(clicks: Mapping[str, np.ndarray], *, source: str, image_id: Any,
                annotator: bool) -> list[dict]:
  """A clicks dict -> checked JSON rows; `source` names the file that would be written."""
  if not isinstance(image_id, str):
    raise DataError(f"{source}: image id {image_id!r} must be a string (JSON object keys are)")
  fields = RELEASED_KEYS + (("annotator",) if annotator else ())
  missing = [k for k in fields if k not in clicks]
  if missing:
    raise DataError(f"{source}: image {image_id!r}: the clicks dict lacks fields {missing}")
  if annotator and "time_ms" in clicks:
    fields += ("time_ms",)
  sizes = {k: len(np.atleast_1d(clicks[k])) for k in fields}
  if len(set(sizes.values())) > 1:
    raise DataError(f"{source}: image {image_id!r}: click fields differ in length {sizes}")
  rows = []
  for i in range(sizes["x"]):
    row = {k: clicks[k][i].item() for k in RELEASED_KEYS}
    if annotator:
      row["annotator"] = clicks["annotator"][i].item()
      if "time_ms" in clicks and clicks["time_ms"][i] >= 0:  # -1 = not recorded
        row["time_ms"] = clicks["time_ms"][i].item()
    row = check_click(row, source=source, image_id=image_id)
    # Coordinates as float32 values, so what is written is exactly what the dataset stores.
    row["x"], row["y"] = float(np.float32(row["x"])), float(np.float32(row["y"]))
    rows.append(row)
  return rows


def _write_json(path: str | os.PathLike, data: dict) -> None:
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(data, f, allow_nan=False)
  os.replace(tmp, path)


def _arrays(clicks: Mapping[str, Any]) -> dict[str, np.ndarray]:
  return {k: np.atleast_1d(np.asarray(v)) for k, v in clicks.items()}


def write_click_json(path: str | os.PathLike, clicks_by_id: Mapping[str, Mapping[str, np.ndarray]],
                     asked: Mapping[str, Any] | None = None) -> None:
  """Write the extended format: released keys + "annotator" (+ "time_ms" when known) per click.

  `asked` {image id: class ids (1..20) asked about}: an image whose asked classes are not all 20 is
  written as {"asked": [...], "clicks": [...]}; images not in `asked` had every class asked (a plain
  list). Every click is checked as `read_click_json` would check it (and the "asked" list, and that
  no click is on an unasked class); on a bad click nothing is written.
  """
  source = f"{os.fspath(path)} (not written)"
  asked = asked or {}
  data = {}
  for key, c in clicks_by_id.items():
    rows = _click_rows(_arrays(c), source=source, image_id=key, annotator=True)
    if key in asked:
      a = sorted(int(x) for x in asked[key] if int(x) != 0)
      if len(a) < NUM_CLASSES - 1:
        data[key] = {"asked": a, "clicks": rows}
        _entry(data[key], source=source, image_id=key)   # the reader's checks
        continue
    data[key] = rows
  _write_json(path, data)


def write_released_json(main_path: str | os.PathLike, supp_path: str | os.PathLike,
                        clicks_by_id: Mapping[str, Mapping[str, np.ndarray]]) -> None:
  """Write the authors' two-file format: annotator 0 -> main, annotators >= 1 -> supp.

  Supp clicks are written annotator by annotator (then class, rank), so `load_clicks` reading both
  files gives back the same clicks. The released format does not name workers: annotator ids come
  back the same when each supp annotator clicked every class another supp annotator clicked; a
  class clicked by annotator 2 only reads back as annotator 1. `write_click_json` is lossless.
  Clicks are checked as for `write_click_json`; on a bad click neither file is written.
  """
  source = f"{os.fspath(main_path)} / {os.fspath(supp_path)} (not written)"
  main, supp = {}, {}
  for key, c in clicks_by_id.items():
    sub = _arrays(c)
    rows = _click_rows(sub, source=source, image_id=key, annotator=True)
    ann = sub["annotator"]
    for target, sel in ((main, ann == 0), (supp, ann >= 1)):
      idx = np.flatnonzero(sel)
      # Annotator -> class -> rank (stable), so that `assign_supp_annotators` recovers annotators.
      idx = idx[np.lexsort((sub["rank"][idx], sub["cls"][idx], ann[idx]))]
      target[key] = [{k: rows[i][k] for k in RELEASED_KEYS} for i in idx]
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
