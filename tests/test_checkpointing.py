"""checkpointing.py: bit-exact round trip with shardings, keep-N; a killed save leaves no trace."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pointseg_jax import checkpointing
from pointseg_jax import parallel


def _state(mesh, value=0.0):
  params = {"conv": {"kernel": jnp.arange(12, dtype=jnp.float32).reshape(3, 4) / 7 + value,
                     "bias": jnp.full((4,), value, jnp.float32)}}
  opt_state = optax.sgd(0.1, momentum=0.9).init(params)
  state = {"step": jnp.int32(value), "params": params, "opt_state": opt_state,
           "rng": jax.random.key_data(jax.random.key(3))}
  return parallel.replicate(state, mesh)


def _assert_same(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_round_trip_is_bit_exact_and_keeps_shardings(tmp_path):
  mesh = parallel.make_mesh()
  state = _state(mesh, 1.5)
  with checkpointing.Checkpointer(tmp_path / "ckpt", max_to_keep=2) as ckpt:
    ckpt.save(7, state)
    ckpt.wait()
    assert ckpt.latest_step() == 7
    restored = ckpt.restore(_state(mesh))   # a fresh state gives structure and shardings
  _assert_same(restored, state)
  assert restored["params"]["conv"]["kernel"].sharding.is_equivalent_to(
      parallel.replicated(mesh), 2)
  assert isinstance(restored["opt_state"][0], optax.TraceState)   # namedtuples survive


def test_keeps_the_last_n(tmp_path):
  mesh = parallel.make_mesh()
  with checkpointing.Checkpointer(tmp_path, max_to_keep=2) as ckpt:
    for step in (1, 2, 3, 4):
      ckpt.save(step, _state(mesh, step))
    ckpt.wait()
    assert ckpt.all_steps() == [3, 4]
    _assert_same(ckpt.restore(_state(mesh), 3), _state(mesh, 3))


def test_an_interrupted_save_is_ignored_and_cleaned_up(tmp_path):
  mesh = parallel.make_mesh()
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    ckpt.save(2, _state(mesh, 2))
  # What a kill -9 during the save of step 4 leaves: orbax's temporary directory, never renamed.
  partial = tmp_path / "4.orbax-checkpoint-tmp"
  (partial / "default").mkdir(parents=True)
  (partial / "default" / "half_written").write_bytes(b"\0" * 10)
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() == 2
    _assert_same(ckpt.restore(_state(mesh)), _state(mesh, 2))
  assert not partial.exists()


def test_restore_without_checkpoint_is_a_clear_error(tmp_path):
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() is None
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
      ckpt.restore(_state(parallel.make_mesh()))
