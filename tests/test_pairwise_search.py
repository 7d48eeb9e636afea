"""experiments/pairwise_search.py: the hold-out never touches val, the coordinate search tries
the settings in its documented order, keeps the default on ties, and resumes to the same choice."""
import json

import pytest

from pointseg_jax import errors
from pointseg_jax.data import pipeline
from pointseg_jax.experiments import pairwise_search as ps
from pointseg_jax.experiments import runs

SCHEDULE = runs.schedule_for(False, "synthetic", None)
GRID = {"weight": (0.3, 0.1, 0.03, 1.0), "sigma_rgb": (12.0, 3.0), "sigma_xy": (24.0, 12.0)}


def test_holdout_is_disjoint_from_what_trains():
  assert runs.holdout(2000) == (0.9, "train[1800:]")
  fraction, split = runs.holdout(48)
  assert split == "train[43:]"
  assert pipeline.train_subset(list(range(48)), fraction) == list(range(43))
  with pytest.raises(errors.DataError, match=">= 2 images"):
    runs.holdout(1)


def test_run_config_sets_the_holdout_and_the_kernel():
  run = ps.as_run(ps.Setting(0.3, 12.0, 48.0), 2000)
  config = runs.run_config(run, SCHEDULE, 0, 2000)
  assert (config.regime, config.eval.split, config.data.train_fraction) == (
      "point_crf", "train[1800:]", 0.9)
  assert (config.loss.weights.pairwise, config.loss.pairwise.sigma_rgb,
          config.loss.pairwise.sigma_xy) == (0.3, 12.0, 48.0)
  baseline = runs.run_config(ps.as_run(ps.Setting(0.0, 6.0, 24.0), 2000), SCHEDULE, 0, 2000)
  assert (baseline.regime, baseline.eval.split) == ("point", "train[1800:]")
  bad = runs.Run("x", "point", overrides=(("loss.pairwise.sigma", 1.0),))
  with pytest.raises(errors.ConfigError, match="names no config field"):
    runs.run_config(bad, SCHEDULE, 0, 2000)


def fake_training(monkeypatch, score, trained):
  """runs.train_one replaced: writes the summary a real run would, mIoU = score(setting)."""
  def train_one(run, schedule, seed, out, num_train, data_dir=None):
    config = runs.run_config(run, schedule, seed, num_train, data_dir)
    setting = ps.Setting(config.loss.weights.get("pairwise", 0.0),
                         config.loss.pairwise.sigma_rgb, config.loss.pairwise.sigma_xy)
    trained.append(setting)
    summary = {"run": run.name, "seed": seed, "fingerprint": runs.fingerprint(config),
               "miou": score(setting),
               "eval_miou_by_step": {"800": 0.1, "1600": score(setting)}, "wall_time_s": 60.0}
    path = runs.run_dirs(out, run, seed)[0]
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return summary
  monkeypatch.setattr(runs, "train_one", train_one)


def test_search_order_ties_and_resume(tmp_path, monkeypatch):
  # Hand-made scores: weight 0.3 best; sigma_rgb 12 ties the default 6 (the default stays);
  # sigma_xy 12 best.
  def score(s):
    if s.weight == 0:
      return 0.20
    return {0.03: 0.21, 0.1: 0.22, 0.3: 0.25, 1.0: 0.23}[s.weight] + {12.0: 0.01}.get(s.sigma_xy, 0) - (
        0.05 if s.sigma_rgb == 3.0 else 0)
  trained = []
  fake_training(monkeypatch, score, trained)
  rows, chosen = ps.search(tmp_path, SCHEDULE, GRID, 2000)
  S = ps.Setting
  assert trained == [S(0, 6, 24), S(0.1, 6, 24), S(0.03, 6, 24), S(0.3, 6, 24), S(1, 6, 24),
                     S(0.3, 3, 24), S(0.3, 12, 24),                                # sigma_rgb
                     S(0.3, 6, 12)]                                                # sigma_xy
  assert chosen == S(0.3, 6, 12)
  assert [r["stage"] for r in rows] == ["baseline"] + ["weight"] * 4 + ["sigma_rgb"] * 2 + [
      "sigma_xy"]

  # Resume: everything is kept, nothing trains, the same rows and the same choice.
  again = []
  fake_training(monkeypatch, score, again)
  assert ps.search(tmp_path, SCHEDULE, GRID, 2000) == (rows, chosen)
  assert again == []
  result, markdown = ps.report(rows, chosen, SCHEDULE, 2000, "cmd")
  assert result["chosen"] == {"weight": 0.3, "sigma_rgb": 6.0, "sigma_xy": 12.0}
  assert "| sigma_xy | 0.3 | 6 | 12 | 26.0 | 10.0 |" in markdown


def test_table_only_stops_at_the_first_missing_setting(tmp_path, monkeypatch):
  trained = []
  fake_training(monkeypatch, lambda s: 0.2, trained)
  rows, chosen = ps.search(tmp_path, SCHEDULE, GRID, 2000, train_missing=False)
  assert (rows, chosen, trained) == ([], None, [])
  assert "pending" in ps.report(rows, chosen, SCHEDULE, 2000, "cmd")[1]


def test_val_confirmation_only_for_a_new_setting(tmp_path, monkeypatch):
  """The chosen setting is trained on all train images and scored on val, per seed; the default
  is the sweep's point_crf row and is never retrained."""
  trained = []
  fake_training(monkeypatch, lambda s: 0.3, trained)
  assert ps.confirm_on_val(tmp_path, SCHEDULE, ps.default_setting(), 3, 2000) == []
  chosen = ps.Setting(1.0, 6.0, 24.0)
  kept = ps.confirm_on_val(tmp_path, SCHEDULE, chosen, 2, 2000)
  assert [k["run"] for k in kept] == ["val_crf_w1_rgb6_xy24"] * 2 and trained == [chosen] * 2
  config = runs.run_config(ps.as_run(chosen, 2000, on_val=True), SCHEDULE, 1, 2000)
  assert (config.eval.split, config.data.train_fraction, config.seed) == ("val", 1.0, 1)
  assert ps.confirm_on_val(tmp_path, SCHEDULE, chosen, 2, 2000) == kept    # kept, not retrained
  assert len(trained) == 2
  markdown = ps.report([], chosen, SCHEDULE, 2000, "cmd", kept)[1]
  assert "seeds 0..1): 30.0, 30.0 % mIoU" in markdown
