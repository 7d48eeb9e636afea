"""FCN-32s/16s/8s on VGG16 (Long, Shelhamer & Darrell 2015), the paper's network (§4.1).

`FCN(...).apply(variables, images_rgb_0_255 [B,H,W,3], train=...)` -> logits [B,H,W,C] float32 at the
input resolution. The model owns its preprocessing (RGB->BGR, Caffe VGG mean), so the batch dict's
`image` goes in as is.

Mixed precision (`dtype='bfloat16'`, flax imagenet's `half_precision`): params stay float32, every
conv, ReLU, pool and upsampling runs in bfloat16, and the logits come back as float32, so the
losses' softmax / log terms, evaluation's argmax and predict's probabilities are float32 whatever
the compute dtype (docs/model.md, "Compute dtype").

mode='caffe' reproduces the released deploy nets exactly: conv1_1 pad 100, ceil pooling, VALID 7x7
fc6, fixed bilinear Deconvolution (kernel 2s, stride s, Caffe's `upsample_filt` on the channel
diagonal) and the Crop offsets of the prototxts (32s: 19; 16s: 5, 27; 8s: 5, 9, 31; derived in
docs/model.md). A separable bilinear deconvolution is two small matmuls, so it is computed that way
(`caffe_upsample`): same numbers as the 21->21 64x64 deconv, without its cost on CPU.
mode='same': SAME convs, floor pooling, bilinear resize back to the input (needs H, W >= 32).

The skip heads' in-network 2x upsamplings are fixed bilinear too (learned in the FCN paper, fixed
with lr_mult 0 in the authors' later reference nets), so every parameter is a conv.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pointseg_jax.models import layers
from pointseg_jax.models import vgg16

VARIANTS = ("32s", "16s", "8s")
# Crop offsets of the released Caffe nets (coordinate maps of the Crop layer), per variant:
# (score_pool4 crop, score_pool3 crop, final crop).
CAFFE_OFFSETS = {"32s": (None, None, 19), "16s": (5, None, 27), "8s": (5, 9, 31)}
SAME_MIN_SIZE = 32   # five floor poolings leave at least a 1x1 map
# float16 is left out on purpose: its 5-bit exponent needs loss scaling, bfloat16's 8 bits do not.
COMPUTE_DTYPES = ("float32", "bfloat16")


def dtype_name(dtype: Any) -> str | None:
  """'float32' for jnp.float32 / 'float32' / np.dtype('float32'); None for what is not a dtype."""
  try:
    return jnp.dtype(dtype).name
  except TypeError:
    return None


def bilinear_taps(factor: int) -> np.ndarray:
  """1-D bilinear kernel of Caffe's `upsample_filt(2 * factor)` (FCN's `surgery.interp`)."""
  size = 2 * factor
  center = factor - 0.5
  return 1.0 - np.abs(np.arange(size) - center) / factor


def upsample_matrix(n_in: int, factor: int, offset: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] matrix of a 1-D Deconvolution(kernel 2f, stride f) followed by Crop(offset).

  Deconv output o gathers input i with tap o - f*i (Caffe col2im); the crop keeps outputs
  offset .. offset + n_out - 1.
  """
  full = (n_in - 1) * factor + 2 * factor
  if offset + n_out > full:
    raise ValueError(f"crop {offset}+{n_out} exceeds the deconvolution output {full}")
  taps = bilinear_taps(factor)
  o = np.arange(n_out)[:, None] + offset
  t = o - factor * np.arange(n_in)[None, :]
  inside = (t >= 0) & (t < 2 * factor)
  return np.where(inside, taps[np.clip(t, 0, 2 * factor - 1)], 0.0).astype(np.float32)


def caffe_upsample(x: jax.Array, factor: int, offset: int,
                   out_hw: tuple[int, int] | None = None) -> jax.Array:
  """Fixed bilinear Deconvolution (per channel) + Crop, as two separable matmuls.

  `out_hw=None` keeps the whole deconvolution output ((n - 1) * f + 2f per side, offset 0).
  """
  _, h, w, _ = x.shape
  if out_hw is None:
    out_hw = ((h + 1) * factor, (w + 1) * factor)
  uh = jnp.asarray(upsample_matrix(h, factor, offset, out_hw[0]), x.dtype)
  uw = jnp.asarray(upsample_matrix(w, factor, offset, out_hw[1]), x.dtype)
  x = jnp.einsum("oh,nhwc->nowc", uh, x)
  return jnp.einsum("pw,nowc->nopc", uw, x)


def _crop(x: jax.Array, offset: int, like: jax.Array) -> jax.Array:
  h, w = like.shape[1:3]
  return x[:, offset:offset + h, offset:offset + w, :]


def _resize(x: jax.Array, hw: tuple[int, int]) -> jax.Array:
  return jax.image.resize(x, (x.shape[0], *hw, x.shape[3]), "bilinear", antialias=False)


class FCN(nn.Module):
  """FCN-VGG16. Params (flat, Caffe names): conv1_1..conv5_3, fc6, fc7, score_fr
  (+ score_pool4 for 16s/8s, + score_pool3 for 8s), each {'kernel' HWIO, 'bias'}.

  Attributes:
    num_classes: output channels (21 = background + 20 PASCAL classes).
    variant: '32s' | '16s' | '8s' (skip heads from pool4 / pool3).
    width: multiplier on every conv's channels and on fc6/fc7's 4096 (e.g. 1/8 for CPU runs).
    mode: 'caffe' (released deploy geometry, any size) | 'same' (padded, H, W >= 32).
    dropout: rate after fc6 and fc7 in training.
    conv_impl: conv formulation for every layer, see `layers.py` ('auto' = fastest measured).
    dtype: compute dtype of the activations, one of COMPUTE_DTYPES (params are float32 always).
  """
  num_classes: int = 21
  variant: str = "32s"
  width: float = 1.0
  mode: str = "caffe"
  dropout: float = 0.5
  conv_impl: str = "auto"
  dtype: Any = jnp.float32

  def _check(self, images: jax.Array) -> None:
    if self.variant not in VARIANTS:
      raise ValueError(f"FCN variant must be one of {VARIANTS}; got {self.variant!r}")
    if self.mode not in vgg16.MODES:
      raise ValueError(f"FCN mode must be one of {vgg16.MODES}; got {self.mode!r}")
    if dtype_name(self.dtype) not in COMPUTE_DTYPES:
      raise ValueError(f"FCN dtype must be one of {COMPUTE_DTYPES}; got {self.dtype!r}")
    if not self.width > 0:
      raise ValueError(f"FCN width must be > 0; got {self.width}")
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"FCN expects RGB images [B, H, W, 3]; got shape {images.shape}")
    h, w = images.shape[1:3]
    if self.mode == "same" and min(h, w) < SAME_MIN_SIZE:
      raise ValueError(
          f"FCN mode='same' needs H, W >= {SAME_MIN_SIZE} (five floor poolings); got {h}x{w}. "
          "Use mode='caffe' (any size) or pad the images.")

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    self._check(images)
    n, h, w, _ = images.shape
    caffe = self.mode == "caffe"
    # Mean subtraction in float32, then one cast: the input is rounded once, not the mean too.
    x = vgg16.preprocess(images.astype(jnp.float32)).astype(self.dtype)
    taps = vgg16.backbone(x, width=self.width, mode=self.mode, impl=self.conv_impl,
                          dtype=self.dtype)

    fc = vgg16.scaled(vgg16.FC_CHANNELS, self.width)
    k = vgg16.FC6_KERNEL
    x = layers.Conv(fc, k, padding="VALID" if caffe else "SAME", impl=self.conv_impl,
                    dtype=self.dtype, name="fc6")(taps["pool5"])
    x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
    x = layers.Conv(fc, 1, impl=self.conv_impl, dtype=self.dtype, name="fc7")(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))

    # Score layers start at zero (FCN; weights.py seeds score_fr from ImageNet fc8 rows).
    def score(name: str, inputs: jax.Array) -> jax.Array:
      return layers.Conv(self.num_classes, 1, impl=self.conv_impl, dtype=self.dtype, name=name,
                         kernel_init=nn.initializers.zeros_init())(inputs)

    x = score("score_fr", x)
    skips = [("score_pool4", "pool4"), ("score_pool3", "pool3")][:VARIANTS.index(self.variant)]
    offsets = CAFFE_OFFSETS[self.variant]
    for (name, tap), offset in zip(skips, offsets):
      s = score(name, taps[tap])
      if caffe:   # upscore2 (deconv 4/2, whole output) + crop of the skip score
        x = caffe_upsample(x, 2, 0)
        x = x + _crop(s, offset, x)
      else:
        x = _resize(x, s.shape[1:3]) + s
    if caffe:
      factor = 32 // 2 ** len(skips)
      x = caffe_upsample(x, factor, offsets[-1], (h, w))
    else:
      x = _resize(x, (h, w))
    return x.astype(jnp.float32)   # the losses take logs of softmaxes: float32 (module doc)


def param_count(tree: Any) -> int:
  """Number of scalars in a pytree of arrays or ShapeDtypeStructs."""
  return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def init_params(model: FCN, seed: int = 0) -> dict[str, Any]:
  """Params with `model.init`'s distributions, drawn with numpy (host, float32).

  Same layout and law as `model.init(...)['params']` (He/kaiming truncated normal for conv
  kernels, zeros for biases and score layers) but no XLA compile of the threefry RNG, which costs
  ~1 s per param tensor on a 2-core CPU. Use it for tests and CPU runs.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for name, leaves in abstract_variables(model)["params"].items():
    shape = leaves["kernel"].shape
    if name.startswith("score"):
      kernel = np.zeros(shape, np.float32)
    else:   # nn.initializers.kaiming_normal(): truncated N(0, 1) on [-2, 2], variance 2 / fan_in
      z = rng.standard_normal(shape, np.float32)
      while (bad := np.abs(z) > 2).any():
        z[bad] = rng.standard_normal(int(bad.sum()), np.float32)
      std = np.sqrt(2.0 / math.prod(shape[:-1])) / 0.87962566103423978
      kernel = (z * std).astype(np.float32)
    out[name] = {"kernel": kernel, "bias": np.zeros(leaves["bias"].shape, np.float32)}
  return out


def abstract_variables(model: FCN, image_hw: tuple[int, int] | None = None) -> Any:
  """Shapes/dtypes of `model.init(...)` via `jax.eval_shape` (no memory for the weights)."""
  if image_hw is None:
    image_hw = (1, 1) if model.mode == "caffe" else (SAME_MIN_SIZE, SAME_MIN_SIZE)
  images = jax.ShapeDtypeStruct((1, *image_hw, 3), jnp.float32)
  return jax.eval_shape(lambda key, x: model.init(key, x, train=False), jax.random.key(0), images)
