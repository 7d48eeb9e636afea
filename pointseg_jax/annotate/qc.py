"""Gold images and the paper's quality control (Bearman et al. 2016, §3, footnote 2).

"Quality control is done by planting 10 evaluation images in a 50-image task and ensuring at least 8
are labeled correctly. We consider a click correct if it falls inside a tight bounding box around the
object. For the AllPoints task, the number of annotated clicks must be at least the number of known
object instances."

Our reading (docs/annotate.md, "Quality control"), per gold image and target class:
  class absent   -> right iff the annotator marked it "not present";
  1Point         -> right iff the one click lies in the tight box of an instance of the class;
  AllPoints      -> right iff every click lies in some instance's box and #clicks >= #instances.
A task is accepted iff at least `min_correct` of its gold images are right.

Gold file (JSON; every class not listed for an image is absent from it):
  {"gold_001.jpg": [{"cls": "dog", "box": [xmin, ymin, xmax, ymax]}, ...], "gold_002.jpg": []}
Boxes are in pixel-edge coordinates (a box covers pixels xmin <= column < xmax, like
`clicks.boxes`); a click (x, y) is inside iff xmin <= x < xmax and ymin <= y < ymax.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Iterable, Mapping, Sequence

import numpy as np

from pointseg_jax import CLASS_NAMES
from pointseg_jax import errors

KINDS = ("1point", "allpoints")


@dataclasses.dataclass(frozen=True)
class Box:
  cls: int
  xmin: float
  ymin: float
  xmax: float
  ymax: float

  def contains(self, x: float, y: float) -> bool:
    return self.xmin <= x < self.xmax and self.ymin <= y < self.ymax


def class_id(value, *, source: str) -> int:
  """A VOC object class (1..20) from its id or its name ('dog', 'Dog'); else a DataError."""
  if isinstance(value, bool):
    raise errors.DataError(f"{source}: class {value!r} is neither an id 1..20 nor a VOC class name")
  if isinstance(value, int) and 1 <= value < len(CLASS_NAMES):
    return value
  if isinstance(value, str) and value.lower() in CLASS_NAMES[1:]:
    return CLASS_NAMES.index(value.lower())
  raise errors.DataError(f"{source}: class {value!r} is neither an id 1..20 nor one of the VOC "
                         f"class names {list(CLASS_NAMES[1:])}")


def parse_gold(data: object, sizes: Mapping[str, tuple[int, int]], *, source: str
               ) -> dict[str, list[Box]]:
  """{image name: boxes} from a parsed gold file, checked against `sizes` {name: (height, width)}.

  Keys may be file names ("x.jpg") or image ids ("x"); both map to the file name in `sizes`.
  """
  if not isinstance(data, dict):
    raise errors.DataError(f"{source}: a gold file is an object {{image name: [boxes]}}, "
                           f"got {type(data).__name__}")
  by_stem = {os.path.splitext(n)[0]: n for n in sizes}
  out: dict[str, list[Box]] = {}
  for key, boxes in data.items():
    name = key if key in sizes else by_stem.get(key)
    if name is None:
      raise errors.DataError(f"{source}: gold image {key!r} is not an image of the images folder")
    if name in out:
      raise errors.DataError(f"{source}: gold image {key!r} is listed twice")
    if not isinstance(boxes, list):
      raise errors.DataError(f"{source}: gold image {key!r}: value must be a list of "
                             '{"cls": ..., "box": [xmin, ymin, xmax, ymax]}')
    h, w = sizes[name]
    parsed = []
    for b in boxes:
      where = f"{source}: gold image {key!r}"
      if not isinstance(b, dict) or set(b) != {"cls", "box"}:
        raise errors.DataError(f"{where}: each entry must be {{\"cls\": ..., \"box\": [xmin, ymin, "
                               f"xmax, ymax]}}, got {b!r}")
      box = b["box"]
      if (not isinstance(box, list) or len(box) != 4
          or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                     for v in box)):
        raise errors.DataError(f"{where}: box {box!r} must be 4 finite numbers [xmin, ymin, xmax, ymax]")
      xmin, ymin, xmax, ymax = (float(v) for v in box)
      if not (0 <= xmin < xmax <= w and 0 <= ymin < ymax <= h):
        raise errors.DataError(f"{where}: box {box!r} must satisfy 0 <= xmin < xmax <= {w} and "
                               f"0 <= ymin < ymax <= {h} (the image is {w}x{h})")
      parsed.append(Box(class_id(b["cls"], source=where), xmin, ymin, xmax, ymax))
    out[name] = parsed
  return out


def read_gold(path: str, sizes: Mapping[str, tuple[int, int]]) -> dict[str, list[Box]]:
  """`parse_gold` of a JSON file; a missing or malformed file is a clear error naming it."""
  if not os.path.isfile(path):
    raise errors.MissingInputError(f"{path}: gold file not found (see docs/annotate.md, 'Gold images')")
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.DataError(f"{path}: malformed JSON ({e})") from e
  return parse_gold(data, sizes, source=path)


def gold_from_masks(mask: np.ndarray, instance_mask: np.ndarray | None) -> list[dict]:
  """Gold-file entries (tight boxes per instance) of one VOC class mask (+ instance mask)."""
  # Imported here: clicks pulls in scipy (~1 s), which the server and every other command skip.
  from pointseg_jax.data import clicks as clicks_lib  # pylint: disable=g-import-not-at-top
  boxes = clicks_lib.boxes(clicks_lib.find_instances(mask, instance_mask))
  return [{"cls": CLASS_NAMES[int(c)], "box": [int(x0), int(y0), int(x1), int(y1)]}
          for x0, y0, x1, y1, c in zip(boxes["xmin"], boxes["ymin"], boxes["xmax"], boxes["ymax"],
                                       boxes["cls"])]


def gold_right(kind: str, boxes: Sequence[Box], absent: bool,
               clicks: Sequence[tuple[float, float]]) -> bool:
  """Is one answer (absent flag, clicks (x, y)) on a gold image right for the target class?

  `boxes` are the gold boxes of the target class only (empty: the class is absent).
  """
  if not boxes:
    return absent and not clicks
  if absent or not clicks:
    return False
  inside = [any(b.contains(x, y) for b in boxes) for x, y in clicks]
  if kind == "1point":
    return len(clicks) == 1 and inside[0]
  if kind == "allpoints":
    return len(clicks) >= len(boxes) and all(inside)
  raise ValueError(f"unknown task kind {kind!r}; expected one of {KINDS}")


def accepted(results: Iterable[bool], min_correct: int) -> tuple[bool, int, int]:
  """(accepted, gold right, gold total) of one task's gold answers."""
  results = list(results)
  right = sum(bool(r) for r in results)
  return right >= min_correct, right, len(results)
