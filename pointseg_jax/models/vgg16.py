"""VGG16 backbone (Simonyan & Zisserman 2015) as the FCN uses it: 13 conv3x3+ReLU, 5 max-pools.

Layers carry the VGG/Caffe names (conv1_1 ... conv5_3) so ImageNet weights map one to one
(`weights.py`). Two geometries (docs/model.md, "Modes and sizes"):
  'caffe'  the released FCN deploy net: conv1_1 padded by 100, Caffe's ceil-mode max pooling
           (the last window is clipped at the border), so any input size >= 1 works;
  'same'   SAME padding and floor pooling (the usual TF/PyTorch VGG), input >= 32 px.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from pointseg_jax.models import layers

# (name, output channels at width 1) per conv; a max-pool closes each block.
BLOCKS = (
    (("conv1_1", 64), ("conv1_2", 64)),
    (("conv2_1", 128), ("conv2_2", 128)),
    (("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256)),
    (("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512)),
    (("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512)),
)
CONV_NAMES = tuple(name for block in BLOCKS for name, _ in block)
FC_CHANNELS = 4096   # fc6, fc7
FC6_KERNEL = 7
MODES = ("caffe", "same")
CAFFE_CONV1_PAD = 100  # FCN's deploy net pads the input so any image reaches fc6's 7x7 window
# Image mean that Caffe's VGG16 (and so FCN and the authors' LMDBs) subtracts, BGR order, 0..255.
BGR_MEAN = (104.00699, 116.66877, 122.67892)


def scaled(channels: int, width: float) -> int:
  """Channel count at a width multiplier (at least 1)."""
  return max(1, int(round(channels * width)))


def preprocess(images_rgb: jax.Array) -> jax.Array:
  """RGB 0..255 -> BGR minus the Caffe VGG mean, the input the ImageNet VGG16 was trained on."""
  return images_rgb[..., ::-1] - jnp.asarray(BGR_MEAN, images_rgb.dtype)


def max_pool(x: jax.Array, mode: str) -> jax.Array:
  """2x2/2 max pool; 'caffe' = ceil mode (odd edge row/col pooled alone), 'same' = floor."""
  if mode == "caffe":
    pad = ((0, x.shape[1] % 2), (0, x.shape[2] % 2))
  else:
    pad = ((0, 0), (0, 0))
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding=pad)


def feature_size(size: int, mode: str) -> int:
  """Side of pool5 for an input side (caffe: ceil((n + 198) / 32); same: floor(n / 32))."""
  if mode == "caffe":
    return math.ceil((size + 2 * CAFFE_CONV1_PAD - 2) / 32)
  return size // 32


def backbone(x: jax.Array, *, width: float = 1.0, mode: str = "caffe",
             impl: str = "auto", dtype=jnp.float32) -> dict[str, jax.Array]:
  """Run conv1_1 .. pool5 on a preprocessed BGR batch; returns {'pool3', 'pool4', 'pool5'}.

  The convs compute in `dtype` (float32 params, mixed precision: layers.Conv).

  Call it inside a compact Flax module: the convs become that module's children, so the param
  tree stays flat ({'conv1_1': {'kernel', 'bias'}, ...}).
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
  taps = {}
  for b, block in enumerate(BLOCKS, start=1):
    for name, channels in block:
      pad = CAFFE_CONV1_PAD if (mode == "caffe" and name == "conv1_1") else 1
      x = nn.relu(layers.Conv(scaled(channels, width), 3, padding=pad, impl=impl, dtype=dtype,
                              name=name)(x))
    x = max_pool(x, mode)
    taps[f"pool{b}"] = x
  return {k: taps[k] for k in ("pool3", "pool4", "pool5")}
