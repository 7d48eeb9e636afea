"""One run's setup, shared by train, evaluate and predict (and the notebook through predict).

    run = run_setup.open_run(config, workdir, mode="train")     # or "eval" / "predict"
    run.model, run.opt, run.spec, run.mesh, run.config, run.workdir
    params, step = run.restore_params()                         # eval / predict

The order is the same for every mode: resolve the workdir -> the config (train: the given one,
checked against the workdir's config.json; eval/predict: the run's own config.json, or a given one
checked against it, workdir.run_config) -> numeric checks -> mesh and batch-size checks -> model,
optimiser and data spec. Every check runs here, before any data is built or anything compiled, so
bad input costs a second, not a compile (docs/errors.md).
"""
import dataclasses
import pathlib
from typing import Any

import jax
import ml_collections

from pointseg_jax import config_lib
from pointseg_jax import parallel
from pointseg_jax import state as state_lib
from pointseg_jax import workdir as workdir_lib
from pointseg_jax.data import spec as spec_lib
from pointseg_jax.data.prepare import prepare_spec
from pointseg_jax.models import FCN

MODES = ("train", "eval", "predict")


@dataclasses.dataclass(frozen=True)
class Run:
  """What train / evaluate / predict build from (config, workdir) before they do their own work."""
  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  mesh: Any
  model: FCN
  opt: state_lib.OptimizerSpec
  spec: spec_lib.DataSpec

  def restore_params(self, step=None):
    """(params, step) of the run's latest (or given) checkpoint, replicated over the mesh."""
    return state_lib.restore_params(self.workdir, self.model, self.opt, self.mesh, step)

  def prepare_data(self) -> None:
    """Build the dataset on first use (the embedded ones), or explain how to get it (VOC)."""
    prepare_spec(self.spec)


def open_run(config, workdir, *, mode: str) -> Run:
  """The checked setup of `mode` on `workdir`.

  train: `config` is required and must match the workdir's config.json if there is one; both
  batch sizes must divide over the devices. eval: `config` may be None (the run's config.json);
  the eval batch must divide. predict: the same config rule, on this host's first device only
  (drawing pictures never needs more), no batch check.
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  workdir = workdir_lib.resolve(workdir)
  if mode == "train":
    config = config_lib.with_expanded_paths(config)
    config_lib.validate(config)
    config = config_lib.with_decay_length(config)
    workdir_lib.check_matches(config, workdir)
  else:
    config = config_lib.with_expanded_paths(workdir_lib.run_config(workdir, config))
    config_lib.validate(config)
  mesh = parallel.make_mesh(jax.local_devices()[:1] if mode == "predict" else None)
  if mode == "train":
    parallel.check_batch_size(config.train.batch_size, mesh)
  if mode in ("train", "eval"):
    parallel.check_batch_size(config.eval.batch_size, mesh, "config.eval.batch_size")
  return Run(config=config, workdir=workdir, mesh=mesh, model=state_lib.make_model(config.model),
             opt=state_lib.OptimizerSpec.from_config(config.optimizer),
             spec=spec_lib.DataSpec.from_config(config.data))
