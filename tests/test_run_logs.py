"""metrics.jsonl read back (metric_writer.read_metrics), as curves and as the throughput
(run_logs), on hand-made logs."""
import json

import numpy as np
import pytest

from pointseg_jax import errors
from pointseg_jax import metric_writer
from pointseg_jax import run_logs


def write_rows(workdir, rows, extra_lines=()):
  lines = [json.dumps(r) for r in rows] + list(extra_lines)
  (workdir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


ROWS = [
    {"step": 50, "train/loss": 3.0, "train/steps_per_sec": 0.5},     # includes compiling
    {"step": 100, "train/loss": 2.0, "train/steps_per_sec": 10.0},
    {"step": 100, "eval/miou": 0.25},                                # eval row at the same step
    {"step": 150, "train/loss": None, "train/steps_per_sec": 12.0},  # NaN written as null
    {"step": 200, "train/loss": 1.0, "train/steps_per_sec": 8.0},
]


def test_read_metrics_and_curves(tmp_path):
  write_rows(tmp_path, ROWS, extra_lines=[""])
  rows = metric_writer.read_metrics(tmp_path)
  assert [r["step"] for r in rows] == [50, 100, 100, 150, 200]
  assert rows[3]["train/loss"] is None
  curves = run_logs.curves(rows)
  steps, loss = curves["train/loss"]
  np.testing.assert_array_equal(steps, [50, 100, 150, 200])
  np.testing.assert_array_equal(loss, [3.0, 2.0, np.nan, 1.0])
  steps, miou = curves["eval/miou"]
  assert steps.tolist() == [100] and miou.tolist() == [0.25]
  assert "step" not in curves


def test_throughput_is_the_median_after_the_compiling_interval():
  t = run_logs.throughput(ROWS, batch_size=16)
  assert t.steps_per_s == 10.0 and t.intervals == 3 and not t.includes_compile
  assert t.step_time_s == pytest.approx(0.1) and t.images_per_s == pytest.approx(160.0)
  assert str(t) == ("160.0 images/s, 100.0 ms/step (10.00 steps/s, median of 3 logged "
                    "interval(s))")
  only_first = run_logs.throughput(ROWS[:1], batch_size=2)
  assert only_first.steps_per_s == 0.5 and only_first.includes_compile
  assert "includes compile time" in str(only_first)
  assert run_logs.throughput(ROWS, batch_size=1, skip_first=0).steps_per_s == 9.0


def test_bad_or_missing_logs_are_clear_errors(tmp_path):
  assert metric_writer.read_metrics(tmp_path) == []   # before the first log line
  write_rows(tmp_path, ROWS[:2], extra_lines=['{"step": 3, "train/loss": 1'])
  with pytest.raises(errors.DataError, match=r"metrics.jsonl:3: not a JSON object"):
    metric_writer.read_metrics(tmp_path)
  write_rows(tmp_path, [{"step": "ten"}])
  with pytest.raises(errors.DataError, match=r"metrics.jsonl:1: expected an object with an "
                     "integer 'step'"):
    metric_writer.read_metrics(tmp_path)
  with pytest.raises(errors.DataError, match="logged no train step"):
    run_logs.throughput([], batch_size=1)
  with pytest.raises(errors.DataError, match="logged no train step"):
    run_logs.throughput([{"step": 1, "eval/miou": 0.1}], batch_size=1)


def test_run_batch_size_reads_config_json(tmp_path):
  with pytest.raises(errors.MissingInputError, match="pass --batch_size"):
    run_logs.run_batch_size(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps({"train": {"batch_size": 16}}))
  assert run_logs.run_batch_size(tmp_path) == 16
  (tmp_path / "config.json").write_text(json.dumps({"train": {}}))
  with pytest.raises(errors.DataError, match="no integer train.batch_size"):
    run_logs.run_batch_size(tmp_path)
