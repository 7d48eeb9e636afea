"""experiments/demo_stability.py: the arms' configs (train[:25 %] or the hold-out's train part,
scored on the hold-out), seeds, resume, the stated rule and its report."""
import json

from pointseg_jax import config_lib
from pointseg_jax.experiments import demo_stability as ds
from pointseg_jax.experiments import runs

# Final hold-out mIoU per (arm, seed); the curve's 80 % point sits 0.5 points below the end.
MIOU = {"quarter_lr0.003": (0.27, 0.28, 0.29), "quarter_lr0.01": (0.30, 0.33, 0.34),
        "holdout_lr0.01": (0.32, 0.29, 0.31)}


def fake_train_one(trained):
  def train_one(run, schedule, seed, out, num_train, data_dir=None):
    config = runs.run_config(run, schedule, seed, num_train, data_dir)
    config_lib.validate(config)
    trained.append((run.name, seed, config.data.train_fraction, config.eval.split,
                    config.optimizer.learning_rate, config.optimizer.schedule,
                    config.train.num_steps, config.model.init_from))
    final = MIOU[run.name][seed]
    summary = {"run": run.name, "seed": seed, "fingerprint": runs.fingerprint(config),
               "miou": final, "wall_time_s": 60.0, "train_images": round(
                   config.data.train_fraction * num_train),
               "eval_miou_by_step": {"400": 0.1, "800": 0.2, "1200": 0.25, "1600": final - 0.005,
                                     "2000": final}}
    path = runs.run_dirs(out, run, seed)[0]
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return summary
  return train_one


def test_arms_seeds_resume_rule_and_report(tmp_path, monkeypatch):
  trained = []
  monkeypatch.setattr(runs, "train_one", fake_train_one(trained))
  rows = ds.measure(tmp_path, "pretrained", 2000)
  init = config_lib.PRETRAINED_INIT_FROM
  assert trained[:4] == [
      ("quarter_lr0.003", 0, 0.25, "train[1800:]", 3e-3, "cosine", 2000, init),
      ("quarter_lr0.003", 1, 0.25, "train[1800:]", 3e-3, "cosine", 2000, init),
      ("quarter_lr0.003", 2, 0.25, "train[1800:]", 3e-3, "cosine", 2000, init),
      ("quarter_lr0.01", 0, 0.25, "train[1800:]", 1e-2, "cosine", 2000, init)]
  assert trained[-1] == ("holdout_lr0.01", 2, 0.9, "train[1800:]", 1e-2, "cosine", 2000, init)
  assert [r["train_images"] for r in rows] == [500, 500, 1800]
  low, high, ref = rows
  assert abs(low["span"] - 0.02) < 1e-9 and low["stable"] and low["converged"]
  assert abs(high["span"] - 0.04) < 1e-9 and not high["stable"] and high["converged"]
  # The higher lr has the better mean but spans 4 points: the stable one wins.
  assert ds.choose(rows) == ("quarter_lr0.003", True)
  assert ds.measure(tmp_path, "pretrained", 2000) == rows and len(trained) == 9   # resumed
  # Both stable: the better mean wins unless within 1 point (then the lower lr).
  assert ds.choose([low, dict(high, stable=True), ref]) == ("quarter_lr0.01", True)
  assert ds.choose([low, dict(high, stable=True, mean=low["mean"] + 0.009), ref]) == (
      "quarter_lr0.003", True)
  # None stable: the converged one with the smallest span, the target reported missed.
  assert ds.choose([dict(low, stable=False), high, ref]) == ("quarter_lr0.003", False)
  # Not converged (the seed-mean gains >= 1 point in the last 20 %): never chosen.
  assert ds.choose([dict(low, converged=False), high, ref]) == ("quarter_lr0.01", False)
  assert ds.choose([low]) == (None, False)       # a candidate missing
  markdown = ds.report(rows, "cmd")[1]
  assert "| quarter_lr0.003 | 500 | 0.003 | 27.0 / 28.0 / 29.0 | 28.0 | 2.0 |" in markdown
  assert "| holdout_lr0.01 (reference) | 1800 | 0.01 |" in markdown
  assert "**Chosen: quarter_lr0.003**." in markdown


def test_an_unfinished_or_diverged_arm_is_not_summarised():
  arm = ds.ARMS[0]
  row = ds.summarise(arm, [{"seed": 0, "miou": 0.3, "wall_time_s": 1.0, "train_images": 500,
                            "eval_miou_by_step": {}}])
  assert row["mean"] is None and not row["converged"] and row["train_images"] == 500
  seeds = [{"seed": s, "miou": None if s == 1 else 0.3, "wall_time_s": 1.0, "train_images": 500,
            "eval_miou_by_step": {}} for s in range(ds.SEEDS)]
  assert ds.summarise(arm, seeds)["span"] is None


def test_chosen_is_the_rule_on_the_committed_runs():
  """demo_stability.CHOSEN (what configs/demo.py trains) is the stated rule applied to the
  committed summaries, whose fingerprints match today's configs."""
  import pathlib   # pylint: disable=g-import-not-at-top
  out = pathlib.Path(__file__).resolve().parents[1] / "experiments_results" / "demo_stability"
  rows = ds.measure(out, "pretrained", 2000, train_missing=False)
  assert all(r["mean"] is not None for r in rows if not r["reference"]), "candidates' seeds"
  chosen, met = ds.choose(rows)
  assert chosen == ds.CHOSEN
  assert met == ds.CHOSEN_MEETS_SPAN
  recorded = __import__("json").loads((out / "stability.json").read_text())
  assert (recorded["chosen"], recorded["span_target_met"]) == (chosen, met)
