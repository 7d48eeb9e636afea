"""Eq. 1-4 against hand-computed numbers, finite differences and the authors' conventions."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

from pointseg_jax import losses

E = math.e
# The two pixels of most hand cases (C = 3): p0 = [0, 1, 2], p1 = [1, 0, 0].
Z0 = 1 + E + E**2  # softmax partition function of p0
Z1 = E + 2  # ... of p1
TWO_PIXELS = np.array([[[[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]]]], np.float32)  # [1, 1, 2, 3]
ALL_VALID = np.ones((1, 1, 2), bool)


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _random_batch(seed, b=3, h=4, w=5, c=6, scale=2.0):
  """Logits and every label field for `b` random images (numpy)."""
  rng = np.random.default_rng(seed)
  present = rng.random((b, c)) < 0.4
  labels = rng.integers(0, c, (b, h, w))
  labels[rng.random((b, h, w)) < 0.2] = 255
  sparse = np.full((b, h, w), 255)
  clicks = rng.random((b, h, w)) < 0.15
  sparse[clicks] = rng.integers(1, c, clicks.sum())
  return dict(
      logits=(scale * rng.standard_normal((b, h, w, c))).astype(np.float32),
      labels=labels.astype(np.int32),
      valid=np.ones((b, h, w), bool),
      present=present,
      sparse_labels=sparse.astype(np.int32),
      sparse_weights=np.where(clicks, rng.uniform(0.1, 1.0, (b, h, w)), 0.0).astype(np.float32),
      objectness=rng.uniform(0.01, 0.99, (b, h, w)).astype(np.float32),
  )


@jax.jit
def _all_losses(logits, batch):
  """The four per-image terms stacked as [4, B] (authors' objectness: clicked pixels excluded)."""
  return jnp.stack([
      losses.pixel_loss(logits, batch["labels"], batch["valid"]),
      losses.image_level_loss(logits, batch["present"], batch["valid"]),
      losses.point_loss(logits, batch["sparse_labels"], batch["sparse_weights"]),
      losses.objectness_loss(logits, batch["objectness"], batch["valid"],
                             exclude=batch["sparse_labels"] != 255),
  ])


SHARDED_SHAPE = dict(b=16, h=6, w=7, c=21)
_grad_of_sum = jax.jit(jax.grad(lambda z, batch: _all_losses(z, batch).sum()))


# ---------------------------------------------------------------- hand-computed values

def test_pixel_loss_by_hand():
  labels = np.array([[[2, 0]]])
  got = losses.pixel_loss(TWO_PIXELS, labels, ALL_VALID)
  # -log S_2(p0) = log Z0 - 2, -log S_0(p1) = log Z1 - 1, mean over the 2 labelled pixels.
  expected = 0.5 * ((math.log(Z0) - 2) + (math.log(Z1) - 1))
  assert got.shape == (1,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, [expected], rtol=1e-6)
  np.testing.assert_allclose(jax.jit(losses.pixel_loss)(TWO_PIXELS, labels, ALL_VALID), got,
                             rtol=1e-6)
  np.testing.assert_allclose(expected, 0.4795253391882155, rtol=1e-12)
  # 255 and padding drop out of the sum and of the count.
  np.testing.assert_allclose(
      losses.pixel_loss(TWO_PIXELS, np.array([[[2, 255]]]), ALL_VALID), [math.log(Z0) - 2],
      rtol=1e-6)
  np.testing.assert_allclose(
      losses.pixel_loss(TWO_PIXELS, labels, np.array([[[False, True]]])), [math.log(Z1) - 1],
      rtol=1e-6)


def test_image_level_loss_by_hand():
  # S(p0) = [1, e, e^2] / Z0 = [.090, .245, .665]; S(p1) = [e, 1, 1] / Z1 = [.576, .212, .212]
  # => t_0 = p1, t_1 = p0, t_2 = p0.
  present = np.array([[False, False, True]])  # background is forced in: L = {0, 2}, L' = {1}
  got = losses.image_level_loss(TWO_PIXELS, present, ALL_VALID)
  expected = (0.5 * ((math.log(Z1) - 1) + (math.log(Z0) - 2))
              - math.log(1 - E / Z0))
  np.testing.assert_allclose(got, [expected], rtol=1e-6)
  np.testing.assert_allclose(expected, 0.7602032925896235, rtol=1e-12)
  np.testing.assert_allclose(jax.jit(losses.image_level_loss)(TWO_PIXELS, present, ALL_VALID),
                             got, rtol=1e-6)
  np.testing.assert_allclose(
      losses.image_level_loss(TWO_PIXELS, np.array([[True, False, True]]), ALL_VALID), got)


def test_image_level_loss_no_absent_class_and_only_background():
  # Every class present: L' is empty and contributes 0 (not NaN); |L| = 3.
  everything = losses.image_level_loss(TWO_PIXELS, np.ones((1, 3), bool), ALL_VALID)
  expected = ((math.log(Z1) - 1) + (math.log(Z0) - 1) + (math.log(Z0) - 2)) / 3
  np.testing.assert_allclose(everything, [expected], rtol=1e-6)
  # Nothing listed: L = {0}, L' = {1, 2}.
  nothing = losses.image_level_loss(TWO_PIXELS, np.zeros((1, 3), bool), ALL_VALID)
  expected = (math.log(Z1) - 1) + 0.5 * (-math.log(1 - E / Z0) - math.log(1 - E**2 / Z0))
  np.testing.assert_allclose(nothing, [expected], rtol=1e-6)
  # All 21 VOC classes present on a random image: finite, absent term 0.
  z = np.random.default_rng(0).standard_normal((1, 3, 3, 21)).astype(np.float32)
  value = losses.image_level_loss(z, np.ones((1, 21), bool), np.ones((1, 3, 3), bool))
  log_s = np.log(_softmax(z[0].reshape(9, 21)))
  np.testing.assert_allclose(value, [-log_s.max(0).mean()], rtol=1e-5)


def test_image_level_loss_unknown_class_is_neither_rewarded_nor_punished():
  """A class not asked (known False) leaves L' and its mean: issue 29's partial campaigns."""
  nothing_present = np.zeros((1, 3), bool)
  # Class 1 unknown: L = {0}, L' = {2} only (all known: L' = {1, 2}, the case above).
  got = losses.image_level_loss(TWO_PIXELS, nothing_present, ALL_VALID,
                                np.array([[True, False, True]]))
  np.testing.assert_allclose(got, [(math.log(Z1) - 1) - math.log(1 - E**2 / Z0)], rtol=1e-6)
  # Every object class unknown: only background's term is left.
  got = losses.image_level_loss(TWO_PIXELS, nothing_present, ALL_VALID, np.zeros((1, 3), bool))
  np.testing.assert_allclose(got, [math.log(Z1) - 1], rtol=1e-6)
  # A present class counts as known even where `known` says otherwise; all-known = known=None.
  present = np.array([[False, False, True]])
  np.testing.assert_allclose(
      losses.image_level_loss(TWO_PIXELS, present, ALL_VALID, np.array([[True, True, False]])),
      losses.image_level_loss(TWO_PIXELS, present, ALL_VALID), rtol=1e-7)
  # Flipping an unknown class's label (absent <-> present with it known) changes the loss; with
  # it unknown the loss is the same whatever its scores are at pixels no known class picks.
  z = np.array([[[[0.0, 0.0, 3.0], [2.0, 0.0, 0.0], [0.0, 4.0, 0.0]]]], np.float32)  # t_1 = p2
  valid = np.ones((1, 1, 3), bool)
  unknown_1 = np.array([[True, False, True]])
  base = losses.image_level_loss(z, nothing_present, valid, unknown_1)
  for v in (-5.0, 9.0):
    z2 = z.copy()
    z2[0, 0, 2, 1] = v          # p2 is nobody's t_c but class 1's
    np.testing.assert_allclose(losses.image_level_loss(z2, nothing_present, valid, unknown_1),
                               base, rtol=1e-6)
  g = np.asarray(jax.grad(lambda z: losses.image_level_loss(
      z, nothing_present, valid, unknown_1).sum())(z))
  assert not g[0, 0, 2].any() and g[0, 0, :2].any()
  with pytest.raises(ValueError, match="known must be"):
    losses.image_level_loss(TWO_PIXELS, present, ALL_VALID, np.ones((1, 4), bool))


def test_image_level_gradient_with_unknown_classes_matches_finite_differences():
  with jax.enable_x64():
    batch = _random_batch(4)
    known = np.random.default_rng(5).random(batch["present"].shape) < 0.5
    logits = jnp.asarray(batch["logits"], jnp.float64)
    weights = jnp.asarray([0.7, 1.3, 1.1])
    check_grads(lambda z: jnp.sum(weights * losses.image_level_loss(
        z, batch["present"], batch["valid"], known)), (logits,), order=1, modes=["rev"],
                eps=1e-5, atol=1e-7, rtol=1e-6)


def test_point_loss_by_hand():
  logits = np.array([[[[0, 1, 2], [1, 0, 0]], [[5, 5, 5], [0, 3, 0]]]], np.float32)
  labels = np.array([[[2, 255], [0, 1]]])
  # (0,1) has a weight but no label and (1,0) a label with weight 0: neither counts.
  weights = np.array([[[1.0, 7.0], [0.0, 0.5]]], np.float32)
  got = losses.point_loss(logits, labels, weights)
  expected = (1.0 * (math.log(Z0) - 2) + 0.5 * (math.log(2 + E**3) - 3)) / 1.5
  np.testing.assert_allclose(got, [expected], rtol=1e-6)
  np.testing.assert_allclose(jax.jit(losses.point_loss)(logits, labels, weights), got, rtol=1e-6)
  # Unit weights: alpha = 1/n. Rank weights 1/2^r and 1/2^(r-1) give the same loss.
  ones = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)
  np.testing.assert_allclose(
      losses.point_loss(logits, labels, ones),
      [0.5 * ((math.log(Z0) - 2) + (math.log(2 + E**3) - 3))], rtol=1e-6)
  np.testing.assert_allclose(losses.point_loss(logits, labels, weights / 2), got, rtol=1e-6)


def test_objectness_loss_by_hand():
  prob = np.array([[[0.8, 0.3]]], np.float32)
  got = losses.objectness_loss(TWO_PIXELS, prob, ALL_VALID)
  # -[P log(1 - S_0) + (1 - P) log S_0] with 1 - S_0 = (e + e^2)/Z0 at p0 and 2/Z1 at p1.
  expected = -0.5 * (0.8 * math.log((E + E**2) / Z0) + 0.2 * math.log(1 / Z0)
                     + 0.3 * math.log(2 / Z1) + 0.7 * math.log(E / Z1))
  np.testing.assert_allclose(got, [expected], rtol=1e-6)
  np.testing.assert_allclose(expected, 0.6002485870969347, rtol=1e-12)
  np.testing.assert_allclose(jax.jit(losses.objectness_loss)(TWO_PIXELS, prob, ALL_VALID), got,
                             rtol=1e-6)
  # Authors' form: clicked pixels excluded, normalised by the unclicked count.
  clicked = np.array([[[True, False]]])
  np.testing.assert_allclose(
      losses.objectness_loss(TWO_PIXELS, prob, ALL_VALID, exclude=clicked),
      [-(0.3 * math.log(2 / Z1) + 0.7 * math.log(E / Z1))], rtol=1e-6)


def test_objectness_uses_all_object_classes():
  """sum_{k in O} S_k = 1 - S_0 over every object class, whatever the image labels say."""
  z = np.array([[[[0.0, 2.0, -1.0, 3.0]]]], np.float32)
  prob = np.array([[[1.0]]], np.float32)  # the term is then -log(1 - S_0)
  s = np.exp([0.0, 2.0, -1.0, 3.0]) / np.exp([0.0, 2.0, -1.0, 3.0]).sum()
  np.testing.assert_allclose(losses.objectness_loss(z, prob, np.ones((1, 1, 1), bool)),
                             [-math.log(s[1] + s[2] + s[3])], rtol=1e-6)


# ---------------------------------------------------------------- gradients

def test_gradients_match_finite_differences():
  """All four terms at once in float64, each weighted differently so no error can cancel."""
  with jax.enable_x64():
    batch = _random_batch(1)
    batch["valid"][0, -1, :] = False  # some padding too
    batch["objectness"] = batch["objectness"].astype(np.float64)
    logits = jnp.asarray(batch["logits"], jnp.float64)
    assert _all_losses(logits, batch).dtype == jnp.float64
    weights = jnp.asarray(np.random.default_rng(2).uniform(0.5, 1.5, (4, 3)))
    check_grads(lambda z: jnp.sum(weights * _all_losses(z, batch)), (logits,), order=1,
                modes=["rev"], eps=1e-5, atol=1e-7, rtol=1e-6)


def test_image_level_gradient_only_at_selected_pixels_and_equals_caffe_backward():
  present = np.array([[False, False, True]])  # L = {0, 2} (|L| = 2), L' = {1}
  grad = np.asarray(jax.grad(
      lambda z: losses.image_level_loss(z, present, ALL_VALID).sum())(TWO_PIXELS))[0, 0]
  s0, s1 = _softmax(TWO_PIXELS[0, 0, 0]), _softmax(TWO_PIXELS[0, 0, 1])
  # Authors' backward (docs/losses.md, "The authors' loss layer", Eq. 2): at p0 class 2 (present, k = 1) and class 1 (absent).
  present_p0 = (s0 - np.eye(3)[2]) / 2
  absent_p0 = np.array([-s0[0] * s0[1] / (1 - s0[1]), s0[1], -s0[2] * s0[1] / (1 - s0[1])]) / 1
  # At p1 only background (present).
  present_p1 = (s1 - np.eye(3)[0]) / 2
  np.testing.assert_allclose(grad[0], present_p0 + absent_p0, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grad[1], present_p1, rtol=1e-5, atol=1e-7)


def test_image_level_ties_go_to_the_first_valid_pixel():
  z = np.tile(np.array([0.3, -1.0, 2.0], np.float32), (1, 2, 3, 1))  # 6 identical pixels
  present = np.array([[True, True, False]])

  def grads(valid):
    g = jax.grad(lambda z: losses.image_level_loss(z, present, valid).sum())(z)
    return np.abs(np.asarray(g)[0]).sum(-1)

  g = grads(np.ones((1, 2, 3), bool))
  assert g[0, 0] > 0 and np.count_nonzero(g) == 1
  valid = np.ones((1, 2, 3), bool)
  valid[0, 0, :2] = False  # padding comes first: the first *valid* pixel, (0, 2), is chosen
  g = grads(valid)
  assert g[0, 2] > 0 and np.count_nonzero(g) == 1


def test_argmax_gradient_is_sparse_on_a_random_image():
  z = np.random.default_rng(3).standard_normal((1, 6, 7, 5)).astype(np.float32)
  present = np.array([[True, False, True, False, False]])
  g = np.asarray(jax.grad(
      lambda z: losses.image_level_loss(z, present, np.ones((1, 6, 7), bool)).sum())(z))[0]
  s = _softmax(z[0].reshape(42, 5))
  chosen = set(np.argmax(s, axis=0).tolist())  # t_c for every class
  touched = set(np.flatnonzero(np.abs(g).reshape(42, 5).sum(-1)).tolist())
  assert touched == chosen


# ---------------------------------------------------------------- invariances

def test_padding_changes_no_value_and_no_gradient():
  real = _random_batch(4, b=2, h=2, w=3)
  padded = {k: v.copy() for k, v in _random_batch(5, b=2, h=4, w=5).items()}  # garbage around
  for k in real:
    if k != "present":
      padded[k][:, :2, :3] = real[k]
  padded["valid"][:] = False
  padded["valid"][:, :2, :3] = True
  padded["sparse_labels"][:, 2:, :] = 255  # the pipeline writes 255 on padding
  padded["sparse_labels"][:, :, 3:] = 255
  padded["present"] = real["present"]
  garbage = padded["logits"]
  garbage[:, 2:, :, :] = 1e30
  garbage[:, 3, :, 0] = np.nan
  garbage[:, :, 3:, :] = -np.inf
  padded["objectness"][:, 2:, :] = np.nan

  np.testing.assert_allclose(_all_losses(padded["logits"], padded),
                             _all_losses(real["logits"], real), rtol=1e-6)
  g_real = _grad_of_sum(real["logits"], real)
  g_pad = np.asarray(_grad_of_sum(padded["logits"], padded))
  np.testing.assert_allclose(g_pad[:, :2, :3], g_real, rtol=1e-5, atol=1e-8)
  assert np.all(g_pad[:, 2:] == 0) and np.all(g_pad[:, :, 3:] == 0)


def test_per_image_results_do_not_depend_on_the_rest_of_the_batch():
  batch = _random_batch(6, b=4)
  together = np.asarray(_all_losses(jnp.asarray(batch["logits"]), batch))
  for i in range(4):
    alone = {k: v[i:i + 1] for k, v in batch.items()}
    np.testing.assert_allclose(together[:, i:i + 1], _all_losses(alone["logits"], alone),
                               rtol=1e-6)
  other = _random_batch(7, b=4)
  mixed = {k: np.concatenate([batch[k][:2], other[k][2:]]) for k in batch}
  np.testing.assert_allclose(_all_losses(mixed["logits"], mixed)[:, :2], together[:, :2],
                             rtol=1e-6)


# ---------------------------------------------------------------- edge cases

@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_extreme_logits_give_finite_values_and_gradients(dtype):
  batch = _random_batch(9, **SHARDED_SHAPE)
  signs = np.sign(np.random.default_rng(10).standard_normal(batch["logits"].shape))
  logits = jnp.asarray(1e4 * signs, dtype)
  grad = _grad_of_sum(logits, batch)
  per_term = _all_losses(logits, batch)
  assert per_term.dtype == jnp.float32 and grad.dtype == dtype
  assert np.all(np.isfinite(per_term))
  assert np.all(np.isfinite(np.asarray(grad, np.float32)))


def test_absent_class_with_probability_one_is_finite_and_exact():
  """Caffe's unclamped -log(1 - S) is inf here; the stable form gives ~2e4."""
  z = np.array([[[[-1e4, 1e4, -1e4]]]], np.float32)
  one = np.ones((1, 1, 1), bool)
  value = losses.image_level_loss(z, np.zeros((1, 3), bool), one)
  # -log S_0 = 2e4; absent {1, 2}: -log(1 - S_1) = 2e4 - log 2, -log(1 - S_2) = 0.
  np.testing.assert_allclose(value, [2e4 + 0.5 * (2e4 - math.log(2))], rtol=1e-6)
  g = jax.grad(lambda z: losses.image_level_loss(z, np.zeros((1, 3), bool), one).sum())(z)
  assert np.all(np.isfinite(g))
  obj = losses.objectness_loss(z, np.full((1, 1, 1), 0.25, np.float32), one)
  # P log(1 - S_0) ~ 0; (1 - P) log S_0 = 0.75 * -2e4.
  np.testing.assert_allclose(obj, [0.75 * 2e4], rtol=1e-6)


def test_empty_sets_give_zero_and_zero_gradient():
  batch = _random_batch(11, b=2)
  batch["labels"][:] = 255
  batch["sparse_labels"][:] = 255
  batch["valid"][1] = False  # image 1 is all padding (e.g. an eval padding example)
  logits = jnp.asarray(batch["logits"])
  terms = np.asarray(_all_losses(logits, batch))
  assert np.all(np.isfinite(terms))
  np.testing.assert_array_equal(terms[0, :], 0.0)  # no labelled pixel
  np.testing.assert_array_equal(terms[2, :], 0.0)  # no click
  np.testing.assert_array_equal(terms[:, 1], 0.0)  # no valid pixel
  assert terms[1, 0] > 0 and terms[3, 0] > 0
  g = np.asarray(_grad_of_sum(logits, batch))
  assert np.all(np.isfinite(g)) and np.all(g[1] == 0)
  everything_excluded = losses.objectness_loss(
      logits, batch["objectness"], batch["valid"], exclude=np.ones_like(batch["valid"]))
  np.testing.assert_array_equal(everything_excluded, 0.0)


def test_all_pixels_padded_but_one():
  batch = _random_batch(12, b=1, h=3, w=3)
  batch["valid"][:] = False
  batch["valid"][0, 1, 2] = True
  batch["sparse_labels"][:] = 255
  batch["sparse_labels"][0, 1, 2] = 4
  batch["sparse_weights"][0, 1, 2] = 0.3
  batch["labels"][0, 1, 2] = 3
  single = {k: (v[:, 1:2, 2:3] if k != "present" else v) for k, v in batch.items()}
  np.testing.assert_allclose(_all_losses(batch["logits"], batch),
                             _all_losses(single["logits"], single), rtol=1e-6)
  s = _softmax(batch["logits"][0, 1, 2])
  np.testing.assert_allclose(losses.point_loss(batch["logits"], batch["sparse_labels"],
                                               batch["sparse_weights"]), [-math.log(s[4])],
                             rtol=1e-5)


def test_bad_input_is_loud():
  with pytest.raises(ValueError, match="labels must be"):
    losses.pixel_loss(TWO_PIXELS, np.zeros((1, 2, 1), np.int32), ALL_VALID)
  with pytest.raises(ValueError, match="present must be"):
    losses.image_level_loss(TWO_PIXELS, np.ones((1, 21), bool), ALL_VALID)
  with pytest.raises(ValueError, match="logits must be"):
    losses.point_loss(TWO_PIXELS[0], np.zeros((1, 2)), np.zeros((1, 2)))
  with pytest.raises(ValueError, match=r"\(o \+ 1\) / 257"):
    losses.objectness_loss(TWO_PIXELS, np.array([[[200, 3]]], np.uint8), ALL_VALID)
  # A class id outside [0, C) that is not 255 cannot raise under jit: it gives NaN, never a drop.
  assert np.isnan(losses.pixel_loss(TWO_PIXELS, np.array([[[7, 0]]]), ALL_VALID)[0])
  assert np.isnan(losses.point_loss(TWO_PIXELS, np.array([[[-1, 255]]]), np.ones((1, 1, 2)))[0])


def test_objectness_loss_works_however_its_arguments_arrive():
  """Issue 15: a map closed over by a jitted or differentiated function is a constant, not a
  tracer, but jnp ops on it are staged; the range check must not call float() on them."""
  prob = np.array([[[0.8, 0.3]]], np.float32)
  eager = losses.objectness_loss(TWO_PIXELS, prob, ALL_VALID)
  closed = lambda z, valid: losses.objectness_loss(z, prob, valid).sum()
  np.testing.assert_allclose(jax.jit(closed)(TWO_PIXELS, ALL_VALID), eager.sum(), rtol=1e-6)
  g = jax.grad(closed)(TWO_PIXELS, ALL_VALID)
  np.testing.assert_allclose(jax.jit(jax.grad(closed))(TWO_PIXELS, ALL_VALID), g, rtol=1e-6)
  both_closed = jax.jit(lambda z: losses.objectness_loss(z, prob, ALL_VALID).sum())
  np.testing.assert_allclose(both_closed(TWO_PIXELS), eager.sum(), rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(lambda z: closed(z[None], ALL_VALID))(TWO_PIXELS),
                             eager, rtol=1e-6)
  # A bad map is still caught whenever its values are known, also at trace time under jit ...
  raw = np.array([[[200, 3]]], np.uint8)
  with pytest.raises(ValueError, match=r"\(o \+ 1\) / 257"):
    jax.jit(lambda z: losses.objectness_loss(z, raw, ALL_VALID))(TWO_PIXELS)
  with pytest.raises(ValueError, match="got values in"):
    losses.objectness_loss(TWO_PIXELS, np.array([[[0.5, np.nan]]], np.float32), ALL_VALID)
  # ... and a traced one is not checked (jit cannot raise on values): no error, a finite number.
  assert np.isfinite(jax.jit(losses.objectness_loss)(TWO_PIXELS, raw, ALL_VALID)).all()


# ---------------------------------------------------------------- 8 devices

def test_batch_loss_sharded_over_eight_devices_equals_one_device():
  devices = jax.devices()
  assert len(devices) == 8
  batch = _random_batch(13, **SHARDED_SHAPE)
  batch["valid"][::3, -2:, :] = False
  b = SHARDED_SHAPE["b"]

  def batch_loss(logits, batch):
    return _all_losses(logits, batch).sum(0).mean()

  value_1 = _all_losses(batch["logits"], batch).sum(0).mean()
  grad_1 = _grad_of_sum(batch["logits"], batch) / b

  mesh = Mesh(np.array(devices), ("data",))
  sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
  value_8 = _all_losses(sharded["logits"], sharded).sum(0).mean()
  grad_8 = _grad_of_sum(sharded["logits"], sharded)
  assert grad_8.sharding.spec == P("data")  # the computation really ran split over 8 devices
  grad_8 = grad_8 / b
  np.testing.assert_allclose(value_8, value_1, rtol=1e-6)
  np.testing.assert_allclose(grad_8, grad_1, rtol=1e-5, atol=1e-9)

  # The pmap-style body: per-device mean, then lax.pmean over the 'data' axis.
  def body(logits, batch):
    value, grad = jax.value_and_grad(batch_loss)(logits, batch)
    return jax.lax.pmean(value, "data"), grad / 8  # grad of the global mean

  stepped = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P("data"), P("data")),
                                  out_specs=(P(), P("data"))))
  value_sm, grad_sm = stepped(sharded["logits"], sharded)
  np.testing.assert_allclose(value_sm, value_1, rtol=1e-6)
  np.testing.assert_allclose(grad_sm, grad_1, rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------- fast forms = plain formulas

def _reference_losses(logits, batch):
  """The four terms written the plain way (log_softmax + gather, jnp.argmax, two logsumexps):
  losses.py computes them in forms that XLA runs faster, which must not change a value or a
  gradient."""
  z = logits.astype(jnp.float32)

  def nll(mask, labels):
    zm = jnp.where(mask[..., None], z, 0.0)
    lp = jax.nn.log_softmax(zm, axis=-1)
    picked = jnp.take_along_axis(lp, jnp.where(mask, labels, 0)[..., None], axis=-1)[..., 0]
    return jnp.where(mask, -picked, 0.0)

  mask = batch["valid"] & (batch["labels"] != 255)
  pixel = nll(mask, batch["labels"]).sum((1, 2)) / jnp.maximum(mask.sum((1, 2)), 1)
  mask = (batch["sparse_labels"] != 255) & (batch["sparse_weights"] > 0)
  w = jnp.where(mask, batch["sparse_weights"], 0.0)
  point = (w * nll(mask, batch["sparse_labels"])).sum((1, 2)) / jnp.maximum(w.sum((1, 2)), 1e-30)

  b, h, wd, c = z.shape
  zf = jnp.where(batch["valid"][..., None], z, 0.0).reshape(b, h * wd, c)
  scores = jnp.where(batch["valid"].reshape(b, -1)[..., None],
                     jax.lax.stop_gradient(jax.nn.log_softmax(zf, axis=-1)), -jnp.inf)
  z_at_t = jnp.take_along_axis(zf, jnp.argmax(scores, axis=1)[:, :, None], axis=1)
  lse = jax.nn.logsumexp(z_at_t, axis=-1)
  log_s = jnp.diagonal(z_at_t, axis1=1, axis2=2) - lse
  log_not = jax.nn.logsumexp(jnp.where(jnp.eye(c, dtype=bool), -jnp.inf, z_at_t), axis=-1) - lse
  in_l = batch["present"] | (jnp.arange(c) == 0)
  image = ((jnp.where(in_l, -log_s, 0).sum(-1) / in_l.sum(-1))
           + jnp.where(in_l, 0, -log_not).sum(-1) / jnp.maximum((~in_l).sum(-1), 1))

  mask = batch["valid"] & (batch["sparse_labels"] == 255)
  zm = jnp.where(mask[..., None], z, 0.0)
  total = jax.nn.logsumexp(zm, axis=-1)
  p = jnp.where(mask, batch["objectness"], 0.5)
  obj_nll = -(p * (jax.nn.logsumexp(zm[..., 1:], axis=-1) - total) + (1 - p) * (zm[..., 0] - total))
  objectness = jnp.where(mask, obj_nll, 0).sum((1, 2)) / jnp.maximum(mask.sum((1, 2)), 1)
  return jnp.stack([pixel, image, point, objectness])


@jax.jit
def _term_grads(logits, batch):
  per_term = lambda f: jax.jacrev(lambda z: f(z, batch).sum(axis=1))(logits)
  return per_term(_all_losses), per_term(_reference_losses)


@pytest.mark.parametrize("seed,scale", [(21, 2.0), (22, 8.0), (23, 0.01)])
def test_fast_forms_equal_the_plain_formulas_in_value_and_gradient(seed, scale):
  batch = _random_batch(seed, b=3, h=9, w=7, c=21, scale=scale)
  batch["valid"][1, -3:, :] = False
  logits = jnp.asarray(batch["logits"])
  np.testing.assert_allclose(_all_losses(logits, batch), _reference_losses(logits, batch),
                             rtol=2e-6, atol=1e-7)
  got, want = _term_grads(logits, batch)   # [4 terms, B, H, W, C] each
  for term in range(4):
    np.testing.assert_allclose(got[term], want[term], rtol=0,
                               atol=2e-6 * float(np.abs(want[term]).max()), err_msg=f"term {term}")


def test_image_level_argmax_of_a_nan_logit_stays_loud():
  z = np.array([[[[0.0, 1.0, 2.0], [np.nan, 0.0, 0.0]]]], np.float32)
  assert np.isnan(losses.image_level_loss(z, np.zeros((1, 3), bool), ALL_VALID)[0])
