"""Rasterise supervision into `sparse_labels` / `sparse_weights` maps, in TF ops (tf.data).

The authors wrote clicks into a label PNG, one labelled pixel per click, 255 elsewhere, and rank
weights into a separate channel (docs/losses.md, "The authors' loss layer"). We do the same on
the static output grid, after augmentation. All functions return (labels int32 [H, W], 255 where
unlabelled; weights float32 [H, W], 0 where unlabelled) and are deterministic: duplicates are resolved
by an explicit rule, never by the unspecified order of a scatter with repeated indices.
"""
from __future__ import annotations

import tensorflow as tf

from pointseg_jax import IGNORE_INDEX


def finite_coordinates(values: tf.Tensor, name: str) -> tf.Tensor:
  """`values`, checked finite: a NaN would cast to an arbitrary int32 pixel (INT_MIN on x86)."""
  return tf.debugging.check_numerics(
      tf.cast(values, tf.float32),
      f"click/stroke/box coordinate {name} is NaN or infinite: the dataset record is corrupt; "
      "rebuild the dataset from checked click files (pointseg_jax.data.click_json)")


def rank_weight(rank: tf.Tensor) -> tf.Tensor:
  """alpha = 2^-(r-1): the first instance of a class 1, the second 1/2, ... (paper §4.3)."""
  return tf.pow(tf.constant(0.5, tf.float32), tf.cast(rank, tf.float32) - 1.0)


def rasterize_points(rows: tf.Tensor, cols: tf.Tensor, cls: tf.Tensor, weight: tf.Tensor,
                     out_size: tuple[int, int]):
  """One labelled pixel per point at (rows[k], cols[k]) (already inside the grid).

  Two points on one pixel: the larger weight wins (a rank-1 click beats a rank-3 one); equal weights
  -> the earlier point in the given order wins. The winner sets both class and weight.
  """
  height, width = out_size
  rows = tf.cast(rows, tf.int32)
  cols = tf.cast(cols, tf.int32)
  n = tf.size(rows)
  order = tf.argsort(-tf.cast(weight, tf.float32), stable=True)  # best first, ties in given order
  lin = tf.gather(rows * width + cols, order)
  pixels, slot = tf.unique(lin)
  # First position (in best-first order) of every distinct pixel = the winner on that pixel.
  first = tf.math.unsorted_segment_min(tf.range(n), slot, tf.size(pixels))
  winner = tf.gather(order, first)
  index = pixels[:, None]
  labels = tf.tensor_scatter_nd_update(
      tf.fill([height * width], tf.constant(IGNORE_INDEX, tf.int32)), index,
      tf.gather(tf.cast(cls, tf.int32), winner))
  weights = tf.tensor_scatter_nd_update(
      tf.zeros([height * width], tf.float32), index, tf.gather(tf.cast(weight, tf.float32), winner))
  return tf.reshape(labels, [height, width]), tf.reshape(weights, [height, width])


def pixel_centres(out_size: tuple[int, int]):
  """Centres (r + 1/2, c + 1/2) of a grid's rows [H] and columns [W]: an un-warped example."""
  height, width = out_size
  return (tf.range(height, dtype=tf.float32) + 0.5, tf.range(width, dtype=tf.float32) + 0.5)


def rasterize_polylines(y: tf.Tensor, x: tf.Tensor, cls: tf.Tensor, stroke: tf.Tensor,
                        radius: float, centres: tuple[tf.Tensor, tf.Tensor]):
  """Squiggles: every pixel whose centre lies within `radius` of a stroke gets the stroke's class.

  Consecutive points (in stored order) with the same `stroke` id are joined by segments; a stroke of
  one point is a disc. Where strokes of different classes overlap, the nearest segment wins (ties ->
  the earlier segment). Weight 1. `centres` = (row centres [H], column centres [W]) of the output
  pixels in the strokes' coordinates (`augment.source_centres` after a warp, `pixel_centres`
  without), so `radius` is in stored-image pixels, as the authors' unpublished radius-2/5/25 runs
  drew their discs on the full-resolution image (docs/losses.md, "The authors' loss layer").
  """
  y = finite_coordinates(y, "y")
  x = finite_coordinates(x, "x")
  n = tf.size(y)
  nxt = tf.minimum(tf.range(n) + 1, n - 1)
  joined = (tf.range(n) + 1 < n) & (tf.gather(stroke, nxt) == stroke)
  by, bx = tf.where(joined, tf.gather(y, nxt), y), tf.where(joined, tf.gather(x, nxt), x)
  py, px = centres[0][:, None], centres[1][None, :]
  height, width = tf.size(centres[0]), tf.size(centres[1])

  def nearest(k, best_d2, best_cls):
    ay, ax, dy, dx = y[k], x[k], by[k] - y[k], bx[k] - x[k]
    t = ((py - ay) * dy + (px - ax) * dx) / tf.maximum(dy * dy + dx * dx, 1e-12)
    t = tf.clip_by_value(t, 0.0, 1.0)
    d2 = tf.square(py - ay - t * dy) + tf.square(px - ax - t * dx)
    closer = d2 < best_d2
    return k + 1, tf.where(closer, d2, best_d2), tf.where(closer, tf.cast(cls[k], tf.int32), best_cls)

  init = (tf.constant(0), tf.fill([height, width], float("inf")),
          tf.fill([height, width], tf.constant(IGNORE_INDEX, tf.int32)))
  _, best_d2, best_cls = tf.while_loop(lambda k, *_: k < n, nearest, init)
  hit = best_d2 <= float(radius) ** 2
  return (tf.where(hit, best_cls, IGNORE_INDEX),
          tf.cast(hit, tf.float32))


def rasterize_boxes(ymin: tf.Tensor, xmin: tf.Tensor, ymax: tf.Tensor, xmax: tf.Tensor,
                    cls: tf.Tensor, centres: tuple[tf.Tensor, tf.Tensor]):
  """Box supervision as the paper does it (§4.3, after [24]): dense labels, weight 1 everywhere.

  A pixel whose centre lies inside boxes takes the class of the *smallest* covering box (equal areas
  -> the earlier box); pixels outside every box are background (0). Boxes are continuous extents:
  a box tightly around pixel rows r0..r1 is [r0, r1 + 1) (clicks.boxes). `centres` as in
  `rasterize_polylines`: testing the output pixels' centres mapped back into the stored image makes
  a warped tight box cover exactly the pixels the nearest-neighbour warp gives its object.
  """
  ymin, xmin, ymax, xmax = (finite_coordinates(v, name) for v, name in
                            ((ymin, "ymin"), (xmin, "xmin"), (ymax, "ymax"), (xmax, "xmax")))
  py, px = centres
  height, width = tf.size(py), tf.size(px)
  in_rows = (py[None, :] >= ymin[:, None]) & (py[None, :] < ymax[:, None])  # [K, H]
  in_cols = (px[None, :] >= xmin[:, None]) & (px[None, :] < xmax[:, None])  # [K, W]
  inside = in_rows[:, :, None] & in_cols[:, None, :]  # [K, H, W]
  area = (ymax - ymin) * (xmax - xmin)
  masked = tf.where(inside, area[:, None, None], float("inf"))
  labels = tf.zeros([height, width], tf.int32)
  if_any = tf.reduce_any(inside, axis=0)
  smallest = tf.argmin(tf.concat([masked, tf.fill([1, height, width], float("inf"))], 0), axis=0,
                       output_type=tf.int32)
  box_cls = tf.gather(tf.concat([tf.cast(cls, tf.int32), [0]], 0), smallest)
  labels = tf.where(if_any, box_cls, labels)
  return labels, tf.ones([height, width], tf.float32)


def rasterize_discs(cy: tf.Tensor, cx: tf.Tensor, cls: tf.Tensor, weight: tf.Tensor,
                    radius: float, centres: tuple[tf.Tensor, tf.Tensor]):
  """Grown points (paper §5): every pixel whose centre lies within `radius` of a disc centre.

  (cy[k], cx[k]) are the discs' centres in stored-image coordinates (the centre of the clicked
  pixel), `centres` the output pixels' centres in the same coordinates (as in
  `rasterize_polylines`), so `radius` is measured in stored-image pixels whatever the warp. Where
  discs overlap, the nearest centre wins; equal distances -> the larger weight, then the earlier
  disc. The winner sets class and weight. A pixel exactly `radius` away is inside.
  """
  cy = finite_coordinates(cy, "y")
  cx = finite_coordinates(cx, "x")
  weight = tf.cast(weight, tf.float32)
  order = tf.argsort(-weight, stable=True)  # best first, ties in given order
  cy, cx, weight = tf.gather(cy, order), tf.gather(cx, order), tf.gather(weight, order)
  cls = tf.gather(tf.cast(cls, tf.int32), order)
  py, px = centres[0][:, None], centres[1][None, :]
  height, width = tf.size(centres[0]), tf.size(centres[1])

  def nearest(k, best_d2, best_k):
    d2 = tf.square(py - cy[k]) + tf.square(px - cx[k])
    closer = d2 < best_d2  # strict: on a tie the earlier (heavier) disc keeps the pixel
    return k + 1, tf.where(closer, d2, best_d2), tf.where(closer, k, best_k)

  n = tf.size(cy)
  init = (tf.constant(0), tf.fill([height, width], float("inf")), tf.fill([height, width], n))
  _, best_d2, best_k = tf.while_loop(lambda k, *_: k < n, nearest, init)
  hit = best_d2 <= float(radius) ** 2
  # Slot n is "no disc" (also what every pixel gets when there are no points).
  cls = tf.concat([cls, [IGNORE_INDEX]], 0)
  weight = tf.concat([weight, [0.0]], 0)
  return (tf.where(hit, tf.gather(cls, best_k), IGNORE_INDEX),
          tf.where(hit, tf.gather(weight, best_k), 0.0))
