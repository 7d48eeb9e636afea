"""Geometry of one training example: random scale, crop and horizontal flip, in TF ops (tf.data).

One `Geometry` describes the whole warp, and every part of the example goes through it together:
the image and objectness map (bilinear), the class / instance masks (nearest neighbour on an explicit
integer sampling grid), click pixels, and (through `source_centres`) squiggles and boxes. Clicks are stored as exact float
coordinates and rasterised only after this warp (docs/batch_dict.md), so no click is lost to
resampling.

Conventions (continuous pixel coordinates, pixel i covers [i, i+1), x = column):
- scaling an axis from n_in to n_out pixels maps a coordinate c to c * n_out / n_in (the mapping
  `tf.image.resize` uses with half-pixel centres);
- nearest neighbour output pixel j samples input pixel `source_index(j) = floor((j + 1/2) n_in / n_out)`;
- a click in input pixel i lands on output pixel `target_index(i) = floor((i + 1/2) n_out / n_in)`,
  the output pixel nearest to the centre of pixel i. For n_out >= n_in, source_index(target_index(i))
  == i exactly (integer arithmetic), so the mask under a click keeps its value. When shrinking, the
  pixel under the click may not be sampled at all; `snap_clicks` then moves the click by at most one
  output pixel to a pixel sampled from the same (class, instance) as the clicked pixel.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from pointseg_jax.data import rasterize

# Neighbours tried by `snap_clicks`, nearest first (the click's own pixel, then 4-, then 8-neighbours).
_SNAP_OFFSETS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Scale to (scaled_h, scaled_w), crop [offset, offset + crop) of that, then maybe flip columns.

  All fields are int32 / bool scalar tensors. The crop is at most the output size, so after the crop
  the example is padded (bottom / right) to the static output size.
  """
  height: tf.Tensor
  width: tf.Tensor
  scaled_h: tf.Tensor
  scaled_w: tf.Tensor
  offset_y: tf.Tensor
  offset_x: tf.Tensor
  crop_h: tf.Tensor
  crop_w: tf.Tensor
  flip: tf.Tensor

  @property
  def resized(self) -> tf.Tensor:
    """True when the scaled size differs from the stored size (the example was resampled)."""
    return tf.logical_or(self.scaled_h != self.height, self.scaled_w != self.width)


def sample_geometry(seed: tf.Tensor, height, width, out_size: tuple[int, int], *, augment: bool,
                    scale_range: tuple[float, float] = (1.0, 1.0)) -> Geometry:
  """The warp of one example; with `augment` a pure function of the stateless `seed` (int64 [2]).

  augment=False: no randomness; an image larger than `out_size` is shrunk (aspect kept) to fit, a
  smaller one is kept as is (it is padded later). augment=True: scale s ~ U(scale_range), a uniform
  random crop of min(scaled, out_size) per axis, and a horizontal flip with probability 1/2.
  """
  height = tf.cast(height, tf.int32)
  width = tf.cast(width, tf.int32)
  out_h, out_w = out_size
  hf, wf = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
  if augment:
    s_scale, s_crop_y, s_crop_x, s_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    lo, hi = scale_range
    scale = tf.random.stateless_uniform([], s_scale, lo, hi, dtype=tf.float64)
  else:
    scale = tf.minimum(tf.constant(1.0, tf.float64), tf.minimum(out_h / hf, out_w / wf))
  scaled_h = tf.maximum(1, tf.cast(tf.round(hf * scale), tf.int32))
  scaled_w = tf.maximum(1, tf.cast(tf.round(wf * scale), tf.int32))
  if not augment:
    scaled_h, scaled_w = tf.minimum(scaled_h, out_h), tf.minimum(scaled_w, out_w)
  crop_h, crop_w = tf.minimum(scaled_h, out_h), tf.minimum(scaled_w, out_w)
  if augment:
    offset_y = tf.random.stateless_uniform([], s_crop_y, 0, scaled_h - crop_h + 1, dtype=tf.int32)
    offset_x = tf.random.stateless_uniform([], s_crop_x, 0, scaled_w - crop_w + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([], s_flip, 0, 2, dtype=tf.int32) == 1
  else:
    offset_y = offset_x = tf.constant(0, tf.int32)
    flip = tf.constant(False)
  return Geometry(height, width, scaled_h, scaled_w, offset_y, offset_x, crop_h, crop_w, flip)


def source_index(j, n_in, n_out):
  """Input pixel sampled by nearest-neighbour output pixel j: floor((j + 1/2) n_in / n_out)."""
  return tf.minimum(((2 * j + 1) * n_in) // (2 * n_out), n_in - 1)


def target_index(i, n_in, n_out):
  """Output pixel nearest to the centre of input pixel i: floor((i + 1/2) n_out / n_in)."""
  return tf.minimum(((2 * i + 1) * n_out) // (2 * n_in), n_out - 1)


def _grid(g: Geometry):
  """Input rows / columns sampled by the cropped (and flipped) output grid, nearest neighbour."""
  rows = source_index(g.offset_y + tf.range(g.crop_h), g.height, g.scaled_h)
  cols = source_index(g.offset_x + tf.range(g.crop_w), g.width, g.scaled_w)
  cols = tf.cond(g.flip, lambda: tf.reverse(cols, [0]), lambda: cols)
  return rows, cols


def warp_labels(labels: tf.Tensor, g: Geometry) -> tf.Tensor:
  """Nearest-neighbour warp of an integer map [h, w] (class ids, instance ids) -> [crop_h, crop_w]."""
  rows, cols = _grid(g)
  return tf.gather(tf.gather(labels, rows, axis=0), cols, axis=1)


def warp_image(image: tf.Tensor, g: Geometry) -> tf.Tensor:
  """Bilinear warp of a float map [h, w, c] -> [crop_h, crop_w, c] (antialiased when shrinking)."""
  image = tf.cond(
      g.resized,
      lambda: tf.image.resize(image, tf.stack([g.scaled_h, g.scaled_w]), antialias=True),
      lambda: image)
  image = image[g.offset_y:g.offset_y + g.crop_h, g.offset_x:g.offset_x + g.crop_w]
  return tf.cond(g.flip, lambda: tf.reverse(image, [1]), lambda: image)


def clip_pixels(y: tf.Tensor, x: tf.Tensor, g: Geometry):
  """Pixel (row, col) of each float click in the stored image, clipped into it.

  Returns (rows, cols, clipped) with clipped[k] True where the stored coordinate lay outside the
  image (the released clicks have some, docs/clicks.md): those are moved to the nearest pixel.
  A NaN or infinite coordinate (a corrupt record: the click readers reject them) stops the input
  pipeline with an InvalidArgumentError saying so, instead of landing on an arbitrary pixel.
  """
  rows = tf.cast(tf.floor(rasterize.finite_coordinates(y, "y")), tf.int32)
  cols = tf.cast(tf.floor(rasterize.finite_coordinates(x, "x")), tf.int32)
  clipped = (rows < 0) | (rows >= g.height) | (cols < 0) | (cols >= g.width)
  rows = tf.clip_by_value(rows, 0, g.height - 1)
  cols = tf.clip_by_value(cols, 0, g.width - 1)
  return rows, cols, clipped


def warp_pixels(rows: tf.Tensor, cols: tf.Tensor, g: Geometry):
  """Stored pixels -> output pixels (centre rule above) and whether each falls inside the crop."""
  out_r = target_index(rows, g.height, g.scaled_h) - g.offset_y
  out_c = target_index(cols, g.width, g.scaled_w) - g.offset_x
  out_c = tf.where(g.flip, g.crop_w - 1 - out_c, out_c)
  inside = (out_r >= 0) & (out_r < g.crop_h) & (out_c >= 0) & (out_c < g.crop_w)
  return out_r, out_c, inside


def snap_clicks(out_r: tf.Tensor, out_c: tf.Tensor, want: tf.Tensor, warped: tf.Tensor,
                g: Geometry):
  """Move each click to the nearest of its 3x3 output neighbours whose warped value equals `want`.

  `want` [K] is the (class, instance) key under the click in the stored image, `warped` [crop_h,
  crop_w] the warped key map. The click's own pixel comes first, so nothing moves unless shrinking
  skipped the clicked pixel; a click with no matching neighbour stays put. Returns (rows, cols,
  moved). Erroneous clicks (on background or another object) keep what was under them.
  """
  offsets = tf.constant(_SNAP_OFFSETS, tf.int32)  # [9, 2]
  cand_r = out_r[:, None] + offsets[None, :, 0]
  cand_c = out_c[:, None] + offsets[None, :, 1]
  in_crop = (cand_r >= 0) & (cand_r < g.crop_h) & (cand_c >= 0) & (cand_c < g.crop_w)
  values = tf.gather_nd(warped, tf.stack([tf.clip_by_value(cand_r, 0, g.crop_h - 1),
                                          tf.clip_by_value(cand_c, 0, g.crop_w - 1)], -1))
  match = in_crop & (values == want[:, None])
  # First matching candidate; 0 (the click's own pixel) when nothing matches.
  first = tf.argmax(tf.cast(match, tf.int32), axis=1, output_type=tf.int32)
  rows = tf.gather(cand_r, first, batch_dims=1)
  cols = tf.gather(cand_c, first, batch_dims=1)
  return rows, cols, first > 0


def source_centres(g: Geometry, out_size: tuple[int, int]):
  """Stored-image coordinates of the centres of the output pixels: rows [H], columns [W].

  Squiggles and boxes are rasterised by testing these (rasterize.py): pulling pixel centres back
  through the warp, instead of pushing shapes forward, agrees exactly with `warp_labels` (pixel j
  samples the stored pixel containing its centre). Padding rows / columns get -1e6 (far from all).
  """
  out_h, out_w = out_size
  far = tf.constant(-1e6, tf.float64)

  def centres(index, offset, crop, n_in, n_scaled):
    c = (tf.cast(offset + index, tf.float64) + 0.5) * tf.cast(n_in, tf.float64)
    return tf.where(index < crop, c / tf.cast(n_scaled, tf.float64), far)

  j = tf.range(out_h)
  i = tf.range(out_w)
  cols = tf.where(g.flip, g.crop_w - 1 - i, i)  # crop column shown at output column i
  cy = centres(j, g.offset_y, g.crop_h, g.height, g.scaled_h)
  cx = tf.where(i < g.crop_w, centres(cols, g.offset_x, g.crop_w, g.width, g.scaled_w), far)
  return tf.cast(cy, tf.float32), tf.cast(cx, tf.float32)


def pad_to(x: tf.Tensor, out_size: tuple[int, int], value) -> tf.Tensor:
  """Pad a [h, w, ...] crop at the bottom / right to the static `out_size` with `value`."""
  out_h, out_w = out_size
  shape = tf.shape(x)
  paddings = [[0, out_h - shape[0]], [0, out_w - shape[1]]] + [[0, 0]] * (len(x.shape) - 2)
  padded = tf.pad(x, paddings, constant_values=tf.cast(value, x.dtype))
  return tf.ensure_shape(padded, [out_h, out_w] + list(x.shape[2:]))
