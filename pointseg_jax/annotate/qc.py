"""Gold images and the paper's quality control (Bearman et al. 2016, §3, footnote 2).

"Quality control is done by planting 10 evaluation images in a 50-image task and ensuring at least 8
are labeled correctly. We consider a click correct if it falls inside a tight bounding box around the
object. For the AllPoints task, the number of annotated clicks must be at least the number of known
object instances."

Our reading (docs/annotate.md, "Quality control"), per gold image and target class:
  class absent   -> right iff the annotator marked it "not present";
  class present  -> "not present" is wrong;
  1Point         -> right iff the one click lies in the tight box of an instance of the class;
  AllPoints      -> right iff every click lies in some instance's box and the clicks hit every
                    instance: distinct clicked pixels matched one-to-one to boxes (a maximum
                    bipartite matching), so repeated clicks on one spot count once.
A task is accepted iff at least `min_correct` of its gold images are right.

A check only means something when enough of a task's gold images contain the class: with p of g
gold images present, an annotator who never looks at the images and answers "not present" with
probability r (else clicks, and we grant that every such click lands in a box: the worst case)
gets Bin(g - p, r) + Bin(p, 1 - r) right. `false_pass_probability` is its chance to pass, maximised
over r; `gold_split` picks per class the p whose false pass is at most MAX_FALSE_PASS and that
leaves the most disjoint gold groups (see db.plan_tasks: an annotator never sees a gold image twice
for the same class and kind, so recurrence does not give gold images away).

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
from pointseg_jax import files

KINDS = ("1point", "allpoints")
# A gold check a blind annotator passes with a higher probability than this is refused unless the
# project allows weak gold (--allow_weak_gold). The paper's check (8 of 10 right) is at its best
# with 5 present gold images: 5.5 %; with 4 (or 6): 6.9 %; with 3 (or 7): 14.9 %; with <= 2: 100 %.
MAX_FALSE_PASS = 0.10


@dataclasses.dataclass(frozen=True)
class Box:
  cls: int
  xmin: float
  ymin: float
  xmax: float
  ymax: float

  def contains(self, x: float, y: float) -> bool:
    return self.xmin <= x < self.xmax and self.ymin <= y < self.ymax


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
      parsed.append(Box(files.class_id(b["cls"], source=where), xmin, ymin, xmax, ymax))
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


def instances_hit(boxes: Sequence[Box], clicks: Sequence[tuple[float, float]]) -> int:
  """How many instances the clicks hit, each distinct clicked pixel standing for one instance at
  most: the size of a maximum matching between clicked pixels and the boxes containing them
  (augmenting paths; boxes and clicks are few)."""
  pixels = {}
  for x, y in clicks:
    pixels.setdefault((math.floor(x), math.floor(y)), (x, y))
  options = [[j for j, b in enumerate(boxes) if b.contains(x, y)] for x, y in pixels.values()]
  owner: dict[int, int] = {}   # box -> pixel index

  def augment(i: int, seen: set[int]) -> bool:
    for j in options[i]:
      if j not in seen:
        seen.add(j)
        if j not in owner or augment(owner[j], seen):
          owner[j] = i
          return True
    return False

  return sum(augment(i, set()) for i in range(len(options)))


def gold_right(kind: str, boxes: Sequence[Box], absent: bool,
               clicks: Sequence[tuple[float, float]]) -> bool:
  """Is one answer (absent flag, clicks (x, y)) on a gold image right for the target class?

  `boxes` are the gold boxes of the target class only (empty: the class is absent).
  """
  if kind not in KINDS:
    raise ValueError(f"unknown task kind {kind!r}; expected one of {KINDS}")
  if not boxes:
    return absent and not clicks
  if absent or not clicks:
    return False
  if not all(any(b.contains(x, y) for b in boxes) for x, y in clicks):
    return False
  if kind == "1point":
    return len(clicks) == 1
  return instances_hit(boxes, clicks) == len(boxes)


def false_pass_probability(n_present: int, gold_per_task: int, min_correct: int) -> float:
  """max over r of P(Bin(g - p, r) + Bin(p, 1 - r) >= m): a task's chance to pass for an annotator
  who answers "not present" with probability r without looking, and otherwise clicks inside a box
  (the worst case: a blind click that always hits). r = 1 and r = 0 are "not present" everywhere
  and "a click" everywhere; r runs over a grid of 1001 values."""
  g, p = gold_per_task, n_present

  def pmf(n: int, q: np.ndarray) -> np.ndarray:   # [R, n + 1]
    k = np.arange(n + 1)
    comb = np.array([math.comb(n, i) for i in k], np.float64)
    return comb * q[:, None] ** k * (1 - q[:, None]) ** (n - k)

  r = np.linspace(0.0, 1.0, 1001)
  a, b = pmf(g - p, r), pmf(p, 1 - r)
  right = np.zeros((len(r), g + 1))
  for i in range(p + 1):      # distribution of the sum, per r
    right[:, i:i + g - p + 1] += b[:, i:i + 1] * a
  return float(right[:, min_correct:].sum(axis=1).max()) if min_correct > 0 else 1.0


@dataclasses.dataclass(frozen=True)
class GoldSplit:
  """How a class's tasks draw gold: `present` of the gold_per_task contain the class; the gold set
  gives `groups` disjoint such draws; a blind annotator passes with probability `false_pass`."""
  present: int
  groups: int
  false_pass: float

  @property
  def weak(self) -> bool:
    return self.false_pass > MAX_FALSE_PASS


def gold_split(n_pos: int, n_neg: int, gold_per_task: int, min_correct: int) -> GoldSplit | None:
  """The split of a class's gold (n_pos images with it, n_neg without): among the p whose false
  pass is at most MAX_FALSE_PASS, the one with the most disjoint groups (then the lowest false
  pass); when no p is that good, the lowest false pass (weak). None: fewer than gold_per_task."""
  g = gold_per_task
  options = []
  for p in range(0, g + 1):
    if p > n_pos or g - p > n_neg:
      continue
    groups = min(n_pos // p if p else 10**9, n_neg // (g - p) if g - p else 10**9)
    options.append(GoldSplit(p, groups, false_pass_probability(p, g, min_correct)))
  if not options:
    return None
  good = [o for o in options if not o.weak]
  if good:
    return max(good, key=lambda o: (o.groups, -o.false_pass, -abs(2 * o.present - g)))
  return min(options, key=lambda o: (o.false_pass, -o.groups, abs(2 * o.present - g)))


def min_present(gold_per_task: int, min_correct: int) -> int | None:
  """The fewest present gold images per task for which the check is not weak (None: no number)."""
  for p in range(gold_per_task + 1):
    if false_pass_probability(p, gold_per_task, min_correct) <= MAX_FALSE_PASS:
      return p
  return None


def accepted(results: Iterable[bool], min_correct: int) -> tuple[bool, int, int]:
  """(accepted, gold right, gold total) of one task's gold answers."""
  results = list(results)
  right = sum(bool(r) for r in results)
  return right >= min_correct, right, len(results)
