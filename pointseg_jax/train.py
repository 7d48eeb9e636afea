"""Training: the train state, pure per-device train/eval steps, and `train_and_evaluate`.

Data flows one way (DESIGN.md §1): tf.data batch dict -> global jax.Arrays -> jitted data-parallel
step (model + losses of the config's regime) -> metrics, checkpoints, summary.json.

The state is a plain dict pytree {'step', 'params', 'opt_state', 'rng'}: everything a resumed run
needs. Batch k of the pipeline is a pure function of (seed, k) and the dropout key of step k is
fold_in(rng, k), so a run killed at any moment and restarted from its last checkpoint ends with the
same parameters, bit for bit, as an uninterrupted run.
"""
import functools
import hashlib
import json
import logging
import math
import pathlib
import time
from typing import Any, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from jax import lax
from jax.sharding import PartitionSpec as P

from pointseg_jax import CLASS_NAMES
from pointseg_jax import checkpointing
from pointseg_jax import metrics as metrics_lib
from pointseg_jax import parallel
from pointseg_jax import supervision

AXIS = parallel.AXIS
EVAL_FIELDS = ("image", "labels", "valid", "example_mask")


class NonFiniteLossError(FloatingPointError):
  """The training loss or gradient became NaN/inf; the run stops, earlier checkpoints are kept."""


# ----------------------------------------------------------------------------------------------
# Model, optimiser, state.
# ----------------------------------------------------------------------------------------------

def make_model(config):
  """The FCN of config.model (Flax lives in pointseg_jax.models only)."""
  from pointseg_jax.models import FCN  # pylint: disable=g-import-not-at-top
  m = config.model
  return FCN(num_classes=m.num_classes, variant=m.variant, width=float(m.width), mode=m.mode,
             dropout=float(m.dropout))


class OptimizerSpec(NamedTuple):
  """The static (compile-time) part of the optimiser; the learning rate is a traced input."""
  momentum: float = 0.9
  weight_decay: float = 5e-4
  bias_lr_mult: float = 2.0
  accum_steps: int = 1
  clip_grad_norm: float = 0.0   # > 0: clip the global gradient norm first (not in the paper)
  name: str = "sgd"             # 'sgd' (paper) | 'adam' (same lr multipliers and L2 decay)

  @classmethod
  def from_config(cls, config) -> "OptimizerSpec":
    o = config.optimizer
    if int(o.accum_steps) < 1:
      raise ValueError(f"config.optimizer.accum_steps must be >= 1; got {o.accum_steps}")
    name = o.get("name", "sgd")
    if name not in ("sgd", "adam"):
      raise ValueError(f"config.optimizer.name must be 'sgd' or 'adam'; got {name!r}")
    return cls(float(o.momentum), float(o.weight_decay), float(o.bias_lr_mult),
               int(o.accum_steps), float(o.get("clip_grad_norm", 0.0)), name)


def _param_labels(params):
  """'bias' for every bias leaf, 'weight' otherwise (Caffe's lr_mult / decay_mult 1/2 and 1/0)."""
  def label(path, _):
    return "bias" if getattr(path[-1], "key", None) == "bias" else "weight"
  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(learning_rate, spec: OptimizerSpec) -> optax.GradientTransformation:
  """Caffe SGD (paper §4.1, original_code.md §3.4) from optax pieces.

  Weights: g + wd * w (weight decay added to the gradient), momentum, lr. Biases: momentum,
  bias_lr_mult * lr, no decay. Caffe's v = m v + lr g; w -= v equals optax's trace-then-scale for a
  fixed lr. accum_steps > 1 averages the gradients of that many batches per update
  (optax.MultiSteps).
  clip_grad_norm > 0 clips the gradient's global norm before all of it (off in the paper's setup).
  """
  def base(lr):
    if spec.name == "adam":
      return optax.adam(lr, b1=spec.momentum)
    return optax.sgd(lr, momentum=spec.momentum)

  tx = optax.multi_transform({
      "weight": optax.chain(optax.add_decayed_weights(spec.weight_decay), base(learning_rate)),
      "bias": base(learning_rate * spec.bias_lr_mult),
  }, _param_labels)
  if spec.clip_grad_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(spec.clip_grad_norm), tx)
  if spec.accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=spec.accum_steps)
  return tx


def hyperparams(config) -> dict[str, Any]:
  """Traced step inputs: regimes that differ only in these share one compiled step."""
  weights = dict(config.loss.weights)
  return {"learning_rate": np.float32(config.optimizer.learning_rate),
          "warmup_steps": np.float32(config.optimizer.get("warmup_steps", 0)),
          "weights": {t: np.float32(weights[t]) for t in supervision.active_terms(weights)}}


def learning_rate(hparams, step):
  """The fixed lr (paper), ramped up linearly over the first `warmup_steps` steps when > 0."""
  warmup = hparams["warmup_steps"]
  ramp = jnp.minimum(1.0, (step + 1).astype(jnp.float32) / jnp.maximum(warmup, 1.0))
  return hparams["learning_rate"] * jnp.where(warmup > 0, ramp, 1.0)


# XLA:CPU spends ~1 s optimising each random initialiser (30+ s for the FCN's init on 2 busy
# cores); unoptimised it compiles ~10x faster and still runs in milliseconds. Bits differ from an
# optimised compile, but every run compiles init the same way, so runs stay reproducible.
_FAST_COMPILE_CPU = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def fresh_state(model, opt: OptimizerSpec, seed: int):
  """The initial train state (pure; jit or eval_shape it). Parameter shapes do not depend on the
  image size, so init runs on a 32x32 image (the 'same' mode minimum)."""
  init_key, dropout_key = jax.random.split(jax.random.key(seed))
  params = model.init(init_key, jnp.zeros((1, 32, 32, 3), jnp.float32), train=False)["params"]
  return {"step": jnp.zeros((), jnp.int32), "params": params,
          "opt_state": make_optimizer(0.0, opt).init(params),
          "rng": jax.random.key_data(dropout_key)}


def _init_fn(config, model):
  """fresh_state for config's optimiser and seed: the one initialiser both builders below use."""
  return functools.partial(fresh_state, model, OptimizerSpec.from_config(config), int(config.seed))


def create_train_state(config, model, mesh):
  """Fresh state replicated over the mesh; params from config.model.init_from when set."""
  init = jax.jit(_init_fn(config, model), out_shardings=parallel.replicated(mesh))
  state = init.lower().compile(compiler_options=compiler_options(fast_compile=True))()
  if config.model.get("init_from"):
    state["params"] = parallel.replicate(
        load_init_params(config.model.init_from, state["params"]), mesh)
  return state


def abstract_train_state(config, model, mesh):
  """Shapes, dtypes and (replicated) shardings of the state: the restore target, no compute."""
  shapes = jax.eval_shape(_init_fn(config, model))
  sharding = parallel.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def load_init_params(path, params):
  """ImageNet-initialised FCN params from a converted .npz, or a clear error on how to get one."""
  from pointseg_jax.models import weights  # pylint: disable=g-import-not-at-top
  if not pathlib.Path(path).exists():
    raise FileNotFoundError(
        f"config.model.init_from={path!r} does not exist. The voc configs start from ImageNet "
        "VGG16 weights converted once with\n"
        f"  python -m pointseg_jax.models.weights convert --from keras|torchvision|npz "
        f"<VGG16 weights file> --out={path}\n"
        "(see docs/model.md for where to get VGG16 weights), or train from scratch with "
        "--config.model.init_from=''.")
  return weights.load_params(path, jax.eval_shape(lambda: params))


def params_sha256(params) -> str:
  """sha256 over every parameter's bytes, leaves in flattened-path order (summary.json)."""
  digest = hashlib.sha256()
  for _, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    digest.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
  return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Per-device step bodies (written as pmapped steps; run through parallel.data_parallel).
# ----------------------------------------------------------------------------------------------

def train_step(state, batch, hparams, *, model, terms, opt: OptimizerSpec,
               objectness_exclude_clicked=True):
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
    per_term = supervision.loss_terms(logits, batch, terms,
                                      objectness_exclude_clicked=objectness_exclude_clicked)
    return supervision.total_loss(per_term, hparams["weights"]).mean(), per_term

  (loss, per_term), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
  grads = lax.pmean(grads, AXIS)
  lr = learning_rate(hparams, state["step"])
  tx = make_optimizer(lr, opt)
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  step_metrics = {"train/loss": loss, **{f"train/{t}": v.mean() for t, v in per_term.items()}}
  step_metrics = lax.pmean(step_metrics, AXIS)
  step_metrics["train/grad_norm"] = optax.global_norm(grads)
  step_metrics["train/learning_rate"] = lr
  new_state = dict(state, step=state["step"] + 1, params=params, opt_state=opt_state)
  return new_state, step_metrics


def eval_step(params, batch, *, model, num_classes):
  """Confusion matrix of this device's shard, summed over 'data' (padding excluded)."""
  logits = model.apply({"params": params}, batch["image"], train=False)
  pred = jnp.argmax(logits, axis=-1)
  mask = batch["valid"] & batch["example_mask"][:, None, None]
  confusion = metrics_lib.confusion_matrix(pred, batch["labels"], num_classes, mask=mask)
  return lax.psum(confusion, AXIS)


def compiler_options(fast_compile: bool):
  """XLA options: `fast_compile` turns backend optimisation off (CPU only; the tiny configs, where
  compiling is most of the run). Every run of a config compiles the same way (reproducible)."""
  return _FAST_COMPILE_CPU if fast_compile and jax.default_backend() == "cpu" else None


@functools.lru_cache(maxsize=64)
def compiled_train_step(model, terms, opt: OptimizerSpec, objectness_exclude_clicked, mesh,
                        fast_compile=False):
  """jit(shard_map(train_step)), cached so runs with equal static parts share the compilation."""
  body = functools.partial(train_step, model=model, terms=terms, opt=opt,
                           objectness_exclude_clicked=objectness_exclude_clicked)
  return parallel.data_parallel(body, mesh, in_specs=(P(), P(AXIS), P()),
                                out_specs=(P(), P()), donate_argnums=(0,),
                                compiler_options=compiler_options(fast_compile))


@functools.lru_cache(maxsize=64)
def compiled_eval_step(model, num_classes, mesh, fast_compile=False):
  body = functools.partial(eval_step, model=model, num_classes=num_classes)
  return parallel.data_parallel(body, mesh, in_specs=(P(), P(AXIS)), out_specs=P(),
                                compiler_options=compiler_options(fast_compile))


# ----------------------------------------------------------------------------------------------
# Data.
# ----------------------------------------------------------------------------------------------

def data_config(config) -> ml_collections.ConfigDict:
  """config.data over the pipeline's defaults; a field the pipeline does not know is an error."""
  from pointseg_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  merged = pipeline.default_data_config()
  unknown = sorted(set(config.data) - set(merged))
  if unknown:
    raise ValueError(f"config.data has fields the pipeline does not know: {unknown}; known: "
                     f"{sorted(merged)}")
  merged.update(config.data.to_dict())
  return merged


def prepare_dataset(config) -> None:
  """Build the dataset on first use (synthetic_points) or fail saying how to get it (VOC)."""
  from pointseg_jax import data  # pylint: disable=g-import-not-at-top
  manual_dir = config.data.get("manual_dir")
  try:
    data.prepare(config.data.dataset, config.data.data_dir,
                 **({"manual_dir": manual_dir} if manual_dir else {}))
  except (ValueError, FileNotFoundError) as e:
    raise type(e)(f"config.data.dataset={config.data.dataset!r}: {e}") from e


def train_batches(config, dcfg, local_batch, start_step, fields) -> Iterator[dict]:
  from pointseg_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  it = pipeline.make_dataset(dcfg, "train", batch_size=local_batch, train=True, seed=config.seed,
                             start_step=start_step)
  for batch in it:
    yield {k: batch[k] for k in fields}


def eval_batches(config, dcfg, split, local_batch, mesh) -> Iterator[dict]:
  """Global eval batches over the whole split, last one padded (example_mask False); the pipeline
  gives every host the same number of batches, as the collective eval step needs."""
  from pointseg_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  it = pipeline.make_dataset(dcfg, split, batch_size=local_batch, train=False, seed=config.seed)
  for batch in it:
    yield parallel.host_to_global({k: batch[k] for k in EVAL_FIELDS}, mesh)


def evaluate(config, dcfg, model, params, mesh, split=None) -> dict[str, Any]:
  """mIoU and per-class IoU over the whole split (padded batches, no image dropped)."""
  split = split or config.eval.split
  local_batch = parallel.check_batch_size(config.eval.batch_size, mesh, "config.eval.batch_size")
  step = compiled_eval_step(model, config.model.num_classes, mesh,
                            bool(config.train.get("fast_compile", False)))
  confusion = None
  for batch in eval_batches(config, dcfg, split, local_batch, mesh):
    c = step(params, batch)
    confusion = c if confusion is None else confusion + c
  if confusion is None:
    raise ValueError(f"the {split!r} split of {config.data.dataset!r} is empty")
  confusion = np.asarray(jax.device_get(confusion), np.int64)
  miou, iou = metrics_lib.mean_iou(confusion)
  return {"eval/miou": miou, "eval/pixel_accuracy": metrics_lib.pixel_accuracy(confusion),
          "eval/iou_per_class": iou, "eval/confusion": confusion}


# ----------------------------------------------------------------------------------------------
# Logging: TensorBoard + metrics.jsonl (process 0 only).
# ----------------------------------------------------------------------------------------------

class MetricWriter:
  """Scalars to TensorBoard event files and one JSON object per logged step to metrics.jsonl."""

  def __init__(self, workdir, *, enabled=True, resume_step=0):
    self.enabled = enabled
    self.path = pathlib.Path(workdir) / "metrics.jsonl"
    self._tb = None
    if not enabled:
      return
    import tensorboard.summary  # pylint: disable=g-import-not-at-top  (TF-free writer)
    self._tb = tensorboard.summary.Writer(str(workdir))
    # A resumed run repeats the steps after its checkpoint: drop their old rows.
    if self.path.exists():
      rows = [line for line in self.path.read_text().splitlines()
              if line.strip() and json.loads(line)["step"] <= resume_step]
      self.path.write_text("".join(r + "\n" for r in rows))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)
    self._tb.flush()
    with self.path.open("a") as f:
      f.write(json.dumps({"step": int(step), **{k: _json_float(v) for k, v in scalars.items()}})
              + "\n")

  def close(self):
    if self._tb is not None:
      self._tb.close()


def _json_float(x):
  x = float(x)
  return x if math.isfinite(x) else None


def _eval_json(result) -> dict[str, Any]:
  """The eval fields of summary.json / eval.json (NaN/inf -> null, IoU keyed by class name)."""
  return {"eval/miou": _json_float(result["eval/miou"]),
          "eval/pixel_accuracy": _json_float(result["eval/pixel_accuracy"]),
          "eval/iou_per_class": {name: _json_float(v)
                                 for name, v in zip(CLASS_NAMES, result["eval/iou_per_class"])}}


def _eval_scalars(result) -> dict[str, float]:
  scalars = {"eval/miou": result["eval/miou"], "eval/pixel_accuracy": result["eval/pixel_accuracy"]}
  for name, iou in zip(CLASS_NAMES, result["eval/iou_per_class"]):
    if np.isfinite(iou):
      scalars[f"eval/iou/{name}"] = float(iou)
  return scalars


def _check_finite(step, values, last_checkpoint, ckpt_dir):
  bad = {k: v for k, v in values.items() if not np.isfinite(v)}
  if bad:
    kept = (f"the last good checkpoint is step {last_checkpoint} in {ckpt_dir} (nothing after it "
            "was saved)" if last_checkpoint is not None else "no checkpoint was saved")
    raise NonFiniteLossError(
        f"non-finite training values at step {step}: {bad}. Training stopped; {kept}. Lower "
        "config.optimizer.learning_rate or check the data, then rerun the same command.")


# ----------------------------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------------------------

def train_and_evaluate(config, workdir) -> dict[str, Any]:
  """Train config's regime in workdir (resuming from its latest checkpoint), evaluate, summarise.

  Returns the summary written to workdir/summary.json.
  """
  t_start = time.time()
  workdir = pathlib.Path(workdir)
  is_main = jax.process_index() == 0
  if is_main:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")

  # --- Static setup: mesh, regime, model, data ---------------------------------------------------
  mesh = parallel.make_mesh()
  local_batch = parallel.check_batch_size(config.train.batch_size, mesh)
  parallel.check_batch_size(config.eval.batch_size, mesh, "config.eval.batch_size")
  supervision.get_regime(config.regime)
  terms = supervision.active_terms(dict(config.loss.weights))
  model = make_model(config)
  opt = OptimizerSpec.from_config(config)
  dcfg = data_config(config)
  prepare_dataset(config)

  # --- State: fresh, or the latest checkpoint ----------------------------------------------------
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints",
                                    max_to_keep=config.train.keep_checkpoints,
                                    async_save=config.train.async_checkpoints)
  last_checkpoint = ckpt.latest_step()
  if last_checkpoint is None:
    state = create_train_state(config, model, mesh)
  else:
    state = ckpt.restore(abstract_train_state(config, model, mesh), last_checkpoint)
    logging.info("Resuming from the checkpoint of step %d in %s", last_checkpoint, ckpt.directory)
  start_step = int(jax.device_get(state["step"]))
  num_steps = int(config.train.num_steps)

  writer = MetricWriter(workdir, enabled=is_main, resume_step=start_step)
  step_fn = compiled_train_step(model, terms, opt, bool(config.loss.objectness_exclude_clicked),
                                mesh, bool(config.train.fast_compile))
  hparams = parallel.replicate(hyperparams(config), mesh)
  batches = train_batches(config, dcfg, local_batch, start_step, supervision.needed_fields(terms))

  # --- Train -------------------------------------------------------------------------------------
  # Metrics are fetched one step late (the host never waits for the step it just launched), but
  # always before a checkpoint: a NaN at step n stops the run before state n is saved.
  pending = []            # [(step, device metrics)] not yet fetched
  interval = []           # fetched host metrics since the last log line
  eval_result = None
  progress = tqdm.tqdm(total=num_steps, initial=start_step, unit="step", dynamic_ncols=True,
                       disable=not (is_main and config.train.progress_bar))
  t_interval = time.time()

  def flush_pending():
    while pending:
      s, m = pending.pop(0)
      values = {k: float(v) for k, v in jax.device_get(m).items()}
      _check_finite(s, values, last_checkpoint, ckpt.directory)
      interval.append(values)

  try:
    for step in range(start_step + 1, num_steps + 1):   # `step` = state step after this update
      batch = parallel.host_to_global(next(batches), mesh)
      state, step_metrics = step_fn(state, batch, hparams)
      flush_pending()     # the previous step's metrics, while this step runs
      pending.append((step, step_metrics))
      progress.update(1)

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
        progress.set_postfix(loss=f"{scalars['train/loss']:.4f}")
        interval, t_interval = [], time.time()
      if do_ckpt:
        ckpt.save(step, state)
        last_checkpoint = step
      if do_eval:
        eval_result = evaluate(config, dcfg, model, state["params"], mesh)
        writer.write(step, _eval_scalars(eval_result))
        logging.info("step %d: eval mIoU %.4f", step, eval_result["eval/miou"])
        t_interval = time.time()   # keep eval time out of steps/s
  finally:
    progress.close()
    ckpt.wait()

  # --- Summary -----------------------------------------------------------------------------------
  if eval_result is None:     # resumed a finished run: evaluate the final state again
    eval_result = evaluate(config, dcfg, model, state["params"], mesh)
  ckpt.close()
  summary = {
      "step": int(jax.device_get(state["step"])),
      "regime": config.regime,
      "params_sha256": params_sha256(state["params"]),
      **_eval_json(eval_result),
      "wall_time_s": round(time.time() - t_start, 3),
      "resumed_from_step": start_step,
  }
  if is_main:
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    writer.close()
  return summary


def evaluate_checkpoint(config, workdir, step=None) -> dict[str, Any]:
  """--mode=eval: evaluate the latest (or given) checkpoint of workdir; writes eval.json."""
  workdir = pathlib.Path(workdir)
  mesh = parallel.make_mesh()
  model = make_model(config)
  dcfg = data_config(config)
  prepare_dataset(config)
  params, step = restore_params(config, workdir, mesh, step)
  result = evaluate(config, dcfg, model, params, mesh)
  out = {"step": step, **_eval_json(result)}
  if jax.process_index() == 0:
    (workdir / "eval.json").write_text(json.dumps(out, indent=2) + "\n")
  return out


def restore_params(config, workdir, mesh, step=None):
  """(params, step) of a checkpoint in workdir/checkpoints (latest by default)."""
  model = make_model(config)
  ckpt_dir = pathlib.Path(workdir) / "checkpoints"
  if not ckpt_dir.is_dir():
    raise FileNotFoundError(f"no checkpoints in {ckpt_dir}: train first (--mode=train) with the "
                            "same --workdir")
  with checkpointing.Checkpointer(ckpt_dir, async_save=False) as ckpt:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no committed checkpoint in {ckpt_dir}: train first")
    state = ckpt.restore(abstract_train_state(config, model, mesh), step)
  return state["params"], int(step)
