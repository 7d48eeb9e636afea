"""Data parallelism: a 1-D ('data',) mesh, host batches -> global arrays, and the step wrapper.

The design card asks for a pmapped step. In JAX 0.10 `jax.pmap` is in maintenance mode and is
itself built on `jit(shard_map)` (docs/parallel.md), so step bodies are written exactly like
pmapped ones -- per-device code that averages its gradients with `lax.pmean(grads, 'data')` -- and
run through `jax.jit(jax.shard_map(body, ...))` over a `Mesh(('data',))`: parameters and optimiser
state replicated (`P()`), batch split on its leading axis (`P('data')`). Multi-host: every process
feeds its own slice of the global batch via `jax.make_array_from_process_local_data`.
"""
import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from pointseg_jax import errors

AXIS = "data"


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh ('data',) over `devices` (default: every device of every process)."""
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), (AXIS,), devices=devices)


def num_shards(mesh) -> int:
  return mesh.shape[AXIS]


def check_batch_size(global_batch: int, mesh, field: str = "config.train.batch_size") -> int:
  """This process's share of a global batch; a clear error when it does not divide evenly."""
  n = num_shards(mesh)
  if global_batch <= 0 or global_batch % n:
    raise errors.ConfigError(
        f"{field}={global_batch} must be a positive multiple of the number of devices ({n}: "
        f"{jax.device_count()} device(s) over {jax.process_count()} process(es)); e.g. pass "
        f"--{field}={max(n, n * round(max(global_batch, 1) / n))}")
  return global_batch // jax.process_count()


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def replicate(tree, mesh):
  """Place a pytree (params, opt state, hyper-parameters) replicated on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def host_to_global(batch, mesh):
  """This process's numpy batch -> global jax.Arrays split over 'data' (leading axis).

  Single-process this is a device_put with the batch sharding; multi-process each host passes its
  local slice and JAX assembles the global array (docs/parallel.md).
  """
  sharding = batch_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def data_parallel(body, mesh, *, in_specs, out_specs, donate_argnums=(), compiler_options=None):
  """jit(shard_map(body)) over the ('data',) mesh: the pmap-style body runs once per device.

  in_specs / out_specs are PartitionSpecs per argument / output (P() replicated, P('data') split).
  check_vma=False gives pmap's semantics: with JAX's default check_vma=True, the gradient of a
  replicated (P()) input is already summed over devices when it leaves jax.grad, so the body's own
  lax.pmean would leave it N times too large (tests/test_parallel.py catches exactly that).
  """
  mapped = jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                         check_vma=False)
  return jax.jit(mapped, donate_argnums=donate_argnums, compiler_options=compiler_options)


def pmapped(body, *, in_axes, out_axes):
  """The same body under legacy `jax.pmap` (tests hold it equal to `data_parallel`).

  Inputs with in_axes=0 must carry a leading device axis: see `split_for_pmap`.
  """
  return jax.pmap(body, axis_name=AXIS, in_axes=in_axes, out_axes=out_axes)


def split_for_pmap(batch, num_devices: int):
  """[B, ...] host arrays -> [num_devices, B / num_devices, ...] for `pmapped`."""
  def split(x):
    x = np.asarray(x)
    if x.shape[0] % num_devices:
      raise ValueError(f"batch of {x.shape[0]} does not divide over {num_devices} devices")
    return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])
  return jax.tree.map(split, batch)
