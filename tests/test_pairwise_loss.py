"""The Gated-CRF-style pairwise term (issue 20) against a direct numpy double loop.

The reference below is written from the formula in docs/losses.md, pixel pair by pixel pair, in
float64, with its gradient derived by hand: dE/dS_ic = sum_j k_ij (1 - 2 S_jc) (each unordered pair
counted twice), then through the softmax. It shares no code with losses.pairwise_loss.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

from pointseg_jax import losses

KERNEL = dict(radius=2, sigma_rgb=30.0, sigma_xy=2.0)
_STATIC = ("radius", "sigma_rgb", "sigma_xy", "scale")
# Jitted once per shape and kernel: eager calls would compile every shifted slice on its own.
pairwise = jax.jit(losses.pairwise_loss, static_argnames=_STATIC)
grad_of_sum = jax.jit(jax.grad(lambda *a, **k: losses.pairwise_loss(*a, **k).sum()),
                      static_argnames=_STATIC)


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _coarse(logits, image, valid, scale):
  """The scale x scale block means of the loss's grid (padded grid cells invalid), in numpy."""
  b, h, w, _ = logits.shape
  hs, ws = -(-h // scale), -(-w // scale)
  out_z = np.zeros((b, hs, ws, logits.shape[-1]))
  out_rgb = np.zeros((b, hs, ws, 3))
  out_valid = np.zeros((b, hs, ws), bool)
  for n in range(b):
    for y in range(hs):
      for x in range(ws):
        ys, xs = slice(y * scale, (y + 1) * scale), slice(x * scale, (x + 1) * scale)
        block = valid[n, ys, xs]
        if block.shape == (scale, scale) and block.all():
          out_valid[n, y, x] = True
          out_z[n, y, x] = logits[n, ys, xs].mean((0, 1))
          out_rgb[n, y, x] = image[n, ys, xs].mean((0, 1))
  return out_z, out_rgb, out_valid


def reference(logits, image, valid, *, radius, sigma_rgb, sigma_xy, scale=1):
  """(value [B], dE/dlogits at the loss's grid [B, h, w, C], grid valid) by the double loop."""
  logits, image = np.asarray(logits, np.float64), np.asarray(image, np.float64)
  if scale > 1:
    logits, image, valid = _coarse(logits, image, valid, scale)
  b, h, w, _ = logits.shape
  values, grads = np.zeros(b), np.zeros(logits.shape)
  for n in range(b):
    s = _softmax(logits[n])
    energy, d_s = 0.0, np.zeros_like(s)
    for yi in range(h):
      for xi in range(w):
        for yj in range(max(0, yi - radius), min(h, yi + radius + 1)):
          for xj in range(max(0, xi - radius), min(w, xi + radius + 1)):
            if (yi, xi) == (yj, xj) or not (valid[n, yi, xi] and valid[n, yj, xj]):
              continue
            colour = np.sum((image[n, yi, xi] - image[n, yj, xj]) ** 2)
            place = ((yi - yj) ** 2 + (xi - xj) ** 2) * scale**2
            k = math.exp(-colour / (2 * sigma_rgb**2) - place / (2 * sigma_xy**2))
            energy += k * np.sum(s[yi, xi] * (1 - s[yj, xj]))
            d_s[yi, xi] += k * (1 - 2 * s[yj, xj])
    count = valid[n].sum()
    if count:
      values[n] = energy / count
      d_s /= count
      grads[n] = s * (d_s - np.sum(s * d_s, -1, keepdims=True))  # back through the softmax
  return values, grads, valid


def _random(seed, b=2, h=5, w=6, c=4, logit_scale=2.0):
  rng = np.random.default_rng(seed)
  image = rng.uniform(0, 255, (b, h, w, 3))
  image[:, : h // 2] = rng.uniform(0, 60, (b, h // 2, w, 3))  # some similar colours: k ~ 1
  valid = np.ones((b, h, w), bool)
  valid[0, -1, :] = False
  valid[1, :, -2:] = False
  return (logit_scale * rng.standard_normal((b, h, w, c)), image, valid)


# ---------------------------------------------------------------- against the double loop

@pytest.mark.parametrize("kernel, hw", [
    (KERNEL, (6, 7)),
    (dict(radius=1, sigma_rgb=80.0, sigma_xy=5.0), (6, 7)),
    (dict(radius=5, sigma_rgb=50.0, sigma_xy=3.0), (3, 4)),   # window wider than the image
    (dict(radius=2, sigma_rgb=40.0, sigma_xy=4.0, scale=2), (6, 7)),   # 3x4 grid, last column padded
    (dict(radius=1, sigma_rgb=40.0, sigma_xy=4.0, scale=3), (6, 7)),
])
def test_values_and_gradients_equal_the_double_loop(kernel, hw):
  logits, image, valid = _random(0, h=hw[0], w=hw[1])
  want, want_grad, grid_valid = reference(logits, image, valid, **kernel)
  assert np.all(want > 0)
  with jax.enable_x64():
    z = jnp.asarray(logits)
    got = pairwise(z, image, valid, **kernel)
    grad = np.asarray(grad_of_sum(z, image, valid, **kernel))
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(got, want, rtol=1e-12)
  scale = kernel.get("scale", 1)
  if scale == 1:
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-15)
  else:
    # A block's logits are averaged: each of its pixels gets 1/scale^2 of the cell's gradient;
    # pixels of dropped blocks get none.
    b, h, w, _ = logits.shape
    cell_grad = want_grad.repeat(scale, 1).repeat(scale, 2)[:, :h, :w] / scale**2
    np.testing.assert_allclose(grad, cell_grad, rtol=1e-10, atol=1e-15)
    assert np.all(grad[~grid_valid.repeat(scale, 1).repeat(scale, 2)[:, :h, :w]] == 0)


def test_float32_and_jit_match_the_double_loop():
  logits, image, valid = _random(1)
  want = reference(logits, image, valid, **KERNEL)[0]
  got = jax.jit(lambda z: losses.pairwise_loss(z, image, valid, **KERNEL))(
      logits.astype(np.float32))
  assert got.dtype == jnp.float32 and got.shape == (2,)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # uint8 images and bfloat16 logits are accepted; compute stays float32.
  low = pairwise(jnp.asarray(logits, jnp.bfloat16), image.round().astype(np.uint8), valid,
                 **KERNEL)
  assert low.dtype == jnp.float32
  np.testing.assert_allclose(low, want, rtol=3e-2)


def test_finite_difference_gradients():
  logits, image, valid = _random(2, h=4, w=5, c=3)
  with jax.enable_x64():
    for kernel in (KERNEL, dict(KERNEL, scale=2)):
      # Forward mode checks the custom JVP itself, reverse mode its transpose (what jax.grad runs).
      f = jax.jit(lambda z, kernel=kernel: losses.pairwise_loss(z, image, valid, **kernel).sum())
      check_grads(f, (jnp.asarray(logits),), order=1, modes=["fwd", "rev"], eps=1e-5, atol=1e-7,
                  rtol=1e-6)
    # The image gets its true derivative too (training never asks for it).
    g = lambda im: losses.pairwise_loss(jnp.asarray(logits), im, valid, **KERNEL).sum()
    check_grads(jax.jit(g), (jnp.asarray(image),), order=1, modes=["fwd", "rev"], eps=1e-4,
                atol=1e-7, rtol=1e-5)


def test_x64_stays_scoped():
  """The float64 checks above must not leak x64 into later tests."""
  assert jnp.zeros(1).dtype == jnp.float32


# ---------------------------------------------------------------- what the energy rewards

def test_two_pixels_by_hand_and_symmetric():
  """1x2 image: E = 2 k (1 - S_1 . S_2) / 2, the same with the pixels swapped."""
  logits = np.array([[[[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]]]], np.float32)
  image = np.array([[[[10.0, 20.0, 30.0], [13.0, 24.0, 30.0]]]], np.float32)
  valid = np.ones((1, 1, 2), bool)
  s = _softmax(logits[0, 0].astype(np.float64))
  k = math.exp(-25 / (2 * 5.0**2) - 1 / (2 * 2.0**2))
  expected = 2 * k * (1 - s[0] @ s[1]) / 2
  kernel = dict(radius=1, sigma_rgb=5.0, sigma_xy=2.0)
  got = losses.pairwise_loss(logits, image, valid, **kernel)
  np.testing.assert_allclose(got, [expected], rtol=1e-6)
  swapped = losses.pairwise_loss(logits[:, :, ::-1], image[:, :, ::-1], valid, **kernel)
  np.testing.assert_allclose(swapped, got, rtol=1e-6)


def test_symmetric_kernel_flips_and_transposes_change_nothing():
  """k(i, j) = k(j, i) and the xy part is isotropic: mirroring or transposing the image, or
  relabelling the classes, leaves the energy unchanged (and maps the gradient along)."""
  logits, image, valid = _random(3, h=6, w=6)
  logits = logits.astype(np.float32)
  value = jax.jit(lambda z, im, v: losses.pairwise_loss(z, im, v, **KERNEL))
  grad = jax.jit(jax.grad(lambda z, im, v: value(z, im, v).sum()))
  base, g = value(logits, image, valid), np.asarray(grad(logits, image, valid))
  for t in (lambda x: x[:, ::-1], lambda x: x[:, :, ::-1], lambda x: np.swapaxes(x, 1, 2)):
    np.testing.assert_allclose(value(t(logits), t(image), t(valid)), base, rtol=1e-5)
    np.testing.assert_allclose(grad(t(logits), t(image), t(valid)), t(g), rtol=1e-4, atol=1e-7)
  perm = np.array([2, 0, 3, 1])
  np.testing.assert_allclose(value(logits[..., perm], image, valid), base, rtol=1e-5)


def test_zero_for_a_confident_constant_prediction_and_gini_for_a_soft_one():
  """What "zero for a constant prediction" can mean: sum_c S_ic (1 - S_jc) is 0 for equal one-hot
  predictions, so a confident constant map costs exactly 0 whatever the image. A constant *soft*
  prediction S costs (1 - |S|^2) sum_(i,j) k_ij / N: the Gini impurity, pushing towards
  confidence, which is the intent of a Potts energy, not a bug."""
  _, image, valid = _random(4, h=6, w=7)
  confident = np.zeros((2, 6, 7, 4), np.float32)
  confident[..., 2] = 1e4
  value = pairwise(confident, image, valid, **KERNEL)
  np.testing.assert_array_equal(value, 0.0)
  g = grad_of_sum(confident, image, valid, **KERNEL)
  np.testing.assert_array_equal(g, 0.0)

  soft = np.broadcast_to(np.array([0.5, -1.0, 2.0, 0.0], np.float32), confident.shape)
  s = _softmax(soft[0, 0, 0].astype(np.float64))
  ones = np.zeros((2, 6, 7, 2))   # two equal classes: E = sum k (1 - 1/2) / N
  kernel_mass = 2 * reference(ones, image, valid, **KERNEL)[0]
  np.testing.assert_allclose(pairwise(soft, image, valid, **KERNEL),
                             (1 - s @ s) * kernel_mass, rtol=1e-5)


def test_a_boundary_on_an_image_edge_is_free_and_off_the_edge_it_costs():
  """Two flat colour regions split at column 4; a one-hot prediction that follows the edge pays
  (almost) nothing, the same prediction shifted by two columns pays for every pair it cuts."""
  h, w = 6, 8
  image = np.zeros((1, h, w, 3), np.float32)
  image[:, :, 4:] = 200.0
  valid = np.ones((1, h, w), bool)

  def split_at(col):
    z = np.zeros((1, h, w, 3), np.float32)
    z[:, :, :col, 1] = 1e4
    z[:, :, col:, 2] = 1e4
    return z

  kernel = dict(radius=3, sigma_rgb=10.0, sigma_xy=3.0)
  on_edge = pairwise(split_at(4), image, valid, **kernel)
  off_edge = pairwise(split_at(2), image, valid, **kernel)
  assert on_edge[0] < 1e-30 and off_edge[0] > 0.5
  np.testing.assert_allclose(off_edge, reference(split_at(2), image, valid, **kernel)[0],
                             rtol=1e-5)


# ---------------------------------------------------------------- gate: padding, empty sets

@pytest.mark.parametrize("scale", [1, 2])
def test_padding_changes_no_value_and_no_gradient(scale):
  logits, image, valid = _random(5, h=4, w=6)
  valid[:] = True
  big_z = np.random.default_rng(6).standard_normal((2, 8, 9, 4))
  big_image = np.random.default_rng(7).uniform(0, 255, (2, 8, 9, 3))
  big_z[:, 4:, :, 0], big_z[:, :, 6:, 1] = np.nan, np.inf
  big_image[:, 5:] = np.nan
  big_valid = np.zeros((2, 8, 9), bool)
  big_z[:, :4, :6], big_image[:, :4, :6], big_valid[:, :4, :6] = logits, image, valid
  kernel = dict(KERNEL, scale=scale)
  value = jax.jit(lambda z, im, v: losses.pairwise_loss(z, im, v, **kernel))
  grad = jax.jit(jax.grad(lambda z, im, v: value(z, im, v).sum()))
  np.testing.assert_allclose(value(big_z.astype(np.float32), big_image, big_valid),
                             value(logits.astype(np.float32), image, valid), rtol=1e-6)
  g_big = np.asarray(grad(big_z.astype(np.float32), big_image, big_valid))
  g = np.asarray(grad(logits.astype(np.float32), image, valid))
  np.testing.assert_allclose(g_big[:, :4, :6], g, rtol=1e-5, atol=1e-9)
  assert np.all(g_big[:, 4:] == 0) and np.all(g_big[:, :, 6:] == 0)


def test_empty_images_and_extreme_logits():
  logits, image, valid = _random(8, b=3)
  valid[1] = False                       # all padding
  valid[2] = False
  valid[2, 3, 3] = True                  # one pixel, no pair
  value = pairwise(logits.astype(np.float32), image, valid, **KERNEL)
  np.testing.assert_array_equal(value[1:], 0.0)
  assert value[0] > 0
  for dtype in (jnp.float32, jnp.bfloat16):
    extreme = jnp.asarray(1e4 * np.sign(logits), dtype)
    f = lambda z: losses.pairwise_loss(z, image, valid, **KERNEL).sum()
    v, g = jax.jit(jax.value_and_grad(f))(extreme)
    assert np.isfinite(v) and g.dtype == dtype
    assert np.all(np.isfinite(np.asarray(g, np.float32)))
    assert np.all(np.asarray(g[1:], np.float32) == 0)


def test_bad_input_is_loud():
  logits, image, valid = _random(9)
  with pytest.raises(ValueError, match="image must be"):
    losses.pairwise_loss(logits, image[..., :2], valid, **KERNEL)
  with pytest.raises(ValueError, match="valid must be"):
    losses.pairwise_loss(logits, image, valid[:, 1:], **KERNEL)
  with pytest.raises(ValueError, match="radius"):
    losses.pairwise_loss(logits, image, valid, **dict(KERNEL, radius=0))
  with pytest.raises(ValueError, match="scale"):
    losses.pairwise_loss(logits, image, valid, **dict(KERNEL, scale=1.5))
  with pytest.raises(ValueError, match="sigmas"):
    losses.pairwise_loss(logits, image, valid, **dict(KERNEL, sigma_rgb=0.0))


# ---------------------------------------------------------------- 8 devices

def test_batch_sharded_over_eight_devices_equals_one_device():
  devices = jax.devices()
  assert len(devices) == 8
  logits, image, valid = _random(10, b=16, h=12, w=10, c=21)
  logits = logits.astype(np.float32)
  kernel = dict(KERNEL, scale=2)
  f = jax.jit(jax.value_and_grad(
      lambda z, im, v: losses.pairwise_loss(z, im, v, **kernel).mean()))
  one = jax.device_put((logits, image, valid), devices[0])
  value_1, grad_1 = f(*one)
  sharding = NamedSharding(Mesh(np.array(devices), ("data",)), P("data"))
  value_8, grad_8 = f(*jax.device_put((logits, image, valid), sharding))
  assert grad_8.sharding.is_equivalent_to(sharding, grad_8.ndim)
  np.testing.assert_allclose(value_8, value_1, rtol=1e-6)
  # Tiny gradient entries come out of R_i - S_i . R_i: compare them at the gradient's scale.
  np.testing.assert_allclose(grad_8, grad_1, rtol=1e-5, atol=1e-5 * np.abs(grad_1).max())
