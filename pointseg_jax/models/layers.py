"""The one convolution module of the FCN, with formulations that are fast on XLA:CPU.

Every conv of the network goes through `Conv` (params 'kernel' HWIO, 'bias'), so the formulation can
change here without touching the network. XLA:CPU (jax 0.10.2) lowers three kinds of conv badly
(measured in docs/cpu_convolutions.md): fc6's 7x7 conv (dgrad 3x, forward ~30x on small maps), the
weight gradients of 1x1 convs, and the weight gradients of many 3x3 convs (lowered as a
whole-image-window conv). The fast formulations below compute the same function with matmuls:

  'lax'      `lax.conv_general_dilated` (the reference; what 'auto' uses on GPU/TPU).
  'patches'  image patches @ kernel matrix: one matmul forward, matmul grads + a cheap col2im.
  'einsum'   1x1 conv as `einsum('nhwc,cd->nhwd')` (dot_general forward and backward).
  'wgmm'     3x3 conv whose weight gradient is k*k shifted-view matmuls x_shift^T @ g
             (forward and input gradient stay `lax.conv`, which XLA:CPU runs well).
  'wgpatch'  3x3 conv whose weight gradient is one patches matmul (the image layer, Cin = 3).

`conv(x, w, padding, impl='auto')` picks per layer: on CPU 1x1 -> einsum, k >= 5 -> patches,
3x3 -> `wgrad_impl` (wgmm, wgpatch or lax); on other backends lax everywhere. The rule was
measured on 2 cores (docs/model.md, `python -m bench.layers`).
"""
import functools
from typing import Any, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
IMPLS = ("auto", "lax", "patches", "einsum", "wgmm", "wgpatch")
# Which weight gradient a 3x3 layer gets on CPU (2 cores, docs/model.md): XLA's own wgrad conv is
# slow for narrow (<= 16) or wide (>= 128) outputs on maps of >= 64x64 pixels and for any width
# on maps of >= 400x400, where the shifted matmuls win; the image layer (<= 4 input channels,
# e.g. conv1_1 at full width) takes one [pixels, 9 * Cin] patches matmul instead; 32-64 outputs
# on smaller maps and maps below 64x64 stay with XLA.
WGRAD_MIN_PIXELS = 64 * 64
WGMM_ALWAYS_PIXELS = 400 * 400
WGPATCH_MAX_CIN = 4


def wgrad_impl(out_hw: tuple[int, int], cin: int, cout: int) -> str:
  """Measured rule: the formulation ('lax', 'wgmm' or 'wgpatch') of this 3x3 layer on CPU."""
  pixels = out_hw[0] * out_hw[1]
  if pixels < WGRAD_MIN_PIXELS:
    return "lax"
  if cout <= 16:
    return "wgmm"
  if cin <= WGPATCH_MAX_CIN:
    return "wgpatch"
  if cout >= 128 or pixels >= WGMM_ALWAYS_PIXELS:
    return "wgmm"
  return "lax"


PaddingLike = Union[str, int, Sequence[Sequence[int]]]
Pads = tuple[tuple[int, int], tuple[int, int]]


def normalize_padding(padding: PaddingLike, kernel_hw: tuple[int, int]) -> Pads:
  """'SAME' | 'VALID' | int p | ((top, bottom), (left, right)) -> explicit pads (stride 1)."""
  if isinstance(padding, str):
    if padding.upper() == "VALID":
      return ((0, 0), (0, 0))
    if padding.upper() == "SAME":
      return tuple((  # type: ignore[return-value]
          (k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_hw)
    raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs; got {padding!r}")
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  pads = tuple(tuple(int(v) for v in p) for p in padding)
  if len(pads) != 2 or any(len(p) != 2 for p in pads):
    raise ValueError(f"padding pairs must be ((top, bottom), (left, right)); got {padding!r}")
  return pads  # type: ignore[return-value]


def _pad(x: jax.Array, pads: Pads) -> jax.Array:
  if pads == ((0, 0), (0, 0)):
    return x
  return jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def conv_lax(x: jax.Array, w: jax.Array, pads: Pads) -> jax.Array:
  """Reference: stride-1 NHWC/HWIO convolution with explicit pads."""
  return jax.lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=DIMENSION_NUMBERS)


def patches(x: jax.Array, kh: int, kw: int) -> jax.Array:
  """VALID stride-1 patches [N, Ho, Wo, kh*kw*C], ordered (kh, kw, c) like a HWIO kernel reshaped."""
  _, h, w, _ = x.shape
  ho, wo = h - kh + 1, w - kw + 1
  return jnp.concatenate(
      [x[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)], axis=-1)


def conv_patches(x: jax.Array, w: jax.Array, pads: Pads) -> jax.Array:
  """Conv as one matmul of image patches with the [kh*kw*Cin, Cout] kernel matrix (fc6)."""
  kh, kw, cin, cout = w.shape
  return jnp.einsum("nhwk,kd->nhwd", patches(_pad(x, pads), kh, kw),
                    w.reshape(kh * kw * cin, cout))


def conv_einsum(x: jax.Array, w: jax.Array, pads: Pads) -> jax.Array:
  """1x1 conv as a contraction over channels (no pads: a padded 1x1 conv is a pad then this)."""
  if w.shape[:2] != (1, 1):
    raise ValueError(f"'einsum' is for 1x1 kernels; got a {w.shape[0]}x{w.shape[1]} kernel")
  return jnp.einsum("nhwc,cd->nhwd", _pad(x, pads), w[0, 0])


def _wgrad_shifted(x, g, pads, kshape):
  """dW[i, j] = x_shift(i, j)^T @ g: kh*kw matmuls over shifted views of the padded input."""
  kh, kw, cin, cout = kshape
  _, ho, wo, _ = g.shape
  xp = _pad(x, pads)
  g2 = g.reshape(-1, cout)
  return jnp.stack([
      xp[:, i:i + ho, j:j + wo, :].reshape(-1, cin).T @ g2
      for i in range(kh) for j in range(kw)
  ]).reshape(kshape)


def _wgrad_patches(x, g, pads, kshape):
  """dW = patches^T @ g: one matmul with K = pixels, M = kh*kw*Cin (a 9x copy of x)."""
  kh, kw, cin, cout = kshape
  p = patches(_pad(x, pads), kh, kw)
  return jnp.einsum("nhwk,nhwd->kd", p, g).reshape(kshape)


def _custom_wgrad_conv(wgrad):
  """lax.conv forward and input gradient; weight gradient by `wgrad(x, g, pads, kernel_shape)`."""
  @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
  def f(x, w, pads):
    return conv_lax(x, w, pads)

  def fwd(x, w, pads):
    return conv_lax(x, w, pads), (x, w)

  def bwd(pads, res, g):
    x, w = res
    dx = jax.vjp(lambda x: conv_lax(x, w, pads), x)[1](g)[0]   # XLA's dgrad is fine for 3x3
    return dx, wgrad(x, g, pads, w.shape)

  f.defvjp(fwd, bwd)
  return f


conv_wgmm = _custom_wgrad_conv(_wgrad_shifted)
conv_wgmm.__doc__ = "lax.conv whose weight gradient is kh*kw shifted-view matmuls."
conv_wgpatch = _custom_wgrad_conv(_wgrad_patches)
conv_wgpatch.__doc__ = "lax.conv whose weight gradient is one image-patches matmul."

_FORMULATIONS = {"lax": conv_lax, "patches": conv_patches, "einsum": conv_einsum,
                 "wgmm": conv_wgmm, "wgpatch": conv_wgpatch}


def resolve_impl(impl: str, kernel_shape: Sequence[int], out_hw: tuple[int, int],
                 backend: str | None = None) -> str:
  """The formulation `conv` uses for this layer ('auto' -> a concrete one, see module doc)."""
  if impl not in IMPLS:
    raise ValueError(f"conv impl must be one of {IMPLS}; got {impl!r}")
  if impl != "auto":
    return impl
  if (backend or jax.default_backend()) != "cpu":
    return "lax"
  kh, kw, cin, cout = kernel_shape
  if (kh, kw) == (1, 1):
    return "einsum"
  if max(kh, kw) >= 5:
    return "patches"
  if (kh, kw) == (3, 3):
    return wgrad_impl(out_hw, cin, cout)
  return "lax"


def conv(x: jax.Array, w: jax.Array, padding: PaddingLike = "VALID",
         impl: str = "auto") -> jax.Array:
  """Stride-1 NHWC x HWIO convolution (no bias) in the formulation `impl` picks."""
  kh, kw = w.shape[:2]
  pads = normalize_padding(padding, (kh, kw))
  out_hw = (x.shape[1] + sum(pads[0]) - kh + 1, x.shape[2] + sum(pads[1]) - kw + 1)
  if out_hw[0] < 1 or out_hw[1] < 1:
    raise ValueError(f"a {kh}x{kw} conv with pads {pads} needs an input of at least "
                     f"{kh - sum(pads[0])}x{kw - sum(pads[1])}; got {x.shape[1]}x{x.shape[2]}")
  return _FORMULATIONS[resolve_impl(impl, w.shape, out_hw)](x, w, pads)


class Conv(nn.Module):
  """Stride-1 conv + bias; params 'kernel' [kh, kw, Cin, Cout] (HWIO) and 'bias' [Cout].

  Mixed precision as flax's `nn.Conv(dtype=...)`: the params are stored in float32, the input and
  kernel are cast to `dtype` and the conv computes and returns `dtype` (the gradient of the cast
  brings the kernel's gradient back to float32). The bias is added in float32 before the output's
  cast (XLA fuses the add and both casts into one elementwise pass), so its gradient, a sum over
  every pixel of the batch, is accumulated and returned in float32: rounding that sum to bfloat16
  on each device lost 10-20 % of it to cancellation (tests/test_parallel.py, bfloat16 parity).
  """
  features: int
  kernel_size: int
  padding: PaddingLike = "VALID"
  impl: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.kaiming_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    y = conv(x.astype(self.dtype), kernel.astype(self.dtype), self.padding, self.impl)
    return (y.astype(jnp.float32) + bias).astype(self.dtype)
