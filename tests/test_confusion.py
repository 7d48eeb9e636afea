"""experiments/confusion.py: pooled val confusion matrices, where object pixels go (by hand), and
the backfill that writes a finished run's matrix only when its checkpoint scores the summary's
mIoU."""
import json
import shutil

import numpy as np
import pytest

from pointseg_jax import CLASS_NAMES
from pointseg_jax import errors
from pointseg_jax import evaluate
from pointseg_jax.experiments import confusion


def write_run(out, row, seed, counts=None, **summary):
  run_dir = out / "runs" / row / f"seed{seed}"
  run_dir.mkdir(parents=True)
  (run_dir / "summary.json").write_text(json.dumps({"run": row, "seed": seed, **summary}))
  if counts is not None:
    evaluate.write_confusion(run_dir, {"eval/confusion": counts}, 8000, "val")
  return run_dir


def three_classes(bg, a, b):
  """A 21 x 21 matrix whose rows 0, 1, 2 (background, aeroplane, bicycle) are the given ones."""
  counts = np.zeros((21, 21), np.int64)
  counts[0, :3], counts[1, :3], counts[2, :3] = bg, a, b
  return counts


def test_where_object_pixels_go_by_hand():
  # Object pixels: aeroplane 10 (6 right, 2 to background, 2 to bicycle), bicycle 10 (4 right,
  # 6 to background). Background 80, 8 of them called aeroplane.
  counts = three_classes([72, 8, 0], [2, 6, 2], [6, 0, 4])
  o = confusion.object_pixels(counts)
  assert o["right"] == pytest.approx(100 * 10 / 20)
  assert o["background"] == pytest.approx(100 * 8 / 20)
  assert o["other_object"] == pytest.approx(100 * 2 / 20)
  assert o["background_as_object"] == pytest.approx(100 * 8 / 80)
  assert o["pixel_accuracy"] == pytest.approx(100 * 82 / 100)


def test_file_round_trip_and_seeds_pool_in_table_order(tmp_path):
  a = three_classes([72, 8, 0], [2, 6, 2], [6, 0, 4])
  b = three_classes([80, 0, 0], [0, 10, 0], [0, 10, 0])
  write_run(tmp_path, "point", 0, a)
  write_run(tmp_path, "point", 1, b)
  write_run(tmp_path, "full", 0, b)
  write_run(tmp_path, "image", 0)                        # no confusion.json: not pooled
  path = tmp_path / "runs" / "point" / "seed0" / "confusion.json"
  data = evaluate.read_confusion(path)
  assert data["classes"] == list(CLASS_NAMES) and (data["step"], data["split"]) == (8000, "val")
  np.testing.assert_array_equal(data["counts"], a)
  assert len(path.read_text().splitlines()) == 23        # a header line, 21 rows, the end
  rows = confusion.pooled(tmp_path, order=("point", "full"))
  assert list(rows) == ["point", "full"] and rows["point"]["seeds"] == [0, 1]
  np.testing.assert_array_equal(rows["point"]["counts"], a + b)
  report = confusion.write_report(tmp_path, "the command", order=("point", "full"),
                                  detail=("full",))
  text = report.read_text()
  assert "`the command`" in text
  # full: aeroplane 10/10 right; bicycle all 10 called aeroplane; 80 background right.
  assert "| `full` | 1 | " in text and "| 50.0 | 0.0 | 50.0 | 0.0 |" in text
  assert "| bicycle | 10.00 | 0 → aeroplane 100 |" in text    # only the detail rows' columns
  assert confusion.write_report(tmp_path / "none", "x") is None


@pytest.mark.e2e
def test_backfill_writes_only_what_the_checkpoint_reproduces(tiny_run, tmp_path):
  workdir, _ = tiny_run
  work = tmp_path / "work" / "point" / "seed0"
  shutil.copytree(workdir, work)                         # the shared run stays read-only
  (work / "confusion.json").unlink(missing_ok=True)
  summary = json.loads((work / "summary.json").read_text())
  out = tmp_path / "sweep"
  done_dir = write_run(out, "point", 0, step=summary["step"], miou=summary["eval/miou"],
                       error=None)
  write_run(out, "point", 1, step=summary["step"], miou=0.5, error=None)   # no checkpoint here
  write_run(out, "full", 0, three_classes([1, 0, 0], [0, 1, 0], [0, 0, 1]), step=6, miou=1.0)
  write_run(out, "box", 0, step=None, miou=None, error="diverged at step 3")
  done = confusion.backfill(out, [tmp_path / "work"])
  assert done == {"written": ["point/seed0"], "had_one": ["full/seed0"],
                  "no_checkpoint": ["point/seed1"], "diverged": ["box/seed0"]}
  counts = evaluate.read_confusion(done_dir / "confusion.json")["counts"]
  assert evaluate.metrics_lib.mean_iou(counts)[0] == summary["eval/miou"]
  # A summary that its checkpoint does not reproduce: an error naming both, nothing written.
  (done_dir / "confusion.json").unlink()
  (done_dir / "summary.json").write_text(json.dumps(
      {"step": summary["step"], "miou": summary["eval/miou"] + 1e-9, "error": None}))
  with pytest.raises(errors.DataError, match="not the run the summary reports"):
    confusion.backfill(out, [tmp_path / "work"])
  assert not (done_dir / "confusion.json").exists()
