"""The four window cues of Alexe et al. (TPAMI 2012), vectorised over windows with integral images.

Windows are int arrays [N, 4] = (x1, y1, x2, y2): 0-based, inclusive pixel indices. Every formula
follows objectness v2.2 (`computeScores.m` and its MEX files), translated from 1-based MATLAB
indices; the learned likelihoods of that release therefore apply to these cue values.

- MS: multi-scale spectral-residual saliency; scores every window of a 16..64-cell grid and samples
  windows proportionally to the score (the candidate windows of the whole method).
- CC: chi-square distance between the LAB colour histograms of a window and of its surround ring.
- ED: density of Canny edges in the window's inner border ring (not in the default model).
- SS: superpixel straddling, 1 - sum_s min(|s ∩ w|, |s \\ w|) / |w| over Felzenszwalb superpixels.
"""
import functools
from typing import NamedTuple

import numpy as np
from skimage import feature, segmentation

from pointseg_jax.objectness import saliency


def round_half_up(x):
  """C/MATLAB `round` for the non-negative coordinates used here (numpy rounds half to even)."""
  return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def integral_image(values: np.ndarray) -> np.ndarray:
  """Zero-padded 2-D cumulative sum: ii[y, x] = values[:y, :x].sum() (also for [H, W, C])."""
  ii = np.zeros((values.shape[0] + 1, values.shape[1] + 1) + values.shape[2:], dtype=np.float64)
  np.cumsum(np.cumsum(values, axis=0, dtype=np.float64), axis=1, out=ii[1:, 1:])
  return ii


def box_sums(ii: np.ndarray, x1, y1, x2, y2) -> np.ndarray:
  """Sums over inclusive boxes from an integral image (trailing channel axes are kept)."""
  return ii[y2 + 1, x2 + 1] - ii[y1, x2 + 1] - ii[y2 + 1, x1] + ii[y1, x1]


# ----------------------------------------------------------------------------------------- MS --

@functools.lru_cache(maxsize=64)
def _interval_pairs(size: int, min_len: int):
  """All inclusive cell intervals [lo, hi] of a `size` grid with length >= min_len."""
  lo, hi = np.triu_indices(size)
  keep = hi - lo + 1 >= min_len
  return lo[keep], hi[keep]


class SamplingTree(NamedTuple):
  """Partial sums of a [R, C] grid for `sample_proportional`, per column: rows are cut into chunks
  (chunk c = rows chunk_starts[c] .. chunk_starts[c+1]-1) and consecutive chunks into groups
  (group g = chunks group_first[g] .. group_first[g+1]-1)."""
  chunk_starts: np.ndarray  # [Gc] int
  chunk_sums: np.ndarray    # [Gc, C] float64
  group_first: np.ndarray   # [Ga] int
  group_sums: np.ndarray    # [Ga, C] float64

  @classmethod
  def build(cls, grid: np.ndarray, chunk: int = 8, chunks_per_group: int = 8) -> "SamplingTree":
    chunk_starts = np.arange(0, grid.shape[0], chunk)
    chunk_sums = np.add.reduceat(grid, chunk_starts, axis=0, dtype=np.float64)
    group_first = np.arange(0, len(chunk_starts), chunks_per_group)
    return cls(chunk_starts, chunk_sums, group_first,
               np.add.reduceat(chunk_sums, group_first, axis=0))


def ms_window_scores(sal: np.ndarray, threshold: float, min_w: int, min_h: int, chunk: int = 8):
  """Score of every window of an s×s saliency map: (sum of salient values)·(salient count)/area.

  Salient = saliency >= threshold (θ_MS of that scale); the MEX `slidingWindowComputeScore`.
  Laid out x-interval major: scores[i, j] is x-interval i = [xlo, xhi], y-interval j = [ylo, yhi].
  Rows of the integral images are differenced once per y-interval (and divided by the height);
  then all x-intervals with the same left cell `a` are one contiguous block of rows, computed in
  cache as (Δ sal / h)·(Δ count / w) and summed per column for the sampler (that block is a
  group, cut into chunks of `chunk` rows).
  Returns (scores [Px, Py] float32, (xlo, xhi), (ylo, yhi), SamplingTree).
  """
  size = sal.shape[0]
  ylo, yhi = _interval_pairs(size, min_h)
  xlo, xhi = _interval_pairs(size, min_w)
  thr = sal >= threshold
  ii_sal = integral_image(sal * thr)
  ii_thr = integral_image(thr.astype(np.float64))
  inv_h = 1.0 / (yhi - ylo + 1)
  # [x edge, y-interval]: sums over each y-interval, per x edge 0..size.
  cols_sal = np.ascontiguousarray(((ii_sal[yhi + 1] - ii_sal[ylo]) * inv_h[:, None]).T,
                                  dtype=np.float32)
  cols_thr = np.ascontiguousarray((ii_thr[yhi + 1] - ii_thr[ylo]).T, dtype=np.float32)
  starts = np.searchsorted(xlo, np.arange(size - min_w + 1))
  lengths = size - (np.arange(len(starts)) + min_w - 1)  # right cells a+min_w-1 .. size-1
  n_chunks = -(-lengths // chunk)
  group_first = np.concatenate([[0], np.cumsum(n_chunks)[:-1]])
  chunk_starts = np.concatenate([st + np.arange(0, n, chunk) for st, n in zip(starts, lengths)])
  scores = np.empty((len(xlo), len(ylo)), np.float32)
  chunk_sums = np.empty((len(chunk_starts), len(ylo)), np.float64)
  group_sums = np.empty((len(starts), len(ylo)), np.float64)
  inv_w = (1.0 / np.arange(1, size + 1)).astype(np.float32)[:, None]
  buf = np.empty((size, len(ylo)), np.float32)
  for a, (st, n) in enumerate(zip(starts, lengths)):
    out = scores[st:st + n]
    cnt = buf[:n]
    np.subtract(cols_thr[a + min_w:], cols_thr[a], out=cnt)
    cnt *= inv_w[min_w - 1:size - a]
    np.subtract(cols_sal[a + min_w:], cols_sal[a], out=out)
    out *= cnt
    part = chunk_sums[group_first[a]:group_first[a] + n_chunks[a]]
    full = n // chunk
    if full:
      np.sum(out[:full * chunk].reshape(full, chunk, -1), axis=1, dtype=np.float64,
             out=part[:full])
    if n > full * chunk:
      np.sum(out[full * chunk:], axis=0, dtype=np.float64, out=part[full])
    np.sum(part, axis=0, out=group_sums[a])
  return scores, (xlo, xhi), (ylo, yhi), SamplingTree(chunk_starts, chunk_sums, group_first,
                                                      group_sums)


def _descend(table: np.ndarray, first: np.ndarray, length: np.ndarray, col: np.ndarray,
             within: np.ndarray):
  """Per draw: the first k < length whose running sum of table[first + k, col] exceeds `within`,
  and what is left of `within` after the entries before k. Zero entries are never chosen."""
  width = int(length.max())
  off = np.arange(width)[None, :]
  rows = first[:, None] + np.minimum(off, length[:, None] - 1)
  seg = np.take(table.reshape(-1), rows * table.shape[1] + col[:, None]).astype(np.float64)
  seg[off >= length[:, None]] = 0.0
  run = np.cumsum(seg, axis=1)
  k = (run <= within[:, None]).sum(axis=1)
  # Rounding can leave `within` at the total: fall back to the last positive entry.
  k = np.minimum(k, width - 1 - np.argmax(seg[:, ::-1] > 0, axis=1))
  idx = np.arange(len(k))
  return k, within - (run[idx, k] - seg[idx, k])


def sample_proportional(scores: np.ndarray, num: int, rng: np.random.Generator,
                        tree: SamplingTree | None = None) -> np.ndarray:
  """`num` flat indices drawn with replacement with probability ∝ score (`scoreSamplingMex`).

  A running sum over millions of cells is latency-bound, so the draw descends a tree of partial
  sums (`SamplingTree`, per column of the [R, C] grid; a 1-D input is one column): a (group,
  column) from the float64 cdf of the group sums, then a chunk of that group, then a cell of that
  chunk — each draw touches a few dozen numbers. Zero-score cells are never drawn. Draws come out
  sorted by (group, column).
  """
  grid = np.asarray(scores, np.float32)
  grid = grid.reshape(-1, 1) if grid.ndim == 1 else grid
  rows, cols = grid.shape
  tree = SamplingTree.build(grid) if tree is None else tree
  group_sums = tree.group_sums.reshape(-1)
  cdf = np.cumsum(group_sums)
  total = cdf[-1] if cdf.size else 0.0
  if not total > 0:
    return np.zeros((0,), np.int64)
  u = np.sort(rng.random(num)) * total
  b = np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)
  within = np.maximum(u - (cdf[b] - group_sums[b]), 0.0)
  grp, col = np.divmod(b, cols)
  group_len = np.diff(np.append(tree.group_first, len(tree.chunk_starts)))
  k, within = _descend(tree.chunk_sums, tree.group_first[grp], group_len[grp], col, within)
  chunk = tree.group_first[grp] + k
  chunk_len = np.diff(np.append(tree.chunk_starts, rows))
  j, _ = _descend(grid, tree.chunk_starts[chunk], chunk_len[chunk], col, within)
  return (tree.chunk_starts[chunk] + j) * cols + col


def ms_windows(image: np.ndarray, scales, thetas, rng: np.random.Generator, num_windows: int,
               min_window: int = 10, filtersize: int = 3, release_coords: bool = False):
  """Candidate windows sampled from the MS cue and their MS scores.

  For each scale s and RGB channel, `num_windows / (3·#scales)` windows are sampled with
  replacement ∝ score among the positive-score windows of the s×s grid, then mapped to image
  pixels. The release maps grid cells [a..b] (1-based) to pixels [a·W/s, b·W/s], shifting the left
  edge right by one cell; `release_coords=True` keeps that quirk, the default maps the cells'
  true extent [(a-1)·W/s + 1, b·W/s].
  Returns (windows float64 [N, 4] 0-based inclusive, not yet rounded; scores float64 [N]).
  """
  height, width = image.shape[:2]
  per_map = int(round(num_windows / (len(scales) * 3)))
  boxes, scores = [], []
  for scale, theta in zip(scales, thetas):
    scale = int(scale)
    min_w = max(2, int(round_half_up(min(min_window, width) * scale / width)))
    min_h = max(2, int(round_half_up(min(min_window, height) * scale / height)))
    min_w, min_h = min(min_w, scale), min(min_h, scale)
    for channel in range(3):
      sal = saliency.saliency_map(image, channel, scale, filtersize)
      grid, (xlo, xhi), (ylo, yhi), tree = ms_window_scores(sal, theta, min_w, min_h)
      pick = sample_proportional(grid, per_map, rng, tree)
      flat = grid.ravel()
      ix, iy = np.divmod(pick, grid.shape[1])
      x_lo, x_hi, y_lo, y_hi = xlo[ix], xhi[ix], ylo[iy], yhi[iy]
      sx, sy = width / scale, height / scale
      if release_coords:
        box = np.stack([(x_lo + 1) * sx, (y_lo + 1) * sy, (x_hi + 1) * sx, (y_hi + 1) * sy], 1) - 1
      else:
        box = np.stack([x_lo * sx, y_lo * sy, (x_hi + 1) * sx - 1, (y_hi + 1) * sy - 1], 1)
      boxes.append(box)
      scores.append(flat[pick].astype(np.float64))
  boxes = np.concatenate(boxes)[:num_windows]
  scores = np.concatenate(scores)[:num_windows]
  return boxes, scores


def to_pixel_windows(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
  """Round float boxes to valid inclusive pixel windows (x2 >= x1, y2 >= y1, inside the image)."""
  win = round_half_up(boxes)
  win[:, 0] = np.clip(win[:, 0], 0, width - 1)
  win[:, 1] = np.clip(win[:, 1], 0, height - 1)
  win[:, 2] = np.clip(np.maximum(win[:, 2], win[:, 0]), 0, width - 1)
  win[:, 3] = np.clip(np.maximum(win[:, 3], win[:, 1]), 0, height - 1)
  return win


# ----------------------------------------------------------------------------------------- CC --

def rgb_to_lab(image: np.ndarray) -> np.ndarray:
  """The release's `rgb2lab` (Ruzon/Rubner): BT.709 matrix on R/255 *without* sRGB linearisation."""
  rgb = image.astype(np.float64) / 255.0
  mat = np.array([[0.412453, 0.357580, 0.180423],
                  [0.212671, 0.715160, 0.072169],
                  [0.019334, 0.119193, 0.950227]])
  xyz = rgb @ mat.T
  x, y, z = xyz[..., 0] / 0.950456, xyz[..., 1], xyz[..., 2] / 1.088754
  t = 0.008856

  def f(v):
    return np.where(v > t, np.cbrt(v), 7.787 * v + 16.0 / 116.0)

  fx, fy, fz = f(x), f(y), f(z)
  lum = np.where(y > t, 116.0 * np.cbrt(y) - 16.0, 903.3 * y)
  return np.stack([lum, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def quantise_lab(lab: np.ndarray, quant=(4, 8, 8)) -> np.ndarray:
  """`computeQuantMatrix`: L in `quant[0]` bins over [0,100], a and b in bins over [-120,120]."""
  ql, qa, qb = (int(q) for q in quant)
  lq = np.clip(np.floor(lab[..., 0] / (100.0 / ql)), 0, ql - 1)
  aq = np.clip(np.floor((lab[..., 1] + 120.0) / (240.0 / qa)), 0, qa - 1)
  bq = np.clip(np.floor((lab[..., 2] + 120.0) / (240.0 / qb)), 0, qb - 1)
  return (lq * qa * qb + aq * qb + bq).astype(np.int64)


def compress_labels(labels: np.ndarray):
  """(labels that occur, labels renumbered 0..n-1) for small non-negative ints; O(pixels)."""
  used = np.flatnonzero(np.bincount(labels.ravel()))
  lut = np.zeros(int(used[-1]) + 1, np.int64)
  lut[used] = np.arange(used.size)
  return used, lut[labels]


def _histogram_integral(labels: np.ndarray):
  """Integral histogram over the labels that occur (compressing unused bins saves memory/time)."""
  used, dense = compress_labels(labels)
  onehot = np.zeros(labels.shape + (used.size,), dtype=np.int32)
  np.put_along_axis(onehot, dense[..., None], 1, axis=-1)
  ii = np.zeros((labels.shape[0] + 1, labels.shape[1] + 1, used.size), dtype=np.int32)
  np.cumsum(np.cumsum(onehot, axis=0), axis=1, out=ii[1:, 1:])
  return ii.reshape(-1, used.size), labels.shape[1] + 1


def _flat_box_hist(ii_flat, stride, x1, y1, x2, y2):
  """Histograms of inclusive boxes from a flattened integral histogram [(H+1)(W+1), B]."""
  take = lambda y, x: np.take(ii_flat, y * stride + x, axis=0).astype(np.float32)
  return take(y2 + 1, x2 + 1) - take(y1, x2 + 1) - take(y2 + 1, x1) + take(y1, x1)


def cc_scores(image: np.ndarray, windows: np.ndarray, theta: float = 100.0, quant=(4, 8, 8),
              chunk: int = 4096) -> np.ndarray:
  """Colour contrast (`computeScoreContrast`): chi² between window and surround LAB histograms.

  The surround grows the window by theta/200 of its width (height) on each side, clipped to the
  image; CC = Σ_k (p_k - q_k)² / (p_k + q_k) over normalised histograms (0 when the ring is empty).
  """
  height, width = image.shape[:2]
  ii_flat, stride = _histogram_integral(quantise_lab(rgb_to_lab(image), quant))
  x1, y1, x2, y2 = (windows[:, i] for i in range(4))
  off_w = (x2 - x1 + 1) * theta / 200.0
  off_h = (y2 - y1 + 1) * theta / 200.0
  # 1-based in the MEX: round(max(xmin - off, 1)); shifted back to 0-based here.
  sx1 = round_half_up(np.maximum(x1 + 1 - off_w, 1)) - 1
  sy1 = round_half_up(np.maximum(y1 + 1 - off_h, 1)) - 1
  sx2 = round_half_up(np.minimum(x2 + 1 + off_w, width)) - 1
  sy2 = round_half_up(np.minimum(y2 + 1 + off_h, height)) - 1
  out = np.zeros(len(windows), dtype=np.float64)
  for s in range(0, len(windows), chunk):
    sl = slice(s, s + chunk)
    inside = _flat_box_hist(ii_flat, stride, x1[sl], y1[sl], x2[sl], y2[sl])
    ring = _flat_box_hist(ii_flat, stride, sx1[sl], sy1[sl], sx2[sl], sy2[sl]) - inside
    n_in = inside.sum(axis=1, keepdims=True)
    n_out = ring.sum(axis=1, keepdims=True)
    p = inside / np.maximum(n_in, 1)
    q = ring / np.maximum(n_out, 1)
    denom = p + q
    chi = np.where(denom > 0, (p - q) ** 2 / np.where(denom > 0, denom, 1), 0).sum(axis=1)
    out[sl] = np.where(n_out[:, 0] > 0, chi, 0.0)
  return out


# ----------------------------------------------------------------------------------------- ED --

def canny_edges(image: np.ndarray) -> np.ndarray:
  """Canny edges of the grey image with MATLAB `edge(I,'canny')` defaults (σ=√2, thresholds at
  the 0.7 quantile of gradient magnitude and 0.4 of that)."""
  grey = image.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140]) / 255.0
  return feature.canny(grey, sigma=np.sqrt(2.0), low_threshold=0.28, high_threshold=0.7,
                       use_quantiles=True)


def ed_scores(image: np.ndarray, windows: np.ndarray, theta: float = 17.0,
              edges: np.ndarray | None = None) -> np.ndarray:
  """Edge density in the inner ring (the window shrunk to 100/(100+θ) of its size, centred).

  Score = (ring thickness) · (#edge pixels in ring) / (ring area), as in `computeScores.m`.
  """
  if edges is None:
    edges = canny_edges(image)
  ii = integral_image(edges.astype(np.float64))
  # Inner window in the release's 1-based arithmetic.
  x1, y1, x2, y2 = (windows[:, i].astype(np.float64) + 1 for i in range(4))
  t = float(theta)
  ix2 = round_half_up((x2 * (200 + t) / (t + 100) + x1 * t / (t + 100) + 100 / (t + 100) - 1) / 2)
  ix1 = round_half_up(x2 + x1 - ix2)
  iy2 = round_half_up((y2 * (200 + t) / (t + 100) + y1 * t / (t + 100) + 100 / (t + 100) - 1) / 2)
  iy1 = round_half_up(y2 + y1 - iy2)
  w = windows
  outer = box_sums(ii, w[:, 0], w[:, 1], w[:, 2], w[:, 3])
  inner_ok = (ix2 >= ix1) & (iy2 >= iy1)
  ix1c, iy1c = np.clip(ix1 - 1, 0, None), np.clip(iy1 - 1, 0, None)
  ix2c = np.clip(ix2 - 1, ix1c, edges.shape[1] - 1)
  iy2c = np.clip(iy2 - 1, iy1c, edges.shape[0] - 1)
  inner = np.where(inner_ok, box_sums(ii, ix1c, iy1c, ix2c, iy2c), 0.0)
  area = (x2 - x1 + 1) * (y2 - y1 + 1)
  inner_area = np.where(inner_ok, (ix2 - ix1 + 1) * (iy2 - iy1 + 1), 0)
  diff = area - inner_area
  thickness = (x2 - ix2 + y2 - iy2) / 2.0
  return np.where(diff > 0, thickness * (outer - inner) / np.where(diff > 0, diff, 1), 0.0)


# ----------------------------------------------------------------------------------------- SS --

def superpixels(image: np.ndarray, k: float = 450.0, basis_sigma: float = 0.5,
                basis_min_area: float = 200.0) -> np.ndarray:
  """Felzenszwalb-Huttenlocher superpixels with the release's size-scaled parameters.

  σ and min area grow with sqrt(H·W / (300·200)); k is the cue's θ_SS. scikit-image's `scale`
  equals the original k on 0..255 images (it divides by 255 after converting to [0, 1]).
  """
  sf = np.sqrt(image.shape[0] * image.shape[1] / (300.0 * 200.0))
  return segmentation.felzenszwalb(image, scale=float(k), sigma=basis_sigma * sf,
                                   min_size=max(1, int(basis_min_area * sf)), channel_axis=-1)


def ss_scores(labels: np.ndarray, windows: np.ndarray, chunk: int = 8192) -> np.ndarray:
  """Superpixel straddling: 1 - Σ_s min(|s∩w|, |s|-|s∩w|) / |w|.

  Only superpixels whose bounding box crosses the window border can straddle it, so each
  superpixel keeps an integral image of its own bounding box only and the sum runs over the
  (window, superpixel) pairs whose boxes cross: memory ~ Σ bbox areas, work ~ #crossing pairs.
  """
  height, width = labels.shape
  _, labels = compress_labels(labels)
  n = int(labels.max()) + 1
  area = np.bincount(labels.ravel(), minlength=n)
  ys, xs = np.indices(labels.shape)
  flat = labels.ravel()
  bx1 = np.full(n, width); by1 = np.full(n, height)
  np.minimum.at(bx1, flat, xs.ravel()); np.minimum.at(by1, flat, ys.ravel())
  bx2 = np.zeros(n, np.int64); by2 = np.zeros(n, np.int64)
  np.maximum.at(bx2, flat, xs.ravel()); np.maximum.at(by2, flat, ys.ravel())
  bw, bh = bx2 - bx1 + 2, by2 - by1 + 2  # integral image sizes (w+1, h+1)
  offsets = np.concatenate([[0], np.cumsum(bw * bh)])
  ii_all = np.empty(offsets[-1], dtype=np.int32)
  for s in range(n):
    mask = labels[by1[s]:by2[s] + 1, bx1[s]:bx2[s] + 1] == s
    ii_all[offsets[s]:offsets[s + 1]] = integral_image(mask).astype(np.int32).ravel()

  # int32 throughout: the (window, superpixel) tests are the bulk of the work.
  bx1, by1, bx2, by2, bw, area = (v.astype(np.int32) for v in (bx1, by1, bx2, by2, bw, area))
  offsets = offsets.astype(np.int64)
  windows = np.asarray(windows, np.int32)
  out = np.empty(len(windows), dtype=np.float64)
  for c in range(0, len(windows), chunk):
    w = windows[c:c + chunk]
    x1, y1, x2, y2 = (w[:, i, None] for i in range(4))
    # Box crosses the window border = overlaps it and is not inside it.
    crossing = (bx1 <= x2) & (bx2 >= x1) & (by1 <= y2) & (by2 >= y1)
    crossing &= (bx1 < x1) | (bx2 > x2) | (by1 < y1) | (by2 > y2)
    wi, si = np.nonzero(crossing)
    # Window clipped to the superpixel's box, in that box's local coordinates.
    cx1 = np.maximum(w[wi, 0], bx1[si]) - bx1[si]
    cx2 = np.minimum(w[wi, 2], bx2[si]) - bx1[si]
    cy1 = np.maximum(w[wi, 1], by1[si]) - by1[si]
    cy2 = np.minimum(w[wi, 3], by2[si]) - by1[si]
    base, stride = offsets[si], bw[si]
    at = lambda y, x: ii_all[base + (y * stride + x)]
    inter = at(cy2 + 1, cx2 + 1) - at(cy1, cx2 + 1) - at(cy2 + 1, cx1) + at(cy1, cx1)
    straddle = np.minimum(inter, area[si] - inter).astype(np.float64)
    total = np.bincount(wi, weights=straddle, minlength=len(w))
    warea = (w[:, 2] - w[:, 0] + 1).astype(np.float64) * (w[:, 3] - w[:, 1] + 1)
    out[c:c + chunk] = 1.0 - total / warea
  return out
