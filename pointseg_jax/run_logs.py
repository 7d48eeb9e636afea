"""What a training run logged: its metrics.jsonl rows as curves, and the training throughput.

    from pointseg_jax import metric_writer, run_logs
    rows = metric_writer.read_metrics("runs/point")      # one dict per logged row
    steps, loss = run_logs.curves(rows)["train/loss"]    # for a plot
    print(run_logs.throughput(rows, batch_size=8))       # steps/s, step time, images/s

    python -m pointseg_jax.run_logs --workdir=runs/point   # the throughput line (launch/gpu_check.sh)

The training loop logs train scalars every `log_every` steps and eval scalars at eval steps (the
same step can have two rows); a non-finite value is stored as null. `train/steps_per_sec` is
measured over the steps since the previous train row, so the first interval of a run (or of a
resumed run) includes compiling.
"""
import json
import pathlib
import statistics
from typing import NamedTuple

from absl import flags
import numpy as np

from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax import metric_writer

STEPS_PER_SEC = "train/steps_per_sec"


def curves(rows) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{scalar name: (steps int64 [N], values float64 [N])} over the rows that have that scalar
  (null, i.e. non-finite, -> NaN)."""
  points: dict[str, list[tuple[int, float]]] = {}
  for row in rows:
    for name, value in row.items():
      if name != "step":
        points.setdefault(name, []).append(
            (row["step"], float("nan") if value is None else float(value)))
  return {name: (np.array([s for s, _ in p], np.int64), np.array([v for _, v in p], np.float64))
          for name, p in points.items()}


class Throughput(NamedTuple):
  steps_per_s: float      # median over the measured intervals
  step_time_s: float      # 1 / steps_per_s
  images_per_s: float     # steps_per_s * global batch size
  intervals: int          # logged intervals the median is over
  includes_compile: bool  # True when only the first interval (with compiling) was available

  def __str__(self):
    note = " (includes compile time: log more often or train longer)" if self.includes_compile \
        else ""
    return (f"{self.images_per_s:.1f} images/s, {1000 * self.step_time_s:.1f} ms/step "
            f"({self.steps_per_s:.2f} steps/s, median of {self.intervals} logged "
            f"interval(s)){note}")


def throughput(rows, batch_size: int, skip_first: int = 1) -> Throughput:
  """Training speed from the logged `train/steps_per_sec`, leaving out the first `skip_first`
  intervals (compiling); all of them when nothing else is left."""
  rates = [row[STEPS_PER_SEC] for row in rows if row.get(STEPS_PER_SEC) is not None]
  if not rates:
    raise errors.DataError(f"no {STEPS_PER_SEC} in the metrics rows: the run logged no train "
                           "step (yet)")
  measured = rates[skip_first:] or rates
  rate = statistics.median(measured)
  return Throughput(rate, 1.0 / rate, rate * batch_size, len(measured),
                    includes_compile=len(measured) == len(rates) and skip_first > 0)


def run_batch_size(workdir) -> int:
  """The global train batch size a run used (its config.json)."""
  path = pathlib.Path(workdir) / "config.json"
  try:
    return int(json.loads(path.read_text())["train"]["batch_size"])
  except FileNotFoundError as e:
    raise errors.MissingInputError(f"{path} not found: pass --batch_size") from e
  except (KeyError, TypeError, ValueError) as e:
    raise errors.DataError(f"{path}: no integer train.batch_size ({e!r}); pass --batch_size") from e


def main(argv):
  del argv
  workdir = flags.FLAGS.workdir
  if not workdir:
    raise errors.ConfigError("--workdir is required")
  batch = flags.FLAGS.batch_size or run_batch_size(workdir)
  print(f"{workdir}: batch {batch}: {throughput(metric_writer.read_metrics(workdir), batch)}")


if __name__ == "__main__":
  # Defined here, not at import: pointseg_jax.main has a --workdir flag too, and a notebook or a
  # test imports both modules.
  flags.DEFINE_string("workdir", None, "Training workdir (with metrics.jsonl).")
  flags.DEFINE_integer("batch_size", None, "Global batch size (default: the run's config.json).")
  cli.run(main)
