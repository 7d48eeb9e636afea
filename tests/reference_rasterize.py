"""Numpy reference rasterisers: the slow, obvious versions the TF pipeline is tested against.

A point labels the pixel (floor(y), floor(x)), clipped into the image; a squiggle labels the pixels
whose centres lie within `radius` of its polyline; a box labels the pixels it covers, the smallest
box winning. `pointseg_jax/data/rasterize.py` does the same in TF ops after augmentation
(docs/clicks.md, "Rasterising").
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import ndimage

from pointseg_jax import IGNORE_INDEX


def pixel_of(y: np.ndarray, x: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Pixel (row, col) of float coordinates: floor, clipped into the image."""
  y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
  if not (np.isfinite(y).all() and np.isfinite(x).all()):
    # floor(NaN) cast to int64 is -2**63: numpy would fail later with an unreadable IndexError.
    raise ValueError(f"click coordinates must be finite, got y={y.tolist()[:10]} "
                     f"x={x.tolist()[:10]}")
  r = np.clip(np.floor(np.asarray(y, np.float64)), 0, shape[0] - 1).astype(np.int64)
  c = np.clip(np.floor(np.asarray(x, np.float64)), 0, shape[1] - 1).astype(np.int64)
  return r, c


def rasterize_points(y: np.ndarray, x: np.ndarray, cls: np.ndarray, shape: tuple[int, int], *,
                     radius: float = 0) -> np.ndarray:
  """int32 [H, W] label map: class of each point within `radius` px of its pixel (nearest point
  wins where disks overlap), IGNORE_INDEX elsewhere."""
  out = np.full(shape, IGNORE_INDEX, np.int32)
  if len(np.asarray(cls)) == 0:
    return out
  r, c = pixel_of(y, x, shape)
  out[r, c] = np.asarray(cls, np.int32)
  if radius <= 0:
    return out
  dist, (ir, ic) = ndimage.distance_transform_edt(out == IGNORE_INDEX, return_indices=True)
  return np.where(dist <= radius, out[ir, ic], IGNORE_INDEX).astype(np.int32)


def densify_strokes(squiggles_: Mapping[str, np.ndarray], *, spacing: float = 0.5
                    ) -> dict[str, np.ndarray]:
  """Points every `spacing` px along each stroke's polyline (consecutive points of one stroke)."""
  y, x = np.asarray(squiggles_["y"], np.float64), np.asarray(squiggles_["x"], np.float64)
  cls, stroke = np.asarray(squiggles_["cls"]), np.asarray(squiggles_["stroke"])
  ys, xs, cs = [y], [x], [cls]
  for i in range(len(y) - 1):
    if stroke[i] != stroke[i + 1]:
      continue
    n = int(np.ceil(np.hypot(y[i + 1] - y[i], x[i + 1] - x[i]) / spacing))
    t = np.arange(1, n) / max(n, 1)
    ys.append(y[i] + t * (y[i + 1] - y[i])), xs.append(x[i] + t * (x[i + 1] - x[i]))
    cs.append(np.full(t.size, cls[i]))
  return {"y": np.concatenate(ys), "x": np.concatenate(xs), "cls": np.concatenate(cs)}


def rasterize_squiggles(squiggles_: Mapping[str, np.ndarray], shape: tuple[int, int],
                        radius: float) -> np.ndarray:
  """int32 [H, W]: every pixel whose centre lies within `radius` of a stroke (the polyline through
  consecutive points with the same `stroke` id) gets the class of the nearest stroke; the paper's
  radii are r = 2, 5, 25. IGNORE_INDEX elsewhere."""
  y, x = np.asarray(squiggles_["y"], np.float64), np.asarray(squiggles_["x"], np.float64)
  cls, stroke = np.asarray(squiggles_["cls"]), np.asarray(squiggles_["stroke"])
  py = np.arange(shape[0])[:, None] + 0.5
  px = np.arange(shape[1])[None, :] + 0.5
  best = np.full(shape, np.inf)
  out = np.full(shape, IGNORE_INDEX, np.int32)
  for i in range(len(y)):
    # Segment i -> i+1 within a stroke; a stroke's last point (or a lone point) as a dot.
    j = i + 1 if i + 1 < len(y) and stroke[i + 1] == stroke[i] else i
    dy, dx = y[j] - y[i], x[j] - x[i]
    t = np.clip(((py - y[i]) * dy + (px - x[i]) * dx) / max(dy * dy + dx * dx, 1e-12), 0.0, 1.0)
    d2 = (py - y[i] - t * dy) ** 2 + (px - x[i] - t * dx) ** 2
    closer = (d2 < best) & (d2 <= radius ** 2)
    best = np.where(closer, d2, best)
    out[closer] = cls[i]
  return out


def rasterize_boxes(boxes_: Mapping[str, np.ndarray], shape: tuple[int, int], *,
                    outside: int = 0) -> np.ndarray:
  """int32 [H, W]: each pixel takes the class of the smallest box covering it (paper §4.3, after
  [24]: boxes drawn larger first); pixels outside every box are background (`outside`)."""
  out = np.full(shape, outside, np.int32)
  b = {k: np.asarray(v) for k, v in boxes_.items()}
  area = (b["ymax"] - b["ymin"]) * (b["xmax"] - b["xmin"])
  for i in np.argsort(-area, kind="stable"):
    r0, c0 = int(max(np.floor(b["ymin"][i]), 0)), int(max(np.floor(b["xmin"][i]), 0))
    r1, c1 = int(min(np.ceil(b["ymax"][i]), shape[0])), int(min(np.ceil(b["xmax"][i]), shape[1]))
    out[r0:r1, c0:c1] = b["cls"][i]
  return out
