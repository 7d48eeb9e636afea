"""Spectral-residual saliency (Hou & Zhang, CVPR 2007), as Alexe et al. use it for the MS cue.

Per channel: resize to `scale`×`scale` (bilinear with antialiasing, like MATLAB's imresize),
log-amplitude spectrum minus its 3×3 box-filtered version (replicate border), back-transform with
the original phase, square the magnitude, smooth with MATLAB's `fspecial('disk', 3)` (zero
border), and min-max normalise (`mat2gray`). Mirrors `saliencyMapChannel` of objectness v2.2.
"""
import functools

import numpy as np
from PIL import Image
from scipy import ndimage


@functools.lru_cache(maxsize=None)
def disk_kernel(radius: int = 3, supersample: int = 64) -> np.ndarray:
  """MATLAB `fspecial('disk', r)`: each pixel's area covered by a disk of radius r, summed to 1.

  Computed by supersampling each pixel (error ~1e-4 of a pixel's area), not by MATLAB's closed
  form; the smoothing it drives is insensitive to that difference.
  """
  n = 2 * radius + 1
  offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
  centres = np.arange(n) - radius
  sub = (centres[:, None] + offsets[None, :]).ravel()  # sub-pixel coordinates along one axis
  inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= radius ** 2
  cover = inside.reshape(n, supersample, n, supersample).mean(axis=(1, 3))
  return cover / cover.sum()


def resize_float(channel: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize of one float channel; PIL widens the kernel when shrinking (antialiasing)."""
  img = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), mode="F")
  return np.asarray(img.resize((width, height), Image.BILINEAR), dtype=np.float64)


def mat2gray(x: np.ndarray) -> np.ndarray:
  """Min-max normalise to [0,1]; a constant array maps to zeros (no NaN)."""
  lo, hi = float(x.min()), float(x.max())
  if not hi > lo:
    return np.zeros_like(x, dtype=np.float64)
  return (x - lo) / (hi - lo)


def spectral_residual(channel: np.ndarray, filtersize: int = 3) -> np.ndarray:
  """Saliency of one square float channel (already resized); [0,1], zeros for a flat channel."""
  if np.ptp(channel) <= 1e-12:
    return np.zeros_like(channel, dtype=np.float64)
  spectrum = np.fft.fft2(channel)
  amplitude = np.abs(spectrum)
  # log(0) = -inf in MATLAB; a tiny floor keeps the arithmetic finite without changing real images.
  log_amp = np.log(np.maximum(amplitude, 1e-12))
  phase = np.angle(spectrum)
  smooth = ndimage.uniform_filter(log_amp, size=filtersize, mode="nearest")
  sal = np.abs(np.fft.ifft2(np.exp(log_amp - smooth + 1j * phase))) ** 2
  sal = ndimage.correlate(sal, disk_kernel(filtersize), mode="constant", cval=0.0)
  return mat2gray(sal)


def saliency_map(image: np.ndarray, channel: int, scale: int, filtersize: int = 3) -> np.ndarray:
  """MS saliency of `image[..., channel]` (uint8 RGB) at a `scale`×`scale` resolution."""
  chan = image[..., channel].astype(np.float32) / 255.0
  return spectral_residual(resize_float(chan, scale, scale), filtersize)


def image_saliency(image: np.ndarray, scale: int = 64, filtersize: int = 3) -> np.ndarray:
  """Plain spectral-residual saliency of the whole image at full size (the evaluation baseline).

  Hou & Zhang's recipe: grey image at `scale` px on its long side, the residual saliency, then
  bilinear upsampling back to [H, W]; float in [0,1].
  """
  height, width = image.shape[:2]
  grey = image.astype(np.float32).mean(axis=-1) / 255.0 if image.ndim == 3 else image / 255.0
  side = max(height, width)
  h = max(1, round(height * scale / side))
  w = max(1, round(width * scale / side))
  sal = spectral_residual(resize_float(grey, h, w), filtersize)
  return mat2gray(resize_float(sal, height, width))
