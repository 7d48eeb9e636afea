"""Training logs: scalars to TensorBoard event files and one JSON object per logged step to
`metrics.jsonl` (process 0 only), plus the reader the notebook and the experiments use."""
import json
import pathlib

import tensorboard.summary as tb_summary  # the TF-free event writer

from pointseg_jax import errors
from pointseg_jax.evaluate import json_float


class MetricWriter:
  """Scalars to TensorBoard and metrics.jsonl; a resumed run first drops the rows after its
  checkpoint, which it is about to repeat."""

  def __init__(self, workdir, *, enabled=True, resume_step=0):
    self.enabled = enabled
    self.path = pathlib.Path(workdir) / "metrics.jsonl"
    self._tb = None
    if not enabled:
      return
    self._tb = tb_summary.Writer(str(workdir))
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
      f.write(json.dumps({"step": int(step), **{k: json_float(v) for k, v in scalars.items()}})
              + "\n")

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir) -> list[dict]:
  """The rows of workdir/metrics.jsonl, in order (an empty list before the first log line).

  Each row is {"step": int, "<scalar name>": float or None (non-finite), ...}; the same step can
  have a train row and an eval row. A line that is not such an object is a DataError naming it.
  """
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  rows = []
  for number, line in enumerate(path.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise errors.DataError(f"{path}:{number}: not a JSON object ({e.msg})") from e
    if not isinstance(row, dict) or not isinstance(row.get("step"), int):
      raise errors.DataError(f"{path}:{number}: expected an object with an integer 'step'")
    rows.append(row)
  return rows
