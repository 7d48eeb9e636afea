"""experiments/full_gap.py: the post hoc hold-out arms that ask why full falls below 1Point in
Table 1 v2 (each arm's config, resuming, the report), and one real tiny run of the arm that
combines full masks with the image-level term."""
import json

from absl import flags
import numpy as np
import pytest

from pointseg_jax import config_lib
from pointseg_jax import evaluate
from pointseg_jax.experiments import full_gap
from pointseg_jax.experiments import runs
from pointseg_jax.experiments import table1_v2
from helpers import REPO

SCHEDULE = REPO / "experiments_results" / "v2" / table1_v2.SCHEDULE_FILE


def test_arms_configs_order_resume_and_report(tmp_path, monkeypatch):
  schedule = table1_v2.load_schedule(SCHEDULE)    # the committed one: the sweep's own
  trained = []

  def train_one(run, schedule, seed, out, num_train, data_dir=None):
    config = runs.run_config(run, schedule, seed, num_train, data_dir)
    config_lib.validate(config)
    trained.append((run.name, config.regime, config.optimizer.learning_rate,
                    dict(config.loss.weights), config.eval.split, config.data.train_fraction,
                    config.train.num_steps))
    diverged = run.name == "full_lr0.03"
    summary = {"run": run.name, "seed": seed, "fingerprint": runs.fingerprint(config),
               "miou": None if diverged else 0.3 + 0.01 * len(trained), "wall_time_s": 60.0,
               "error": "loss is nan at step 99" if diverged else None,
               "eval_miou_by_step": {"2000": 0.1} if diverged else {"4000": 0.2, "8000": 0.3}}
    path = runs.run_dirs(out, run, seed)[0]
    path.mkdir(parents=True)
    if not diverged:   # 2 object pixels right, 1 to background, 1 to another object class
      counts = np.zeros((21, 21), np.int64)
      counts[0, 0], counts[1, [0, 1, 2]], counts[2, 2] = 4, [1, 1, 1], 1
      evaluate.write_confusion(path, {"eval/confusion": counts}, 8000, "train[1800:]")
    (path / "summary.json").write_text(json.dumps(summary))
    return summary
  monkeypatch.setattr(runs, "train_one", train_one)
  rows = full_gap.measure(tmp_path, schedule, 2000)
  split, frac = "train[1800:]", 0.9
  pixel_only = {"pixel": 1.0, "image": 0.0, "point": 0.0, "objectness": 0.0, "pairwise": 0.0}
  assert [t[:3] for t in trained] == [("point", "point", 3e-3), ("full", "full", 3e-3),
                                      ("full_lr0.01", "full", 0.01), ("full_lr0.03", "full", 0.03),
                                      ("full_img", "full", 3e-3), ("point_lr0.01", "point", 0.01),
                                      ("point_lr0.03", "point", 0.03)]
  assert all(t[4:] == (split, frac, 8000) for t in trained)
  assert trained[1][3] == pixel_only and trained[4][3] == {**pixel_only, "image": 1.0}
  assert trained[5][3] == trained[0][3]      # the point arms differ from `point` in lr alone
  assert full_gap.measure(tmp_path, schedule, 2000) == rows and len(trained) == 7   # resumed
  # --table_only while one arm is still training elsewhere: the others, that one pending.
  (runs.run_dirs(tmp_path, full_gap.ARMS[2].run(2000), 0)[0] / "summary.json").unlink()
  partial = full_gap.measure(tmp_path, schedule, 2000, train_missing=False)
  assert [r["name"] for r in partial] == ["point", "full", "full_lr0.03", "full_img",
                                          "point_lr0.01", "point_lr0.03"]
  result, markdown = full_gap.report(partial, schedule, 2000, "cmd")
  assert "Pending: full_lr0.01" in markdown
  assert "best_lr" not in result and "(rule 6)" not in markdown   # not until all six lr arms
  markdown = full_gap.report(rows, schedule, 2000, "cmd")[1]
  assert "| `full_img` | full + the image-level term (Eq. 1 + Eq. 2) | 20.0 / 30.0 | 35.0 | +3.0 " \
         "| 50.0 / 25.0 / 25.0 | 0.0 | 1.0 |" in markdown
  assert "| `full_lr0.03` | full, peak lr 0.03 | 10.0 | diverged | – | – | – |" in markdown
  assert "All arms trained." in markdown
  # mIoU 0.31 + 0.01 k for the k-th arm trained; full_lr0.03 diverged: full's best is full_lr0.01
  # (0.33), points' point_lr0.03 (0.37).
  assert ("Each at the best of its three lrs (rule 6): full `full_lr0.01` 33.0 − points "
          "`point_lr0.03` 37.0 = -4.0 points.") in markdown


def test_best_lr_takes_each_regimes_best_arm_and_ranks_a_diverged_one_last():
  row = lambda name, miou: {"name": name, "miou": miou}
  rows = [row("point", 0.42), row("point_lr0.01", 0.45), row("point_lr0.03", None),
          row("full", 0.36), row("full_lr0.01", None), row("full_lr0.03", 0.63)]
  assert full_gap.best_lr(rows) == {"point": ("point_lr0.01", 0.45),
                                    "full": ("full_lr0.03", 0.63)}
  assert full_gap.best_lr(rows[1:]) is None     # `point` missing: not yet
  all_diverged = [row(r["name"], None) if r["name"].startswith("point") else r for r in rows]
  assert full_gap.best_lr(all_diverged)["point"] == ("point", None)


@pytest.mark.slow
def test_a_real_tiny_run_of_full_with_the_image_level_term(tiny_data_dir, tmp_path):
  schedule = runs.SCHEDULES["tiny"]
  num_train = runs.num_train_examples("tiny", tiny_data_dir)
  rows = full_gap.measure(tmp_path, schedule, num_train, arms=full_gap.ARMS[4:5],
                          data_dir=tiny_data_dir)
  assert [r["name"] for r in rows] == ["full_img"] and rows[0]["miou"] is not None
  assert rows[0]["object_pixels"] is not None
  metrics = [json.loads(line) for line in (runs.run_dirs(tmp_path, full_gap.ARMS[4].run(
      num_train), 0)[1] / "metrics.jsonl").read_text().splitlines()]
  assert {"train/pixel", "train/image"} <= set(next(m for m in metrics if "train/loss" in m))


def test_val_stage_trains_each_regimes_best_holdout_lr_on_val_and_tests_rule_7(tmp_path,
                                                                              monkeypatch):
  """Rule 7 (docs/experiments.md): the val stage's arms come from the hold-out's results, train on
  all of train, score on val, pair by seed; the one-sided paired t by hand (df = 2 has a closed
  form: P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2)."""
  schedule = table1_v2.load_schedule(SCHEDULE)
  holdout = {"point": 0.42, "point_lr0.01": 0.45, "point_lr0.03": None, "full": 0.36,
             "full_lr0.01": 0.51, "full_lr0.03": 0.63, "full_img": 0.47}
  val = {("val_point_lr0.01", k): v for k, v in enumerate((0.40, 0.41, 0.42))}
  val.update({("val_full_lr0.03", k): v for k, v in enumerate((0.50, 0.53, 0.56))})
  trained = []

  def train_one(run, schedule, seed, out, num_train, data_dir=None):
    config = runs.run_config(run, schedule, seed, num_train, data_dir)
    trained.append((run.name, seed, config.regime, config.optimizer.learning_rate,
                    config.eval.split, config.data.train_fraction))
    miou = val[(run.name, seed)] if run.name.startswith("val_") else holdout[run.name]
    summary = {"run": run.name, "seed": seed, "fingerprint": runs.fingerprint(config),
               "miou": miou, "wall_time_s": 60.0, "error": None if miou else "loss is nan",
               "eval_miou_by_step": {"8000": miou}}
    path = runs.run_dirs(out, run, seed)[0]
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return summary
  monkeypatch.setattr(runs, "train_one", train_one)
  assert full_gap.val_arms(full_gap.measure(tmp_path, schedule, 2000, arms=full_gap.ARMS[:6])) \
      is None                                     # point_lr0.03 not trained yet: no val stage
  rows = full_gap.measure(tmp_path, schedule, 2000)
  arms = full_gap.val_arms(rows)
  assert [(a.name, a.regime, a.overrides) for a in arms] == [
      ("val_point_lr0.01", "point", (("optimizer.learning_rate", 0.01),)),
      ("val_full_lr0.03", "full", (("optimizer.learning_rate", 0.03),))]
  del trained[:]
  val_rows = full_gap.measure(tmp_path, schedule, 2000, arms=arms, seeds=range(3))
  assert [t[:2] for t in trained] == [("val_point_lr0.01", 0), ("val_full_lr0.03", 0),
                                      ("val_point_lr0.01", 1), ("val_full_lr0.03", 1),
                                      ("val_point_lr0.01", 2), ("val_full_lr0.03", 2)]
  assert all(t[4] == "val" and t[5] == 1.0 for t in trained)   # all of train, scored on val
  # Seed k of a val arm is the sweep's seed k but for the lr: same init, same batch order.
  sweep_point = runs.run_config(runs.Run("point", "point"), schedule, 1, 2000)
  val_point = runs.run_config(arms[0].run(2000), schedule, 1, 2000)
  val_point.optimizer.learning_rate = sweep_point.optimizer.learning_rate
  assert runs.fingerprint(val_point) == runs.fingerprint(sweep_point)

  test = full_gap.val_test(val_rows, arms)
  assert test["differences"] == pytest.approx([10.0, 12.0, 14.0])
  t = 12.0 / (2.0 / np.sqrt(3))
  assert test["p"] == pytest.approx((1 - t / np.sqrt(t * t + 2)) / 2, rel=1e-9)
  assert test["verdict"] == "full above points shown"
  assert full_gap.val_test(val_rows[:4], arms)["verdict"] == "pending (2 of 3 seeds)"
  sweep = {"point": {0: 46.5, 1: 43.9, 2: 46.3}, "full": {0: 35.4, 1: 38.1}}
  result, markdown = full_gap.report(rows, schedule, 2000, "cmd", val_rows, sweep)
  assert result["val"]["arms"] == ["val_point_lr0.01", "val_full_lr0.03"]
  assert "| 2 | 46.3 | 42.0 | – | 56.0 | +14.0 |" in markdown
  assert ("Rule 7 (one-sided paired t, α = 0.05): +12.0 ± 2.0 points per seed over 3, "
          "p = 0.00457: **full above points shown**.") in markdown


def test_val_stage_before_the_holdout_is_complete_is_refused(tmp_path, monkeypatch, capsys):
  fv = flags.FlagValues()
  full_gap.define_flags(fv)
  fv(["full_gap", f"--out={tmp_path}", "--stage=val"])
  monkeypatch.setattr(full_gap, "FLAGS", fv)
  with pytest.raises(SystemExit) as e:
    full_gap.main(["full_gap"])
  assert e.value.code == 2
  assert (f"error: --stage=val needs all six lr arms of the hold-out in {tmp_path}/runs, and "
          "point, point_lr0.01, point_lr0.03, full, full_lr0.01, full_lr0.03 are not there: run "
          "--stage=holdout first") in capsys.readouterr().err
  assert not (tmp_path / "runs").exists()
