"""Label kinds: the one table {kind: how it rasterises into sparse_labels, which classes it labels}.

`config.data.label_kind` picks a row (names and meanings: `spec.LABEL_KINDS`, docs/pipeline.md
"Label kinds"). Each row has
  rasterise(example, spec, warp) -> (sparse_labels, sparse_weights, counters, checks)
      the annotation carried through the example's warp (crop / scale / flip) onto the output grid;
  classes(example, mask) -> int32 ids
      the classes this annotation labels: what `present` holds when
      `image_labels_from='clicks'` (the authors' kernel reads the class list off the rasterised
      annotation; docs/losses.md, "The authors' loss layer").
Everything here is pure TF and runs inside `tf.data.map`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import tensorflow as tf

from pointseg_jax import IGNORE_INDEX, NUM_CLASSES
from pointseg_jax.data import augment
from pointseg_jax.data import rasterize
from pointseg_jax.data import spec as spec_lib
from pointseg_jax.data.features import MAIN_ANNOTATOR


class Warp(NamedTuple):
  """An example's geometry and the warped (class, instance) key map the clicks are matched to."""
  geometry: augment.Geometry
  key: tf.Tensor          # int32 [h, w]: class * 256 + instance, stored image
  warped_key: tf.Tensor   # int32 [crop_h, crop_w]: the same after the warp
  labels: tf.Tensor       # int32 out_size: the dense mask, warped and padded (255 outside)
  out_size: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class LabelKind:
  name: str
  rasterise: Callable
  classes: Callable


def check_classes(cls, field: str, example_id):
  """A tf assertion that stored class ids are 0..20 (run before `present` is built)."""
  ok = tf.reduce_all((cls >= 0) & (cls < NUM_CLASSES))
  return tf.debugging.Assert(ok, [f"{field}.cls must be class ids 0..{NUM_CLASSES - 1}; example",
                                  example_id, "has", cls], summarize=20)


def _clip_coords(y, x, g: augment.Geometry):
  """Continuous coordinates clipped into [0, h] x [0, w]; also how many were outside."""
  hf, wf = tf.cast(g.height, tf.float32), tf.cast(g.width, tf.float32)
  outside = (y < 0) | (y > hf) | (x < 0) | (x > wf)
  return (tf.clip_by_value(y, 0.0, hf), tf.clip_by_value(x, 0.0, wf),
          tf.reduce_sum(tf.cast(outside, tf.int32)))


# ---------------------------------------------------------------------------------- points ---

def _group(group, keep=None):
  y, x, cls = group["y"], group["x"], tf.cast(group["cls"], tf.int32)
  if keep is None:
    return y, x, cls
  return tf.boolean_mask(y, keep), tf.boolean_mask(x, keep), tf.boolean_mask(cls, keep)


def _annotator_clicks(example, *, annotators=(MAIN_ANNOTATOR, MAIN_ANNOTATOR), first_only,
                      rank_weights=False):
  """(y, x, cls, weight) of the clicks of annotators lo..hi, rank 1 only when `first_only`."""
  clicks = example["clicks"]
  ann, rank = tf.cast(clicks["annotator"], tf.int32), tf.cast(clicks["rank"], tf.int32)
  keep = (ann >= annotators[0]) & (ann <= annotators[1])
  if first_only:
    keep &= rank == 1
  y, x, cls = _group(clicks, keep)
  weight = (rasterize.rank_weight(tf.boolean_mask(rank, keep)) if rank_weights
            else tf.ones_like(y))
  return y, x, cls, weight


def _random_clicks(example):
  y, x, cls = _group(example["random_clicks"])
  return y, x, cls, tf.ones_like(y)


def _with_background(example):
  y, x, cls, weight = _annotator_clicks(example, first_only=False)
  by, bx, bc = _group(example["background_clicks"])
  return (tf.concat([y, by], 0), tf.concat([x, bx], 0), tf.concat([cls, bc], 0),
          tf.concat([weight, tf.ones_like(by)], 0))


def _points(select: Callable, field: str) -> tuple[Callable, Callable]:
  """rasterise / classes of a click kind: clicks -> output pixels (centre rule + snap, augment.py)
  -> one labelled pixel each, heavier weight first (rasterize.py)."""
  def rasterise(example, spec, warp: Warp):
    del spec
    g = warp.geometry
    y, x, cls, weight = select(example)
    rows, cols, clipped = augment.clip_pixels(y, x, g)
    want = tf.gather_nd(warp.key, tf.stack([rows, cols], -1))
    out_r, out_c, inside = augment.warp_pixels(rows, cols, g)
    out_r, out_c, moved = augment.snap_clicks(out_r, out_c, want, warp.warped_key, g)
    landed = tf.gather_nd(warp.warped_key, tf.stack([tf.clip_by_value(out_r, 0, g.crop_h - 1),
                                                     tf.clip_by_value(out_c, 0, g.crop_w - 1)],
                                                    -1))
    off_object = inside & (landed != want)
    out_r, out_c = tf.boolean_mask(out_r, inside), tf.boolean_mask(out_c, inside)
    kept_cls, kept_w = tf.boolean_mask(cls, inside), tf.boolean_mask(weight, inside)
    labels, weights = rasterize.rasterize_points(out_r, out_c, kept_cls, kept_w, warp.out_size)
    counters = {
        "coords_clipped": tf.reduce_sum(tf.cast(clipped, tf.int32)),
        "clicks_cropped": tf.reduce_sum(tf.cast(~inside, tf.int32)),
        "clicks_snapped": tf.reduce_sum(tf.cast(moved & inside, tf.int32)),
        "clicks_off_object": tf.reduce_sum(tf.cast(off_object, tf.int32)),
        "points_merged": tf.size(out_r) - tf.reduce_sum(tf.cast(weights > 0, tf.int32)),
    }
    return labels, weights, counters, [check_classes(cls, field, example["id"])]

  def classes(example, mask):
    del mask
    return select(example)[2]

  return rasterise, classes


def _grown(select: Callable) -> tuple[Callable, Callable]:
  """Grown points (paper §5): each selected click becomes a disc of radius
  `spec.point_radius` stored-image pixels around the centre of the clicked pixel
  (rasterize.rasterize_discs, pulled back through the warp like squiggles), on top of which the
  click's own output pixel is labelled exactly as the point kind does (centre rule + snap). So
  radius 0 is the point kind itself, a radius < 1 adds nothing to an unwarped click (the nearest
  other pixel centre is 1 px away), and no warp can make a click vanish from its own disc.
  Weights are the clicks' (rank weights; 1 for 1Point). Overlaps: a clicked pixel keeps its
  click; elsewhere the nearest disc centre wins (ties: heavier, then earlier click)."""
  point_rasterise, classes = _points(select, "clicks")

  def rasterise(example, spec, warp: Warp):
    labels, weights, counters, checks = point_rasterise(example, spec, warp)
    g = warp.geometry
    y, x, cls, weight = select(example)
    rows, cols, _ = augment.clip_pixels(y, x, g)
    disc_labels, disc_weights = rasterize.rasterize_discs(
        tf.cast(rows, tf.float32) + 0.5, tf.cast(cols, tf.float32) + 0.5, cls, weight,
        spec.point_radius, augment.source_centres(g, warp.out_size))
    clicked = weights > 0
    return (tf.where(clicked, labels, disc_labels), tf.where(clicked, weights, disc_weights),
            counters, checks)

  return rasterise, classes


# ------------------------------------------------------------------- strokes, boxes, dense ---

def _squiggle(example, spec, warp: Warp):
  s, g = example["squiggles"], warp.geometry
  y, x, clipped = _clip_coords(s["y"], s["x"], g)
  cls = tf.cast(s["cls"], tf.int32)
  labels, weights = rasterize.rasterize_polylines(
      y, x, cls, s["stroke"], spec.squiggle_radius, augment.source_centres(g, warp.out_size))
  return labels, weights, {"coords_clipped": clipped}, [check_classes(cls, "squiggles",
                                                                      example["id"])]


def _box(example, spec, warp: Warp):
  del spec
  b, g = example["boxes"], warp.geometry
  ymin, xmin, c0 = _clip_coords(b["ymin"], b["xmin"], g)
  ymax, xmax, c1 = _clip_coords(b["ymax"], b["xmax"], g)
  cls = tf.cast(b["cls"], tf.int32)
  labels, weights = rasterize.rasterize_boxes(ymin, xmin, ymax, xmax, cls,
                                              augment.source_centres(g, warp.out_size))
  return labels, weights, {"coords_clipped": c0 + c1}, [check_classes(cls, "boxes",
                                                                      example["id"])]


def _full(example, spec, warp: Warp):
  del example, spec
  return warp.labels, tf.cast(warp.labels != IGNORE_INDEX, tf.float32), {}, []


def _none(example, spec, warp: Warp):
  del example, spec
  return (tf.fill(warp.out_size, tf.constant(IGNORE_INDEX, tf.int32)),
          tf.zeros(warp.out_size, tf.float32), {}, [])


def _stored(group):
  return lambda example, mask: tf.cast(example[group]["cls"], tf.int32)


def _one_point(example):
  return _annotator_clicks(example, first_only=True)


def _all_points(example):
  return _annotator_clicks(example, first_only=False)


def _all_points_weighted(example):
  return _annotator_clicks(example, first_only=False, rank_weights=True)


def _one_point_ranked(example):
  return _annotator_clicks(example, first_only=True, rank_weights=True)


def _three_annotators(example):
  return _annotator_clicks(example, annotators=(0, 2), first_only=True)


def _kind(name, rasterise_and_classes):
  return LabelKind(name, *rasterise_and_classes)


LABEL_KINDS: dict[str, LabelKind] = {k.name: k for k in (
    # Image labels only; with image_labels_from='clicks' the clicked classes are the labels.
    _kind("none", (_none, lambda example, mask: _all_points(example)[2])),
    _kind("one_point", _points(_one_point, "clicks")),
    _kind("all_points", _points(_all_points, "clicks")),
    _kind("all_points_weighted", _points(_all_points_weighted, "clicks")),
    _kind("three_annotators", _points(_three_annotators, "clicks")),
    _kind("random_points", _points(_random_clicks, "random_clicks")),
    _kind("background_points", _points(_with_background, "clicks / background_clicks")),
    _kind("grown_points", _grown(_one_point_ranked)),
    _kind("squiggle", (_squiggle, _stored("squiggles"))),
    _kind("box", (_box, _stored("boxes"))),
    _kind("full", (_full, lambda example, mask: tf.reshape(mask, [-1]))),
)}
assert tuple(LABEL_KINDS) == spec_lib.LABEL_KINDS, "label_kinds.py and spec.py list other kinds"
