"""Point supervision synthesised from dense masks, the way the paper's crowd made it.

Every supervision the feature spec stores (`features.click_features`) comes out of
`simulate_annotations`, built from small pure functions of (masks, np.random.Generator):

- `all_points` / `one_point`: human-style clicks. An annotator clicks the instances of each class in
  order of size (rank 1 = largest), near the instance centre (sampling weight = distance-to-boundary
  ** `centre_power`: people click well inside objects, paper §4 "humans are predictable and
  consistent in pointing"). Annotator 0 clicks every instance (AllPoints, main JSON); annotators 1
  and 2 click once per class (1Point, supp JSON).
- `CrowdErrorModel`: the paper's measured error rates (§4): a class is missed 1.0 % of the time;
  7.2 % of clicks land on another class and 0.8 % on a void ("difficult") pixel — placed just
  outside the object, as real misclicks are; AllPoints leaves 7.9 % of further instances unclicked.
- `random_points`: uniform inside each class mask (authors' `save_random_click_masks_convex_hull.m`).
- `squiggles`: one scribble per instance, a smooth random walk inside the eroded instance.
- `boxes`: tight box per instance. `background_clicks`: a few points well inside the background
  (the protocol of later work, e.g. TEL / SASFormer: every instance + background points).

Coordinates are float pixels, zero-indexed, x = column: a click on pixel (r, c) is (r + u, c + v)
with u, v ~ U[0, 1), so floor() gives the pixel back (the released JSON has float coordinates).
The tf.data pipeline rasterises all of these after augmentation (`rasterize.py`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage

from pointseg_jax import IGNORE_INDEX, NUM_CLASSES
from pointseg_jax.data import click_json

_F = np.float32
_I = np.int32


@dataclasses.dataclass(frozen=True)
class CrowdErrorModel:
  """Error rates of AMT workers measured in the paper (§4, 12,031 images).

  missed_class: P(an annotator says a present class is absent) -> no click for that class.
  wrong_class: P(a click lands on a pixel of another class) -> nearest other-class pixels.
  void_click: P(a click lands on a void / "difficult" pixel) -> nearest void pixels (falls back to
    `wrong_class` placement when the mask has no void).
  missed_instance: P(annotator 0 leaves an instance after the first of its class unclicked)
    (AllPoints: 7.9 % of ground-truth instances unannotated).
  outside_spread: misclicks land within this many pixels (plus 5 % of the instance's size) of the
    nearest wrong pixel: just outside the boundary, not anywhere in the image.
  """
  missed_class: float = 0.010
  wrong_class: float = 0.072
  void_click: float = 0.008
  missed_instance: float = 0.079
  outside_spread: float = 3.0

  @property
  def outside_rate(self) -> float:
    """P(a click is not on its class): 7.2 % + 0.8 % = 8.0 % with the paper's numbers."""
    return self.wrong_class + self.void_click


NO_ERRORS = CrowdErrorModel(missed_class=0.0, wrong_class=0.0, void_click=0.0, missed_instance=0.0)


@dataclasses.dataclass(eq=False)
class Instance:
  """One object: its class, pixel mask (bool [H, W]) and area in pixels.

  The distance transform and the click-sampling weights are computed once per instance and cached
  (an image's annotators all click the same instances).
  """
  cls: int
  region: np.ndarray
  area: int

  @functools.cached_property
  def inner(self) -> tuple[np.ndarray, tuple[slice, slice]]:
    return inner_distance(self.region)

  @functools.cached_property
  def _cdfs(self) -> dict:
    return {}

  def centre_biased_pixel(self, rng: np.random.Generator, power: float) -> tuple[float, float]:
    """`centre_biased_pixel(self.region, rng, power=power)`, with cached weights."""
    dist, sl = self.inner
    if power not in self._cdfs:
      # Outside pixels of the crop have distance 0; 0 ** 0 == 1 would make them clickable.
      weights = np.where(dist > 0, dist ** power, 0.0)
      self._cdfs[power] = np.cumsum(weights.ravel(), dtype=np.float64)
    k = _sample_cdf(self._cdfs[power], rng)
    r, c = divmod(k, dist.shape[1])
    return _jitter(r + sl[0].start, c + sl[1].start, rng)


# ----------------------------------------------------------------------------------------------
# Instances.


def find_instances(mask: np.ndarray, instance_mask: np.ndarray | None = None, *,
                   min_component_fraction: float = 0.01) -> list[Instance]:
  """Object instances of a VOC-style mask, sorted by class, then area (largest first).

  With `instance_mask` (1..n ids, 0 none, 255 void) an instance is its id's pixels of its majority
  class. Classes without any instance id (or every class when `instance_mask` is None) are split
  into 8-connected components of the class mask; components smaller than `min_component_fraction`
  of the class's largest one are not instances (VOC masks have many specks of a few pixels where
  void bands cut thin parts off: nobody would click them).
  """
  mask = np.asarray(mask)
  out: list[Instance] = []
  has_inst: set[int] = set()
  if instance_mask is not None:
    inst = np.asarray(instance_mask)
    for iid in np.unique(inst):
      if iid == 0 or iid == IGNORE_INDEX:
        continue
      px = inst == iid
      vals = mask[px]
      vals = vals[(vals >= 1) & (vals < NUM_CLASSES)]
      if vals.size == 0:
        continue
      cls = int(np.bincount(vals).argmax())
      region = px & (mask == cls)
      out.append(Instance(cls, region, int(region.sum())))
      has_inst.add(cls)
  for cls in present_classes(mask):
    if cls in has_inst:
      continue
    comps, n = ndimage.label(mask == cls, structure=np.ones((3, 3)))
    areas = np.bincount(comps.ravel(), minlength=n + 1)[1:]
    for k in np.flatnonzero(areas >= min_component_fraction * areas.max()) + 1:
      region = comps == k
      out.append(Instance(cls, region, int(areas[k - 1])))
  order = sorted(range(len(out)), key=lambda i: (out[i].cls, -out[i].area, _first_pixel(out[i])))
  return [out[i] for i in order]


def _first_pixel(inst: Instance) -> int:
  return int(np.argmax(inst.region.ravel()))


def present_classes(mask: np.ndarray) -> list[int]:
  """Sorted object classes (1..20) present in a mask."""
  vals = np.unique(np.asarray(mask))
  return [int(v) for v in vals if 1 <= v < NUM_CLASSES]


# ----------------------------------------------------------------------------------------------
# Pixel samplers (all return float (y, x) with floor() == the chosen pixel).


def _sample_cdf(cdf: np.ndarray, rng: np.random.Generator) -> int:
  return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), cdf.size - 1))


def _jitter(r: int, c: int, rng: np.random.Generator) -> tuple[float, float]:
  u = rng.random(2)
  # float32 of r + 0.99999999 rounds up to r + 1 for large r: keep floor() == the pixel.
  return (float(min(_F(r + u[0]), np.nextafter(_F(r + 1), _F(0)))),
          float(min(_F(c + u[1]), np.nextafter(_F(c + 1), _F(0)))))


def _bbox(region: np.ndarray, margin: int = 1) -> tuple[slice, slice]:
  rows = np.flatnonzero(region.any(1))
  cols = np.flatnonzero(region.any(0))
  return (slice(max(rows[0] - margin, 0), rows[-1] + 1 + margin),
          slice(max(cols[0] - margin, 0), cols[-1] + 1 + margin))


def inner_distance(region: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
  """Distance to the nearest pixel outside `region` (cropped to its box + 1 px) and the crop."""
  sl = _bbox(region)
  crop = np.pad(region[sl], 1)
  return ndimage.distance_transform_edt(crop)[1:-1, 1:-1], sl


def uniform_pixel(region: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
  """A pixel uniformly at random inside `region` (the authors' random points)."""
  idx = np.flatnonzero(region.ravel())
  r, c = divmod(int(idx[rng.integers(idx.size)]), region.shape[1])
  return _jitter(r, c, rng)


def centre_biased_pixel(region: np.ndarray, rng: np.random.Generator, *,
                        power: float = 2.0) -> tuple[float, float]:
  """A pixel of `region` with probability ∝ (distance to the boundary) ** power.

  power = 0 is uniform; larger powers pull clicks toward the point of maximum distance transform
  (the "middle" of the object), as people click.
  """
  return Instance(0, region, 0).centre_biased_pixel(rng, power)


def misclick_pixel(region: np.ndarray, candidates: np.ndarray, rng: np.random.Generator, *,
                   spread: float) -> tuple[float, float] | None:
  """A pixel of `candidates` just outside `region`: uniform among candidates within `spread` px of
  the nearest one. None when there is no candidate pixel."""
  if not candidates.any():
    return None
  # Work in the region's box + margin when the answer lies inside it (every pixel outside the
  # window is > margin from the region), else over the whole image.
  margin = int(np.ceil(2 * spread)) + 8
  win = _bbox(region, margin=margin)
  for sl in (win, (slice(None), slice(None))):
    dist = ndimage.distance_transform_edt(~region[sl])
    d = np.where(candidates[sl], dist, np.inf)
    if np.isfinite(d.min()) and (d.min() + spread <= margin or sl is not win):
      near = np.zeros_like(region)
      near[sl] = d <= d.min() + spread
      return uniform_pixel(near, rng)
  raise AssertionError("unreachable: candidates exist")


# ----------------------------------------------------------------------------------------------
# Clicks of one annotator.


def _click(inst: Instance, mask: np.ndarray, rng: np.random.Generator, em: CrowdErrorModel,
           power: float) -> tuple[float, float]:
  """One click on `inst`: correct (centre-biased) or, with the model's rates, just outside it."""
  u = rng.random()
  if u < em.outside_rate:
    spread = em.outside_spread + 0.05 * np.sqrt(inst.area)
    wrong = (mask != inst.cls) & (mask != IGNORE_INDEX)
    void = mask == IGNORE_INDEX
    first, second = (wrong, void) if u < em.wrong_class else (void, wrong)
    for cand in (first, second):
      yx = misclick_pixel(inst.region, cand, rng, spread=spread)
      if yx is not None:
        return yx
  return inst.centre_biased_pixel(rng, power)


def _rows(rows: list[tuple]) -> dict[str, np.ndarray]:
  if not rows:
    return click_json.empty_clicks()
  y, x, cls, rank, ann = zip(*rows)
  return {"y": np.array(y, _F), "x": np.array(x, _F), "cls": np.array(cls, _I),
          "rank": np.array(rank, _I), "annotator": np.array(ann, _I)}


def all_points(instances: Sequence[Instance], mask: np.ndarray, rng: np.random.Generator, *,
               annotator: int = 0, error_model: CrowdErrorModel = CrowdErrorModel(),
               centre_power: float = 2.0, every_instance: bool = True) -> dict[str, np.ndarray]:
  """Clicks of one annotator: per class (unless missed) its instances by decreasing size.

  Rank 1 is the largest instance; further instances (only when `every_instance`) are each left out
  with P = missed_instance, and ranks stay consecutive 1..n per class.
  """
  mask = np.asarray(mask)
  by_cls: dict[int, list[Instance]] = {}
  for inst in instances:
    by_cls.setdefault(inst.cls, []).append(inst)
  rows = []
  for cls in sorted(by_cls):
    if rng.random() < error_model.missed_class:
      continue
    insts = sorted(by_cls[cls], key=lambda i: -i.area)
    chosen = insts[:1]
    if every_instance:
      chosen += [i for i in insts[1:] if rng.random() >= error_model.missed_instance]
    for rank, inst in enumerate(chosen, start=1):
      y, x = _click(inst, mask, rng, error_model, centre_power)
      rows.append((y, x, cls, rank, annotator))
  return _rows(rows)


def one_point(instances: Sequence[Instance], mask: np.ndarray, rng: np.random.Generator, *,
              annotator: int = 1, error_model: CrowdErrorModel = CrowdErrorModel(),
              centre_power: float = 2.0) -> dict[str, np.ndarray]:
  """1Point: one click per present class, on its largest instance."""
  return all_points(instances, mask, rng, annotator=annotator, error_model=error_model,
                    centre_power=centre_power, every_instance=False)


def concat(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Concatenate point dicts with the same keys."""
  return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def select_clicks(clicks: Mapping[str, np.ndarray], *, annotators: Sequence[int] = (0,),
                  max_rank: int | None = None) -> dict[str, np.ndarray]:
  """Subset of a clicks dict: 1Point = annotators (0,), max_rank 1; AllPoints = (0,), None;
  3 annotators = (0, 1, 2), max_rank 1 (the authors' definitions: docs/clicks.md)."""
  keep = np.isin(clicks["annotator"], annotators)
  if max_rank is not None:
    keep &= np.asarray(clicks["rank"]) <= max_rank
  return {k: np.asarray(v)[keep] for k, v in clicks.items()}


# ----------------------------------------------------------------------------------------------
# Ground-truth-derived supervision.


def random_points(mask: np.ndarray, rng: np.random.Generator, *, per_class: int = 1
                  ) -> dict[str, np.ndarray]:
  """`per_class` pixels per present class, uniform over the class's ground-truth pixels."""
  mask = np.asarray(mask)
  ys, xs, cs = [], [], []
  for cls in present_classes(mask):
    for _ in range(per_class):
      y, x = uniform_pixel(mask == cls, rng)
      ys.append(y), xs.append(x), cs.append(cls)
  return {"y": np.array(ys, _F), "x": np.array(xs, _F), "cls": np.array(cs, _I)}


def background_clicks(mask: np.ndarray, rng: np.random.Generator, *, num: int = 3,
                      margin: float = 5.0) -> dict[str, np.ndarray]:
  """`num` background (class 0) clicks, uniform over background pixels at least `margin` px from
  anything else (or the most inner background pixels when none is that far)."""
  mask = np.asarray(mask)
  bg = mask == 0
  if num <= 0 or not bg.any():
    return {"y": np.zeros(0, _F), "x": np.zeros(0, _F), "cls": np.zeros(0, _I)}
  # Distance to a non-background pixel; the image border does not count as an object.
  dist = ndimage.distance_transform_edt(bg) if (~bg).any() else np.full(mask.shape, np.inf)
  inner = bg & (dist >= min(margin, dist[bg].max()))
  pts = [uniform_pixel(inner, rng) for _ in range(num)]
  return {"y": np.array([p[0] for p in pts], _F), "x": np.array([p[1] for p in pts], _F),
          "cls": np.zeros(num, _I)}


def boxes(instances: Sequence[Instance]) -> dict[str, np.ndarray]:
  """Tight box per instance in pixel-edge coordinates: it covers pixels ymin <= row < ymax,
  xmin <= col < xmax (so ymax = last row + 1)."""
  vals = []
  for inst in instances:
    sl = _bbox(inst.region, margin=0)
    vals.append((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop, inst.cls))
  arr = np.array(vals, np.float64).reshape(-1, 5)
  return {"ymin": arr[:, 0].astype(_F), "xmin": arr[:, 1].astype(_F),
          "ymax": arr[:, 2].astype(_F), "xmax": arr[:, 3].astype(_F), "cls": arr[:, 4].astype(_I)}


def _segment_inside(inner: np.ndarray, p: np.ndarray, q: np.ndarray) -> bool:
  n = int(np.ceil(np.abs(q - p).max() * 2)) + 1
  pts = np.floor(p + np.linspace(0.0, 1.0, n + 1)[:, None] * (q - p)).astype(int)
  h, w = inner.shape
  ok = (pts[:, 0] >= 0) & (pts[:, 0] < h) & (pts[:, 1] >= 0) & (pts[:, 1] < w)
  return bool(ok.all() and inner[pts[:, 0], pts[:, 1]].all())


def squiggle(region: np.ndarray, rng: np.random.Generator, *, num_points: int = 8,
             erode: float = 0.3, turn: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """One scribble inside `region`: a smooth random walk through its eroded core.

  The walk starts at a centre-biased pixel of the core (distance to the boundary >= `erode` x the
  maximum distance), takes `num_points - 1` equal steps (total length ≈ 0.6 x sqrt(area), about
  the object's width) turning by N(0, turn) radians; a step that would leave the core tries other
  headings and the stroke ends early when none fits. Returns float (ys, xs).
  """
  dist, sl = inner_distance(region)
  inner = dist >= max(1.0, erode * dist.max())
  offset = np.array([sl[0].start, sl[1].start], np.float64)
  y0, x0 = centre_biased_pixel(inner, rng, power=1.0)
  p = np.array([np.floor(y0) + 0.5, np.floor(x0) + 0.5])
  step = max(1.0, 0.6 * np.sqrt(region.sum()) / max(num_points - 1, 1))
  heading = rng.uniform(0, 2 * np.pi)
  pts = [p]
  for _ in range(num_points - 1):
    heading += rng.normal(0.0, turn)
    for delta in (0, 1, -1, 2, -2, 3, -3, 4):
      h = heading + delta * np.pi / 4
      q = p + step * np.array([np.sin(h), np.cos(h)])
      if _segment_inside(inner, p, q):
        heading, p = h, q
        pts.append(q)
        break
    else:
      break
  arr = np.array(pts) + offset
  return arr[:, 0].astype(_F), arr[:, 1].astype(_F)


def squiggles(instances: Sequence[Instance], rng: np.random.Generator, *, num_points: int = 8
              ) -> dict[str, np.ndarray]:
  """One stroke per instance (stroke ids 0..n-1 in instance order), points of a stroke in order."""
  ys, xs, cs, ss = [], [], [], []
  for stroke, inst in enumerate(instances):
    y, x = squiggle(inst.region, rng, num_points=num_points)
    ys.append(y), xs.append(x)
    cs.append(np.full(y.size, inst.cls, _I)), ss.append(np.full(y.size, stroke, _I))
  if not ys:
    return {"y": np.zeros(0, _F), "x": np.zeros(0, _F), "cls": np.zeros(0, _I),
            "stroke": np.zeros(0, _I)}
  return {"y": np.concatenate(ys), "x": np.concatenate(xs), "cls": np.concatenate(cs),
          "stroke": np.concatenate(ss)}


# ----------------------------------------------------------------------------------------------
# Everything the feature spec stores.


def simulate_annotations(mask: np.ndarray, instance_mask: np.ndarray | None,
                         rng: np.random.Generator, *, num_annotators: int = 3,
                         error_model: CrowdErrorModel = CrowdErrorModel(),
                         squiggle_points: int = 8, random_per_class: int = 1,
                         num_background: int = 3, centre_power: float = 2.0) -> dict:
  """Every supervision of `features.click_features` for one image, from its masks.

  mask: uint8 [H, W] class ids (255 void); instance_mask: uint8 [H, W] (1..n, 0 none, 255 void)
  or None (instances = connected components per class). Annotator 0 clicks every instance
  (AllPoints, like the main JSON), annotators 1..num_annotators-1 once per class (like the supp
  JSON); all with `error_model`. Random points, squiggles, boxes and background clicks are
  ground-truth derived and error free. Deterministic given the state of `rng`.

  Returns {"clicks": {y,x,cls,rank,annotator}, "random_clicks": {y,x,cls},
  "background_clicks": {y,x,cls}, "squiggles": {y,x,cls,stroke},
  "boxes": {ymin,xmin,ymax,xmax,cls}}: float32 coordinates, int32 integers, possibly empty.
  """
  mask = np.asarray(mask)
  if mask.ndim == 3 and mask.shape[-1] == 1:
    mask = mask[..., 0]
  if instance_mask is not None:
    instance_mask = np.asarray(instance_mask)
    if instance_mask.ndim == 3 and instance_mask.shape[-1] == 1:
      instance_mask = instance_mask[..., 0]
    if instance_mask.shape != mask.shape:
      raise ValueError(f"instance_mask shape {instance_mask.shape} != mask shape {mask.shape}")
  instances = find_instances(mask, instance_mask)
  kw = dict(error_model=error_model, centre_power=centre_power)
  per_annotator = [all_points(instances, mask, rng, annotator=0, **kw)]
  per_annotator += [one_point(instances, mask, rng, annotator=a, **kw)
                    for a in range(1, num_annotators)]
  return {
      "clicks": concat(per_annotator),
      "random_clicks": random_points(mask, rng, per_class=random_per_class),
      "background_clicks": background_clicks(mask, rng, num=num_background),
      "squiggles": squiggles(instances, rng, num_points=squiggle_points),
      "boxes": boxes(instances),
  }
