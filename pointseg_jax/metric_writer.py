"""Training logs: scalars to TensorBoard event files and one JSON object per logged step to
`metrics.jsonl` (process 0 only), plus the reader the notebook and the experiments use.

A resumed run repeats the steps after its checkpoint, so it first drops what the interrupted run
logged for them: the metrics.jsonl rows, and the TensorBoard events (the event files are rewritten
into one file holding the events up to the checkpoint; TensorBoard then shows each step once).
"""
import json
import pathlib
import shutil

import tensorboard.summary as tb_summary  # the TF-free event writer
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer import event_file_writer

from pointseg_jax import errors
from pointseg_jax import files
from pointseg_jax.evaluate import json_float

EVENTS_GLOB = "events.out.tfevents.*"
_REWRITE_DIR = ".events_rewrite"   # a rewrite in progress (not an event file TensorBoard reads)


class MetricWriter:
  """Scalars to TensorBoard and metrics.jsonl; a resumed run first drops the rows and events
  after its checkpoint, which it is about to repeat."""

  def __init__(self, workdir, *, enabled=True, resume_step=0):
    self.enabled = enabled
    workdir = pathlib.Path(workdir)
    self.path = workdir / "metrics.jsonl"
    self._tb = None
    if not enabled:
      return
    truncate_events(workdir, resume_step)
    self._tb = tb_summary.Writer(str(workdir))
    if self.path.exists():
      rows = [line for line in self.path.read_text().splitlines()
              if line.strip() and json.loads(line)["step"] <= resume_step]
      files.write_text(self.path, "".join(r + "\n" for r in rows))   # a kill keeps the old file

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
      self._tb = None


def read_events(path) -> list[event_pb2.Event]:
  """Every event of one TensorBoard event file, in order."""
  return [event_pb2.Event.FromString(raw)
          for raw in event_file_loader.RawEventFileLoader(str(path)).Load()]


def truncate_events(workdir, last_step: int) -> None:
  """Keep only the summary events with step <= last_step in workdir's event files.

  Rewrites them into one new event file when there is anything to drop (events past last_step, or
  a step written twice). Crash-safe: the new file is complete before it is moved in, and the old
  ones are removed only then; a rewrite cut short in between leaves duplicates of steps <=
  last_step, which the next rewrite drops (the last copy wins).
  """
  workdir = pathlib.Path(workdir)
  files = sorted(workdir.glob(EVENTS_GLOB))
  kept, dropped = {}, False
  for path in files:
    for event in read_events(path):
      if not event.HasField("summary"):
        continue          # file_version headers: every event file writes its own
      key = (tuple(v.tag for v in event.summary.value), event.step)
      if event.step > last_step or key in kept:
        dropped = True
      if event.step <= last_step:
        kept[key] = event
  if not dropped:
    return
  tmp = workdir / _REWRITE_DIR
  shutil.rmtree(tmp, ignore_errors=True)
  writer = event_file_writer.EventFileWriter(str(tmp))
  for event in sorted(kept.values(), key=lambda e: e.step):   # stable: keeps the logged order
    writer.add_event(event)
  writer.close()
  (new,) = tmp.glob(EVENTS_GLOB)
  new = new.rename(workdir / new.name)
  for path in files:
    path.unlink()
  shutil.rmtree(tmp, ignore_errors=True)


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
