"""Data parallelism: the pmap-style step body gives the same result on 8 devices through
jit(shard_map), on 8 devices through jax.pmap, and on 1 device (docs/parallel.md)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from pointseg_jax import parallel
from pointseg_jax import state as state_lib
from pointseg_jax import train
from pointseg_jax.models import FCN

# Each test compiles the train step for several device layouts (seconds): not in `make test-fast`.
pytestmark = pytest.mark.integration

TERMS = ("image", "point", "objectness", "pairwise")   # pairwise: issue 20, 1 vs 8 devices
B, H, W = 16, 32, 32


def fake_batch(seed=0, batch=B):
  """Random arrays shaped like the batch dict (docs/pipeline.md), a couple of clicks per image."""
  rng = np.random.default_rng(seed)
  sparse = np.full((batch, H, W), 255, np.int32)
  present = np.zeros((batch, 21), bool)
  present[:, 0] = True
  for i in range(batch):
    cls = rng.integers(1, 21)
    present[i, cls] = True
    y, x = rng.integers(0, H), rng.integers(0, W)
    sparse[i, y, x] = cls
  valid = np.ones((batch, H, W), bool)
  valid[::3, :, -5:] = False   # some padding
  sparse[~valid] = 255
  return {
      "image": rng.uniform(0, 255, (batch, H, W, 3)).astype(np.float32),
      "valid": valid,
      "present": present,
      "known": np.ones((batch, 21), bool),
      "sparse_labels": sparse,
      "sparse_weights": (sparse != 255).astype(np.float32),
      "objectness": rng.uniform(0.01, 0.99, (batch, H, W)).astype(np.float32),
  }


def make_setup(dtype="float32", weight_decay=5e-4, bias_lr_mult=2.0):
  assert jax.device_count() == 8, "tests/conftest.py sets 8 CPU devices"
  # dropout masks depend on the layout
  model = FCN(width=1 / 32, mode="same", dropout=0.0, dtype=jnp.dtype(dtype))
  opt = state_lib.OptimizerSpec(momentum=0.9, weight_decay=weight_decay, bias_lr_mult=bias_lr_mult,
                                accum_steps=1)
  init = jax.jit(functools.partial(state_lib.fresh_state, model, opt, 0))
  state = jax.device_get(init.lower().compile(state_lib.compiler_options(fast_compile=True))())
  hparams = {"learning_rate": np.float32(1e-4), "warmup_steps": np.float32(0),
             "weights": {t: np.float32(1.0) for t in TERMS}}
  body = functools.partial(train.train_step, model=model, terms=TERMS, opt=opt)
  return body, state, hparams


@pytest.fixture(scope="module")
def setup():
  return make_setup("float32")


FAST = state_lib.compiler_options(fast_compile=True)   # the same XLA options for all three paths


def run_shard_map(body, state, hparams, batches, devices):
  mesh = parallel.make_mesh(devices)
  step = parallel.data_parallel(body, mesh, in_specs=(P(), P("data"), P()), out_specs=(P(), P()),
                                compiler_options=FAST)
  state, hparams = parallel.replicate(state, mesh), parallel.replicate(hparams, mesh)
  for batch in batches:
    state, metrics = step(state, parallel.host_to_global(batch, mesh), hparams)
  return jax.device_get((state, metrics))


def run_pmap(body, state, hparams, batches):
  step = parallel.pmapped(body, in_axes=(None, 0, None), out_axes=(None, None))
  batches = [parallel.split_for_pmap(batch, 8) for batch in batches]
  step = step.lower(state, batches[0], hparams).compile(compiler_options=FAST)
  for batch in batches:
    state, metrics = step(state, batch, hparams)
  return jax.device_get((state, metrics))


def test_shard_map_pmap_and_one_device_give_the_same_steps(setup):
  body, state, hparams = setup
  batches = [fake_batch(0), fake_batch(1)]   # two steps: momentum carries over
  sharded = run_shard_map(body, state, hparams, batches, jax.devices())
  pmapped = run_pmap(body, state, hparams, batches)
  single = run_shard_map(body, state, hparams, batches, jax.devices()[:1])
  assert int(sharded[0]["step"]) == int(pmapped[0]["step"]) == int(single[0]["step"]) == 2
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), sharded[0]["params"],
                                       state["params"]))
  # Both steps changed the parameters (step 1 only the zero-initialised score_fr, step 2 all).
  assert all(m > 0 for m in moved)
  for other in (pmapped, single):
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=2e-6),
                 sharded, other)


def test_host_to_global_splits_the_leading_axis():
  mesh = parallel.make_mesh()
  x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
  g = parallel.host_to_global({"x": x}, mesh)["x"]
  assert g.shape == (16, 3)
  shards = sorted(g.addressable_shards, key=lambda s: s.index[0].start)
  assert len(shards) == 8
  np.testing.assert_array_equal(shards[3].data, x[6:8])


def test_batch_not_divisible_by_devices_is_a_clear_error():
  mesh = parallel.make_mesh()
  assert parallel.check_batch_size(16, mesh) == 16
  with pytest.raises(ValueError, match=r"config.train.batch_size=12 must be a positive multiple of "
                     r"the number of devices \(8.*--config.train.batch_size=16"):
    parallel.check_batch_size(12, mesh)
  with pytest.raises(ValueError, match="config.eval.batch_size=4"):
    parallel.check_batch_size(4, mesh, "config.eval.batch_size")
  with pytest.raises(ValueError, match="does not divide"):
    parallel.split_for_pmap({"x": np.zeros((12, 2))}, 8)



def test_one_and_eight_devices_agree_in_bfloat16():
  """bfloat16 parity, with a bound derived from what may differ. Each device's weight gradient is
  a bfloat16 matmul/conv over its 2 images (1 device: over 16), rounded once to bfloat16 (relative
  error <= u/2, u = 2^-8) before the float32 mean; biases are summed in float32 (layers.Conv). So
  for every leaf ||g8 - g1|| <= u/2 (mean_d ||g_d|| + ||g1||), where g_d is shard d's gradient
  (measured here by a 1-device step on that shard): cancellation between the shards is what makes
  this larger than u/2 ||g1||. Asserted with a factor 2 for the float32 sums' order; one SGD step
  without momentum history, decay or lr multipliers, so the step moves each param by -lr * g."""
  body, state, hparams = make_setup("bfloat16", weight_decay=0.0, bias_lr_mult=1.0)
  rng = np.random.default_rng(0)
  for name in ("score_fr",):   # non-zero scores: a zero score layer blocks every other gradient
    shape = state["params"][name]["kernel"].shape
    state["params"][name]["kernel"] = rng.normal(0, 0.1, shape).astype(np.float32)
  lr = float(hparams["learning_rate"])
  batch = fake_batch(0)

  def grads(devices, batches):
    out = []
    mesh = parallel.make_mesh(devices)
    step = parallel.data_parallel(body, mesh, in_specs=(P(), P("data"), P()),
                                  out_specs=(P(), P()), compiler_options=FAST)
    st, hp = parallel.replicate(state, mesh), parallel.replicate(hparams, mesh)
    for b in batches:
      new, _ = jax.device_get(step(st, parallel.host_to_global(b, mesh), hp))
      out.append(jax.tree.map(lambda a, b: (np.float64(b) - a) / lr, new["params"],
                              state["params"]))
    return out

  g8, = grads(jax.devices(), [batch])
  g1, = grads(jax.devices()[:1], [batch])
  shards = grads(jax.devices()[:1], [{k: v[2 * d:2 * d + 2] for k, v in batch.items()}
                                     for d in range(8)])
  u = 2.0 ** -8
  for path, a in jax.tree_util.tree_leaves_with_path(g8):
    b = _at(g1, path)
    spread = np.mean([np.linalg.norm(_at(g, path)) for g in shards]) + np.linalg.norm(b)
    assert np.linalg.norm(b) > 0, path
    assert np.linalg.norm(a - b) <= 2 * (u / 2) * spread, (path, np.linalg.norm(a - b) / spread)


def _at(tree, path):
  for key in path:
    tree = tree[key.key]
  return tree
