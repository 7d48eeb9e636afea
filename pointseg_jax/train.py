"""Training: the pure per-device train step and `train_and_evaluate`, read top to bottom.

Data flows one way: tf.data batch dict -> global jax.Arrays -> jitted data-parallel step (model +
the regime's losses) -> metrics, checkpoints, summary.json. Batch k of the pipeline is a pure
function of (seed, k) and the dropout key of step k is fold_in(rng, k), so a run killed at any
moment and restarted from its last checkpoint ends with the same parameters, bit for bit, as an
uninterrupted run (docs/training.md, "Resume, exactly").
"""
import functools
import time
from typing import Any, Iterator

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import PartitionSpec as P

from pointseg_jax import checkpointing
from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import files
from pointseg_jax import evaluate as evaluate_lib
from pointseg_jax import interrupt
from pointseg_jax import parallel
from pointseg_jax import progress as progress_lib
from pointseg_jax import run_lock
from pointseg_jax import run_setup
from pointseg_jax import state as state_lib
from pointseg_jax import supervision
from pointseg_jax import workdir as workdir_lib
from pointseg_jax.data import pipeline
from pointseg_jax.data import spec as spec_lib
from pointseg_jax.metric_writer import MetricWriter

AXIS = parallel.AXIS


# Indices of config_lib.LR_SCHEDULES (a traced int: every schedule shares one compiled step).
COSINE = config_lib.LR_SCHEDULES.index("cosine")
POLY = config_lib.LR_SCHEDULES.index("poly")
POLY_POWER = 0.9   # Caffe's "poly" lr policy as DeepLab used it (not in the paper)


class NonFiniteLossError(FloatingPointError):
  """The training loss or gradient became NaN/inf; the run stops, earlier checkpoints are kept."""


def hyperparams(optimizer_config, loss_weights) -> dict[str, Any]:
  """Traced step inputs: regimes (and lr schedules) that differ only in these share one compiled
  step. `optimizer.decay_steps` is the resolved one (config_lib.with_decay_length)."""
  weights = dict(loss_weights)
  schedule = optimizer_config.get("schedule", "constant")
  return {"learning_rate": np.float32(optimizer_config.learning_rate),
          "warmup_steps": np.float32(optimizer_config.get("warmup_steps", 0)),
          "schedule": np.int32(config_lib.LR_SCHEDULES.index(schedule)),
          "decay_steps": np.float32(optimizer_config.get("decay_steps", 0)),
          "weights": {t: np.float32(weights[t]) for t in supervision.active_terms(weights)}}


def learning_rate(hparams, step):
  """The lr of the update at 0-based `step`.

  The paper's is fixed. Optional (not in the paper): a linear ramp over the first `warmup_steps`
  updates (update n = step + 1 gets n / warmup of the lr), then for schedule 'cosine' / 'poly' a
  decay to 0 over steps warmup .. decay_steps: with t = (step - warmup) / (decay_steps - warmup)
  clipped to [0, 1], the factor is (1 + cos(pi t)) / 2 (optax.cosine_decay_schedule) or
  (1 - t)^0.9 (Caffe's "poly", DeepLab's power). hparams without a 'schedule' (older callers):
  constant.
  """
  warmup = hparams["warmup_steps"]
  ramp = jnp.minimum(1.0, (step + 1).astype(jnp.float32) / jnp.maximum(warmup, 1.0))
  lr = hparams["learning_rate"] * jnp.where(warmup > 0, ramp, 1.0)
  if "schedule" not in hparams:
    return lr
  kind = hparams["schedule"]
  length = jnp.maximum(hparams["decay_steps"] - warmup, 1.0)
  t = jnp.clip((step.astype(jnp.float32) - warmup) / length, 0.0, 1.0)
  cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * t))
  poly = (1.0 - t) ** POLY_POWER
  decay = jnp.where(kind == COSINE, cosine, jnp.where(kind == POLY, poly, 1.0))
  return lr * decay


def train_step(state, batch, hparams, *, model, terms, opt: state_lib.OptimizerSpec,
               loss_options: supervision.LossOptions = supervision.LossOptions()):
  """One step on this device's shard of the batch; gradients averaged over 'data'.

  The total loss is the weighted sum of the regime's per-image terms (supervision.py), averaged
  over the images (every device holds the same number, so the pmean of the per-device means is the
  global mean). Dropout key = fold_in(fold_in(rng, step), device index): a function of
  (seed, step) only.
  """
  key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
  key = jax.random.fold_in(key, lax.axis_index(AXIS))

  def loss_fn(params):
    logits = model.apply({"params": params}, batch["image"], train=True, rngs={"dropout": key})
    per_term = supervision.loss_terms(logits, batch, terms, loss_options)
    return supervision.total_loss(per_term, hparams["weights"]).mean(), per_term

  (loss, per_term), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
  grads = lax.pmean(grads, AXIS)
  lr = learning_rate(hparams, state["step"])
  tx = state_lib.make_optimizer(lr, opt)
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  step_metrics = {"train/loss": loss, **{f"train/{t}": v.mean() for t, v in per_term.items()}}
  step_metrics = lax.pmean(step_metrics, AXIS)
  step_metrics["train/grad_norm"] = optax.global_norm(grads)
  step_metrics["train/learning_rate"] = lr
  new_state = dict(state, step=state["step"] + 1, params=params, opt_state=opt_state)
  return new_state, step_metrics


@functools.lru_cache(maxsize=64)
def compiled_train_step(model, terms, opt: state_lib.OptimizerSpec,
                        loss_options: supervision.LossOptions, mesh, fast_compile=False):
  """jit(shard_map(train_step)), cached so runs with equal static parts share the compilation."""
  body = functools.partial(train_step, model=model, terms=terms, opt=opt,
                           loss_options=loss_options)
  return parallel.data_parallel(body, mesh, in_specs=(P(), P(AXIS), P()),
                                out_specs=(P(), P()), donate_argnums=(0,),
                                compiler_options=state_lib.compiler_options(fast_compile))


def train_batches(spec: spec_lib.DataSpec, local_batch, seed, start_step,
                  fields) -> Iterator[dict]:
  """This host's train batches from `start_step` on, only the fields the step reads."""
  it = pipeline.make_dataset(spec, "train", batch_size=local_batch, train=True, seed=seed,
                             start_step=start_step)
  for batch in it:
    yield {k: batch[k] for k in fields}


def check_finite(step, values, last_checkpoint, ckpt_dir):
  """Stop before a NaN/inf step could be saved; say which checkpoint is the last good one."""
  bad = {k: v for k, v in values.items() if not np.isfinite(v)}
  if bad:
    kept = (f"the last good checkpoint is step {last_checkpoint} in {ckpt_dir} (nothing after it "
            "was saved)" if last_checkpoint is not None else "no checkpoint was saved")
    raise NonFiniteLossError(
        f"non-finite training values at step {step}: {bad}. Training stopped; {kept}. Lower "
        "config.optimizer.learning_rate or check the data, then rerun the same command.")


def train_and_evaluate(config, workdir) -> dict[str, Any]:
  """`_train_and_evaluate` while holding the workdir's lock: a second run on a live workdir is
  refused at once, a dead run's lock is taken over (run_lock.py; docs/training.md)."""
  with run_lock.WorkdirLock(workdir_lib.resolve(workdir), enabled=jax.process_index() == 0):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config, workdir) -> dict[str, Any]:
  """Train config's regime in workdir (resuming from its latest checkpoint), evaluate, summarise.

  Every check (config numbers, the workdir's saved config, batch sizes, data, init weights) runs
  before anything is written or compiled; config.json is written once they all passed. SIGTERM /
  SIGINT during training save the current step and raise errors.Interrupted (docs/training.md,
  "Preemption"). Returns the summary written to workdir/summary.json.
  """
  t_start = time.time()
  is_main = jax.process_index() == 0

  # --- Checks, before anything is written or compiled --------------------------------------------
  run = run_setup.open_run(config, workdir, mode="train")
  config, workdir, mesh, model, opt, spec = (run.config, run.workdir, run.mesh, run.model, run.opt,
                                             run.spec)
  local_batch = parallel.check_batch_size(config.train.batch_size, mesh)
  terms = supervision.active_terms(dict(config.loss.weights))
  loss_options = supervision.LossOptions.from_config(config.loss)
  fast_compile = bool(config.train.fast_compile)
  num_steps = int(config.train.num_steps)
  ckpt_dir = workdir / "checkpoints"
  last_checkpoint = checkpointing.latest_step(ckpt_dir)
  if last_checkpoint is not None and not (workdir / workdir_lib.CONFIG_FILE).is_file():
    raise errors.WorkdirError(
        f"{ckpt_dir} holds checkpoints but {workdir} has no {workdir_lib.CONFIG_FILE}, so they "
        "cannot be checked against this config: restore the run's config.json, or use a new "
        "--workdir")
  if last_checkpoint is not None and last_checkpoint > num_steps:
    raise errors.WorkdirError(
        f"the latest checkpoint in {ckpt_dir} is step {last_checkpoint}, past "
        f"config.train.num_steps={num_steps}: pass --config.train.num_steps={last_checkpoint} or "
        "more to resume it, or use a new --workdir")
  if last_checkpoint is None and config.model.get("init_from"):
    state_lib.check_init_from(config.model.init_from, model)
  run.prepare_data()
  if is_main:
    workdir_lib.write_config(config, workdir)
  show_progress = is_main and bool(config.train.progress_bar)

  def evaluate(params, should_stop=None):
    return evaluate_lib.evaluate(model, params, spec, mesh, split=config.eval.split,
                                 batch_size=config.eval.batch_size, fast_compile=fast_compile,
                                 progress_bar=show_progress, should_stop=should_stop)

  # --- State: fresh, or the latest checkpoint ----------------------------------------------------
  ckpt = checkpointing.Checkpointer(ckpt_dir, max_to_keep=config.train.keep_checkpoints,
                                    async_save=config.train.async_checkpoints)
  if last_checkpoint is None:
    state = state_lib.create_train_state(model, opt, config.seed, mesh,
                                         init_from=config.model.get("init_from"))
  else:
    state = ckpt.restore(state_lib.abstract_train_state(model, opt, mesh), last_checkpoint)
    logging.info("Resuming from the checkpoint of step %d in %s", last_checkpoint, ckpt.directory)
  start_step = int(jax.device_get(state["step"]))

  writer = MetricWriter(workdir, enabled=is_main, resume_step=start_step)
  step_fn = compiled_train_step(model, terms, opt, loss_options, mesh, fast_compile)
  hparams = parallel.replicate(hyperparams(config.optimizer, config.loss.weights), mesh)
  batches = train_batches(spec, local_batch, config.seed, start_step,
                          supervision.needed_fields(terms))

  # --- Train -------------------------------------------------------------------------------------
  # The host never waits for a step: metrics stay on the device until the next log, eval or
  # checkpoint step, then all of them come over in one transfer (docs/performance.md). They are
  # always fetched before a checkpoint: a NaN at step n stops the run before state n is saved.
  pending = []            # [(step, device metrics)] not yet fetched
  interval = []           # fetched host metrics since the last log line
  eval_result = None
  t_interval = time.time()

  def flush_pending():
    fetched = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, fetched):
      values = {k: float(v) for k, v in m.items()}
      check_finite(s, values, last_checkpoint, ckpt.directory)
      interval.append(values)
    pending.clear()

  if start_step < num_steps:
    logging.info("step %d: compiling the train step (the first step takes longer)", start_step)
  # The bar starts after the first step: its rate and ETA leave the compile time out.
  with interrupt.StopSignals() as stop, progress_lib.Progress(
      num_steps, enabled=show_progress, start_after_first=True) as progress:
    try:
      for step in range(start_step + 1, num_steps + 1):   # `step` = state step after this update
        batch = parallel.host_to_global(next(batches), mesh)
        state, step_metrics = step_fn(state, batch, hparams)
        pending.append((step, step_metrics))
        progress.advance_to(step)

        is_last = step == num_steps
        do_log = step % config.train.log_every == 0 or is_last
        do_eval = step % config.train.eval_every == 0 or is_last
        do_ckpt = step % config.train.checkpoint_every == 0 or is_last
        if do_log or do_eval or do_ckpt:
          flush_pending()
        if do_log:
          dt = time.time() - t_interval
          scalars = {k: float(np.mean([m[k] for m in interval])) for k in interval[0]}
          scalars["train/steps_per_sec"] = len(interval) / max(dt, 1e-9)
          writer.write(step, scalars)
          progress.set_postfix(f"loss={scalars['train/loss']:.4f}")
          interval, t_interval = [], time.time()
        if do_ckpt:
          ckpt.save(step, state)
          last_checkpoint = step
        if stop.requested(step):
          break
        if do_eval:
          eval_result = evaluate(state["params"], stop.stopping)   # a signal cuts eval short
          writer.write(step, evaluate_lib.eval_scalars(eval_result))
          logging.info("step %d: eval mIoU %.4f", step, eval_result["eval/miou"])
          t_interval = time.time()   # keep eval time out of steps/s
    except interrupt.StopNow:
      pass
    finally:
      ckpt.wait()
    if stop.signum is not None:
      save_and_stop(state, ckpt, last_checkpoint, stop.signum, flush_pending, writer)

  # --- Summary -----------------------------------------------------------------------------------
  if eval_result is None:     # resumed a finished run: evaluate the final state again
    eval_result = evaluate(state["params"])
  ckpt.close()
  summary = {
      "step": int(jax.device_get(state["step"])),
      "regime": config.regime,
      "config_sha256": workdir_lib.config_sha256(config),
      "params_sha256": state_lib.params_sha256(state["params"]),
      **evaluate_lib.eval_json(eval_result),
      "wall_time_s": round(time.time() - t_start, 3),
      "resumed_from_step": start_step,
  }
  if is_main:   # the summary last: its presence marks a finished run
    evaluate_lib.write_confusion(workdir, eval_result, summary["step"], config.eval.split)
    files.write_json(workdir / "summary.json", summary)
    writer.close()
  return summary


def save_and_stop(state, ckpt, last_checkpoint, signum, flush_pending, writer):
  """SIGTERM / SIGINT: save the current step (unless just saved), then raise errors.Interrupted.

  The state is the one the last step returned (never a donated buffer); its metrics are checked
  first, so a NaN step is not saved.
  """
  flush_pending()
  step = int(jax.device_get(state["step"]))
  if step != last_checkpoint:
    ckpt.save(step, state)
  ckpt.close()
  writer.close()
  raise errors.Interrupted(f"interrupted at step {step}; checkpoint saved to {ckpt.directory}; "
                           "rerun the same command to resume", signum)
