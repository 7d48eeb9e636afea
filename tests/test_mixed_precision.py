"""Mixed precision (config.model.compute_dtype, docs/model.md "Compute dtype"): bfloat16
activations, float32 params / optimiser state / logits / losses.

Tolerances are derived from bfloat16's unit roundoff u = 2^-8 (8 significant bits): each conv
rounds its input, its kernel and its output (accumulated in float32) once, so a layer adds a
relative error of about u/2 * sqrt(3) with random sign; over the L layers between the image and the
logits the errors add like a random walk, sqrt(3 L) * u / 2 in relative rms. Every loss term is a
mean of per-pixel terms whose gradient in the logits has l1 norm <= 2 (softmax minus a one-hot, or
a renormalised sub-softmax minus the softmax), so |L_bf16 - L_f32| <= 2 max |z_bf16 - z_f32|.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import load_config
from pointseg_jax import errors
from pointseg_jax import parallel
from pointseg_jax import state as state_lib
from pointseg_jax import supervision
from pointseg_jax import train
from pointseg_jax.models import FCN
from pointseg_jax.models import init_params
from pointseg_jax.models import vgg16

U = 2.0 ** -8
TERMS = ("pixel", "image", "point", "objectness")
B, H, W = 4, 48, 48


def batch_and_params(model, seed=0):
  """A random batch and He-initialised params with non-zero score layers (zero-initialised score
  layers give all-zero logits, on which every dtype agrees trivially)."""
  rng = np.random.default_rng(seed)
  params = init_params(model, seed)
  for name in params:
    if name.startswith("score"):
      shape = params[name]["kernel"].shape
      params[name]["kernel"] = rng.normal(0, 0.3 / np.sqrt(shape[-2]), shape).astype(np.float32)
  labels = rng.integers(0, 21, (B, H, W)).astype(np.int32)
  sparse = np.full((B, H, W), 255, np.int32)
  sparse[:, 10, 20] = labels[:, 10, 20]
  present = np.zeros((B, 21), bool)
  present[:, 0] = True
  present[np.arange(B), labels[:, 10, 20]] = True
  batch = {"image": rng.uniform(0, 255, (B, H, W, 3)).astype(np.float32), "labels": labels,
           "valid": np.ones((B, H, W), bool), "present": present, "known": np.ones((B, 21), bool),
           "sparse_labels": sparse,
           "sparse_weights": (sparse != 255).astype(np.float32),
           "objectness": rng.uniform(0.01, 0.99, (B, H, W)).astype(np.float32)}
  return batch, params


@pytest.mark.parametrize("mode,variant", [("same", "8s"), ("caffe", "32s")])
def test_bfloat16_logits_and_losses_track_float32(mode, variant):
  f32 = FCN(width=1 / 16, mode=mode, variant=variant, dropout=0.0)
  bf16 = f32.clone(dtype=jnp.bfloat16)
  batch, params = batch_and_params(f32)
  z32 = np.asarray(jax.jit(f32.apply)({"params": params}, batch["image"]), np.float64)
  z16 = jax.jit(bf16.apply)({"params": params}, batch["image"])
  assert z16.dtype == jnp.float32                      # the model hands the losses float32
  z16 = np.asarray(z16, np.float64)
  layers = len(vgg16.CONV_NAMES) + 3                   # 13 convs, fc6, fc7, score_fr
  rel_rms = np.sqrt(np.mean((z16 - z32) ** 2) / np.mean(z32 ** 2))
  assert U / 8 < rel_rms < np.sqrt(3 * layers) * U / 2, rel_rms   # bf16 did run, within the walk
  loss32 = supervision.loss_terms(jnp.asarray(z32, jnp.float32), batch, TERMS)
  loss16 = supervision.loss_terms(jnp.asarray(z16, jnp.float32), batch, TERMS)
  bound = 2 * np.abs(z16 - z32).max()
  for term in TERMS:
    np.testing.assert_array_less(np.abs(np.asarray(loss16[term]) - np.asarray(loss32[term])),
                                 bound, err_msg=term)


def test_losses_are_computed_in_float32_from_bfloat16_logits():
  """Handed bfloat16 logits, the terms equal those of the same values in float32 (the one cast in
  supervision.loss_terms), not a bfloat16 softmax's."""
  batch, _ = batch_and_params(FCN(width=1 / 16, dropout=0.0))
  z = jnp.asarray(np.random.default_rng(1).normal(0, 3, (B, H, W, 21)), jnp.bfloat16)
  got = supervision.loss_terms(z, batch, TERMS)
  want = supervision.loss_terms(z.astype(jnp.float32), batch, TERMS)
  for term in TERMS:
    assert got[term].dtype == jnp.float32
    np.testing.assert_array_equal(got[term], want[term], err_msg=term)


def test_compute_dtype_config_reaches_the_model_and_bad_values_are_refused():
  assert load_config("point", "tiny").model.compute_dtype == "float32"
  assert load_config("point", "voc").model.compute_dtype == "bfloat16"
  config = load_config("point", "tiny")
  assert state_lib.make_model(config.model).dtype == jnp.float32
  config.model.compute_dtype = "bfloat16"
  assert state_lib.make_model(config.model).dtype == jnp.bfloat16
  del config.model["compute_dtype"]                    # config.json of an older run
  assert state_lib.make_model(config.model).dtype == jnp.float32
  for bad in ("float16", "bf16"):
    config.model.compute_dtype = bad
    with pytest.raises(errors.ConfigError, match=f"compute_dtype = '{bad}'"):
      state_lib.make_model(config.model)


@pytest.mark.integration
def test_tiny_bfloat16_run_trains_with_float32_state():
  """20 steps on one batch: the loss falls and stays finite; params and momenta stay float32 (so
  checkpoints do not change with the compute dtype)."""
  model = FCN(width=1 / 32, mode="same", dropout=0.0, dtype=jnp.bfloat16)
  opt = state_lib.OptimizerSpec(momentum=0.9, weight_decay=5e-4, bias_lr_mult=2.0)
  mesh = parallel.make_mesh(jax.devices()[:1])
  terms = ("image", "point", "objectness")
  state = jax.jit(functools.partial(state_lib.fresh_state, model, opt, 0))()
  step = train.compiled_train_step(model, terms, opt, supervision.LossOptions(), mesh, True)
  hparams = parallel.replicate({"learning_rate": np.float32(3e-3), "warmup_steps": np.float32(0),
                                "weights": {t: np.float32(1.0) for t in terms}}, mesh)
  batch, _ = batch_and_params(model)
  batch = parallel.host_to_global({k: batch[k] for k in supervision.needed_fields(terms)}, mesh)
  state = parallel.replicate(state, mesh)
  losses = []
  for _ in range(20):
    state, metrics = step(state, batch, hparams)
    losses.append(float(metrics["train/loss"]))
  assert np.isfinite(losses).all(), losses
  assert losses[-1] < 0.5 * losses[0], losses
  for leaf in jax.tree.leaves((state["params"], state["opt_state"])):
    assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
