"""Windows -> per-pixel heat map: `computeObjectnessHeatMap.m`, as the WTP authors used it.

Every window adds its score to every pixel it covers (a **sum**, although the release README says
"average"), the sum is min-max normalised per image (`mat2gray`) and quantised to 256 levels. A 2-D
difference array makes it O(H·W + N) instead of O(Σ window areas).
"""
import numpy as np


def score_sum(boxes: np.ndarray, scores: np.ndarray, height: int, width: int) -> np.ndarray:
  """Σ of the scores of the windows covering each pixel; boxes [N, 4] int, 0-based inclusive."""
  boxes = np.asarray(boxes, np.int64).reshape(-1, 4)
  scores = np.asarray(scores, np.float64).reshape(-1)
  if len(boxes) != len(scores):
    raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
  x1 = np.clip(boxes[:, 0], 0, width - 1)
  y1 = np.clip(boxes[:, 1], 0, height - 1)
  x2 = np.clip(boxes[:, 2], 0, width - 1)
  y2 = np.clip(boxes[:, 3], 0, height - 1)
  ok = (x2 >= x1) & (y2 >= y1)
  x1, y1, x2, y2, s = x1[ok], y1[ok], x2[ok], y2[ok], scores[ok]
  diff = np.zeros((height + 1) * (width + 1), np.float64)
  stride = width + 1
  np.add.at(diff, y1 * stride + x1, s)
  np.add.at(diff, y1 * stride + x2 + 1, -s)
  np.add.at(diff, (y2 + 1) * stride + x1, -s)
  np.add.at(diff, (y2 + 1) * stride + x2 + 1, s)
  diff = diff.reshape(height + 1, width + 1)
  return np.cumsum(np.cumsum(diff, axis=0), axis=1)[:height, :width]


def to_uint8(values: np.ndarray) -> np.ndarray:
  """Min-max normalise to [0, 255] and round (`gray2ind(mat2gray(map), 256)`); constant -> zeros."""
  lo, hi = float(values.min()), float(values.max())
  if not hi - lo > 1e-12 * max(abs(hi), 1.0):
    return np.zeros(values.shape, np.uint8)
  return np.round((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def boxes_to_heatmap(boxes: np.ndarray, scores: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 [H, W] heat map from scored windows (0-based inclusive pixel boxes)."""
  return to_uint8(score_sum(boxes, scores, height, width))


def superpixel_average(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Each pixel gets the mean of `values` over its superpixel (labels int [H, W], 0..n-1).

  Windows are boxes, objects are not: averaging the summed window map within superpixels moves
  its edges onto the image's edges (docs/objectness.md §5b, measured on training scenes).
  """
  n = int(labels.max()) + 1
  sums = np.bincount(labels.ravel(), values.ravel(), n)
  counts = np.bincount(labels.ravel(), None, n)
  return (sums / np.maximum(counts, 1))[labels]


def calibrate(o: np.ndarray, table) -> np.ndarray:
  """uint8 map o -> table[o] (256 uint8 levels); an empty table leaves the map as it is."""
  if len(table) == 0:
    return o
  return np.asarray(table, np.uint8)[o]
