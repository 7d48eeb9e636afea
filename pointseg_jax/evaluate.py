"""Evaluation: the pure eval step, mIoU over a whole split, and a checkpoint's eval.json.

Every image of the split counts exactly once: the pipeline pads the last batch (example_mask
False) and gives every host the same number of batches, as the collective eval step needs.
Mean IoU follows the VOC protocol (metrics.py; docs/losses.md, "Metrics").
"""
import functools
import json
import math
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from pointseg_jax import CLASS_NAMES
from pointseg_jax import errors
from pointseg_jax import files
from pointseg_jax import interrupt
from pointseg_jax import metrics as metrics_lib
from pointseg_jax import parallel
from pointseg_jax import progress as progress_lib
from pointseg_jax import run_setup
from pointseg_jax import state as state_lib
from pointseg_jax import workdir as workdir_lib
from pointseg_jax.data import pipeline
from pointseg_jax.data import spec as spec_lib

AXIS = parallel.AXIS
EVAL_FIELDS = ("image", "labels", "valid", "example_mask")
CONFUSION_FILE = "confusion.json"


def eval_step(params, batch, *, model, num_classes):
  """Confusion matrix of this device's shard, summed over 'data' (padding excluded)."""
  logits = model.apply({"params": params}, batch["image"], train=False)
  pred = jnp.argmax(logits, axis=-1)
  mask = batch["valid"] & batch["example_mask"][:, None, None]
  confusion = metrics_lib.confusion_matrix(pred, batch["labels"], num_classes, mask=mask)
  return lax.psum(confusion, AXIS)


@functools.lru_cache(maxsize=64)
def compiled_eval_step(model, num_classes, mesh, fast_compile=False):
  body = functools.partial(eval_step, model=model, num_classes=num_classes)
  return parallel.data_parallel(body, mesh, in_specs=(P(), P(AXIS)), out_specs=P(),
                                compiler_options=state_lib.compiler_options(fast_compile))


def evaluate(model, params, spec: spec_lib.DataSpec, mesh, *, split: str, batch_size: int,
             fast_compile: bool = False, progress_bar: bool = False,
             should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
  """mIoU and per-class IoU over the whole split (padded batches, no image dropped).

  should_stop: polled between batches; True raises interrupt.StopNow (a training run that got
  SIGTERM saves its step instead of finishing the eval)."""
  local_batch = parallel.check_batch_size(batch_size, mesh, "config.eval.batch_size")
  step = compiled_eval_step(model, model.num_classes, mesh, bool(fast_compile))
  confusion = None
  batches = pipeline.make_dataset(spec, split, batch_size=local_batch, train=False, seed=0)
  with progress_lib.Progress(batches.num_batches, enabled=progress_bar, desc=f"eval {split}",
                             unit="batch", leave=False) as progress:
    for i, batch in enumerate(batches, 1):
      if should_stop is not None and should_stop():
        raise interrupt.StopNow()
      c = step(params, parallel.host_to_global({k: batch[k] for k in EVAL_FIELDS}, mesh))
      confusion = c if confusion is None else confusion + c
      progress.advance_to(i)
  if confusion is None:
    raise errors.DataError(f"the {split!r} split of {spec.dataset!r} is empty")
  confusion = np.asarray(jax.device_get(confusion), np.int64)
  miou, iou = metrics_lib.mean_iou(confusion)
  return {"eval/miou": miou, "eval/pixel_accuracy": metrics_lib.pixel_accuracy(confusion),
          "eval/iou_per_class": iou, "eval/confusion": confusion}


def json_float(x):
  """A float for JSON: NaN / inf become null."""
  x = float(x)
  return x if math.isfinite(x) else None


def eval_json(result) -> dict[str, Any]:
  """The eval fields of summary.json / eval.json (NaN/inf -> null, IoU keyed by class name)."""
  return {"eval/miou": json_float(result["eval/miou"]),
          "eval/pixel_accuracy": json_float(result["eval/pixel_accuracy"]),
          "eval/iou_per_class": {name: json_float(v)
                                 for name, v in zip(CLASS_NAMES, result["eval/iou_per_class"])}}


def confusion_json(result, step: int, split: str) -> dict[str, Any]:
  """confusion.json: the split's pixel counts, counts[true][predicted] in CLASS_NAMES order (the
  mIoU's whole evidence: which class a row's pixels went to, docs/training.md "Workdir")."""
  counts = np.asarray(result["eval/confusion"], np.int64)
  return {"step": int(step), "split": split, "classes": list(CLASS_NAMES),
          "counts": counts.tolist()}


def write_confusion(workdir, result, step: int, split: str) -> None:
  """One line per true class, so a diff or a reader sees the matrix's rows."""
  data = confusion_json(result, step, split)
  rows = ",\n  ".join(json.dumps(row) for row in data.pop("counts"))
  head = json.dumps(data)[:-1]
  files.write_text(pathlib.Path(workdir) / CONFUSION_FILE, f'{head}, "counts": [\n  {rows}\n]}}\n')


def read_confusion(path) -> dict[str, Any]:
  """A confusion.json (write_confusion), its counts as an int64 [C, C] array."""
  data = json.loads(pathlib.Path(path).read_text())
  data["counts"] = np.asarray(data["counts"], np.int64)
  return data


def eval_scalars(result) -> dict[str, float]:
  """The eval result as TensorBoard scalars (absent classes left out)."""
  scalars = {"eval/miou": result["eval/miou"], "eval/pixel_accuracy": result["eval/pixel_accuracy"]}
  for name, iou in zip(CLASS_NAMES, result["eval/iou_per_class"]):
    if np.isfinite(iou):
      scalars[f"eval/iou/{name}"] = float(iou)
  return scalars


def evaluate_checkpoint(config, workdir, step=None, split=None) -> dict[str, Any]:
  """--mode=eval: evaluate the latest (or given) checkpoint of workdir; writes eval.json and
  confusion.json.

  config=None: the run's own config.json (nothing to repeat); a config is checked against it first
  (workdir.run_config). The checkpoint is looked up before any data is built. split: another
  split than config.eval.split.
  """
  run = run_setup.open_run(config, workdir, mode="eval")
  config = run.config
  step = state_lib.checkpoint_step(run.workdir, step)   # before any data is built
  split = split or config.eval.split
  params, step = run.restore_params(step)
  run.prepare_data()
  result = evaluate(run.model, params, run.spec, run.mesh, split=split, batch_size=config.eval.batch_size,
                    fast_compile=config.train.get("fast_compile", False),
                    progress_bar=jax.process_index() == 0 and config.train.get("progress_bar", True))
  out = {"step": step, "regime": config.regime, "split": split,
         "config_sha256": workdir_lib.config_sha256(config), **eval_json(result)}
  if jax.process_index() == 0:
    files.write_json(run.workdir / "eval.json", out)
    write_confusion(run.workdir, result, step, split)
  return out
