"""Image -> scored, NMS-sampled windows -> heat map (`runObjectness` + `computeObjectnessHeatMap`).

MS samples the candidate windows (100k by default), the other cues of the model score them, naive
Bayes combines the cues, NMS keeps up to `num_windows`. Cues run on a copy of the image whose long
side is at most `max_side` px (MS already works at <= 64 px; SS scales its superpixel parameters
with image size; CC compares normalised histograms), and the windows are mapped back to the input
size, so cost no longer grows with the input resolution.
"""
import time

import numpy as np
from PIL import Image

from pointseg_jax.objectness import cues as cues_lib
from pointseg_jax.objectness import model as model_lib
from pointseg_jax.objectness import nms as nms_lib
from pointseg_jax.objectness import render

MAX_PIXELS = 1 << 26  # 67 M pixels: beyond this even the float sum map needs > 0.5 GB
DEFAULT_MAX_SIDE = 250  # AUC is flat from 200 px to full size on VOC photos (docs/objectness.md)
DEFAULT_DISTRIBUTION_WINDOWS = 100000


def as_rgb_uint8(image) -> np.ndarray:
  """Validate the input; grayscale [H,W] or [H,W,1] is replicated to RGB (MATLAB `gray2rgb`).

  Everything else that is not uint8 [H, W, 3] with H, W >= 2 raises with the fix in the message.
  """
  if not isinstance(image, np.ndarray):
    raise TypeError(f"objectness expects a numpy uint8 array [H, W, 3], got {type(image).__name__}")
  if image.dtype != np.uint8:
    raise TypeError(f"objectness expects dtype uint8 (0..255 RGB), got {image.dtype}; convert "
                    "floats in [0,1] with (img * 255).round().astype(np.uint8)")
  if image.ndim == 3 and image.shape[2] == 1:
    image = image[..., 0]
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=2)
  if image.ndim != 3 or image.shape[2] != 3:
    hint = " (RGBA: drop or composite the alpha channel, e.g. image[..., :3])" if (
        image.ndim == 3 and image.shape[2] == 4) else ""
    raise ValueError(f"objectness expects an RGB image [H, W, 3], got shape {image.shape}{hint}")
  height, width = image.shape[:2]
  if height < 2 or width < 2:
    raise ValueError(f"objectness needs an image of at least 2x2 pixels, got {height}x{width}")
  if height * width > MAX_PIXELS:
    raise ValueError(f"image of {height}x{width} pixels exceeds the {MAX_PIXELS} pixel limit of "
                     "objectness; downscale it first (the map is smooth, e.g. to 1000 px)")
  return image


def _rng(rng) -> np.random.Generator:
  if isinstance(rng, np.random.Generator):
    return rng
  if rng is None or isinstance(rng, (int, np.integer)):
    return np.random.default_rng(rng)
  raise TypeError(f"rng must be an int seed, a numpy Generator or None, got {type(rng).__name__}")


def resize_to_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
  """Bilinear downscale so the long side is <= max_side (None or 0: unchanged)."""
  height, width = image.shape[:2]
  if not max_side or max(height, width) <= max_side:
    return image
  f = max_side / max(height, width)
  size = (max(2, round(width * f)), max(2, round(height * f)))
  return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def scale_boxes(boxes: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
  """Inclusive pixel boxes of a `from_hw` image -> pixel edges -> scaled -> boxes of `to_hw`."""
  sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
  edges = np.stack([boxes[:, 0] * sx, boxes[:, 1] * sy,
                    (boxes[:, 2] + 1) * sx - 1, (boxes[:, 3] + 1) * sy - 1], axis=1)
  return cues_lib.to_pixel_windows(edges, *to_hw)


class _Timer:
  """Accumulates CPU seconds per stage into a dict (bench/input.py); CPU time, not
  wall time, so the shares stay meaningful on a busy machine."""

  def __init__(self, sink):
    self.sink = sink

  def __call__(self, name, start):
    if self.sink is not None:
      self.sink[name] = self.sink.get(name, 0.0) + time.process_time() - start
    return time.process_time()


def score_candidates(image: np.ndarray, model: model_lib.Model, rng: np.random.Generator,
                     distribution_windows: int, release_coords: bool = False, timings=None):
  """All MS-sampled candidate windows of `image` with every cue value and the naive-Bayes score.

  Returns (windows int [N, 4] 0-based inclusive, {cue: values [N]}, posterior [N], inverse [N])
  where windows[i] is distinct window number inverse[i] (cues are computed once per distinct
  window; sampling with replacement repeats many). The cue values are the inputs of the learned
  likelihoods (used by `learn.py` as well).
  """
  height, width = image.shape[:2]
  tick = _Timer(timings)
  t = time.process_time()
  boxes, ms = cues_lib.ms_windows(image, model.ms_scales, model.ms_theta, rng, distribution_windows,
                                  model.min_window, model.ms_filtersize, release_coords)
  windows = cues_lib.to_pixel_windows(boxes, height, width)
  t = tick("MS", t)
  values = {"MS": ms}
  if len(windows) == 0:
    return windows, values, np.zeros(0), np.zeros(0, np.int64)
  _, first, inverse = np.unique(nms_lib.window_keys(windows), return_index=True,
                                return_inverse=True)
  inverse = inverse.reshape(-1)
  uniq = windows[first]
  for cue in model.cues:
    if cue == "CC":
      values["CC"] = cues_lib.cc_scores(image, uniq, model.cc_theta, model.cc_quant)[inverse]
    elif cue == "ED":
      values["ED"] = cues_lib.ed_scores(image, uniq, model.ed_theta)[inverse]
    elif cue == "SS":
      labels = cues_lib.superpixels(image, model.ss_theta, model.ss_basis_sigma,
                                    model.ss_basis_min_area)
      values["SS"] = cues_lib.ss_scores(labels, uniq)[inverse]
    elif cue != "MS":
      raise ValueError(f"unknown objectness cue {cue!r}; known: {model_lib.CUES}")
    t = tick(cue, t)
  post = model.posterior(values)
  tick("bayes", t)
  return windows, values, post, inverse


def best_per_window(windows: np.ndarray, scores: np.ndarray, inverse: np.ndarray):
  """Distinct windows, each with its best score, in order of first occurrence.

  The same pixel window can come from several scales/channels with different MS scores; NMS keeps
  the best copy and suppresses the others (IoU 1 > 0.5), so this changes nothing but the work.
  """
  n = int(inverse.max()) + 1 if len(inverse) else 0
  best = np.full(n, -np.inf)
  np.maximum.at(best, inverse, scores)
  first = np.full(n, len(inverse), np.int64)
  np.minimum.at(first, inverse, np.arange(len(inverse)))
  order = np.argsort(first, kind="stable")
  return windows[first[order]], best[order]


def objectness_boxes(image, rng=0, num_windows: int = 1000, model: model_lib.Model | None = None,
                     max_side: int | None = DEFAULT_MAX_SIDE,
                     distribution_windows: int | None = None, release_coords: bool = False,
                     timings: dict | None = None):
  """The `num_windows` NMS-sampled windows of an image and their objectness P(object | cues).

  Returns (boxes int64 [K, 4] = (x1, y1, x2, y2) 0-based inclusive in input pixels, scores [K]),
  best first, K <= num_windows (fewer when fewer candidates survive NMS, 0 on a flat image).
  """
  image = as_rgb_uint8(image)
  model = model_lib.default_model() if model is None else model
  gen = _rng(rng)
  height, width = image.shape[:2]
  work = resize_to_max_side(image, max_side)
  wh, ww = work.shape[:2]
  n_dist = model.distribution_windows if distribution_windows is None else distribution_windows
  windows, _, post, inverse = score_candidates(work, model, gen, n_dist, release_coords, timings)
  t = time.process_time()
  windows, post = best_per_window(windows, post, inverse)
  keep = nms_lib.nms(windows, post, model.nms_iou, num_windows, unique=True)
  _Timer(timings)("NMS", t)
  boxes, scores = windows[keep], post[keep]
  if (wh, ww) != (height, width):
    boxes = scale_boxes(boxes, (wh, ww), (height, width))
  return boxes.astype(np.int64), scores


def smoothing_superpixels(image: np.ndarray, model: model_lib.Model,
                          max_side: int | None) -> np.ndarray:
  """Superpixels of scale `model.smooth_k` at the cues' working size, upsampled (nearest) to the
  input size: int [H, W]."""
  height, width = image.shape[:2]
  work = resize_to_max_side(image, max_side)
  labels = cues_lib.superpixels(work, model.smooth_k, model.ss_basis_sigma, model.ss_basis_min_area)
  if labels.shape != (height, width):
    rows = np.arange(height) * labels.shape[0] // height
    cols = np.arange(width) * labels.shape[1] // width
    labels = labels[rows[:, None], cols[None, :]]
  return labels


def heatmap(image, rng=0, num_windows: int = 1000, model: model_lib.Model | None = None,
            max_side: int | None = DEFAULT_MAX_SIDE, distribution_windows: int | None = None,
            timings: dict | None = None) -> np.ndarray:
  """Per-pixel objectness heat map, uint8 [H, W]; at training time P(object) = (o + 1) / 257.

  The NMS-kept windows' scores are summed per pixel (`computeObjectnessHeatMap.m`); a model with
  `smooth_k` averages that sum within superpixels, and one with a `calibration` maps the uint8
  levels to calibrated ones (model.py).

  image: uint8 RGB [H, W, 3] (grayscale [H, W] is replicated); rng: int seed, numpy Generator or
  None (fresh entropy) — the same seed gives the same map. Flat images give an all-zero map.
  """
  image = as_rgb_uint8(image)
  boxes, scores = objectness_boxes(image, rng, num_windows, model, max_side,
                                   distribution_windows, timings=timings)
  model = model_lib.default_model() if model is None else model
  t = time.process_time()
  summed = render.score_sum(boxes, scores, *image.shape[:2])
  if model.smooth_k:
    summed = render.superpixel_average(summed, smoothing_superpixels(image, model, max_side))
  out = render.calibrate(render.to_uint8(summed), model.calibration)
  _Timer(timings)("heatmap", t)
  return out
