"""experiments/transfer_check.py: both arms' configs differ only in the init (and the pretrained
variant's conv1_1 parametrisation), seed-major order, resume, paired differences by hand."""
import json

import pytest

from pointseg_jax import config_lib
from pointseg_jax import workdir as workdir_lib
from pointseg_jax.experiments import runs
from pointseg_jax.experiments import transfer_check as tc


def test_arms_differ_only_in_the_init_and_the_table_pairs_seeds(tmp_path, monkeypatch):
  trained, configs = [], {}
  mious = {("synthetic", 0): 0.075, ("pretrained", 0): 0.10, ("synthetic", 1): 0.11,
           ("pretrained", 1): 0.09}

  def train_one(run, schedule, seed, out, num_train, data_dir=None):
    config = runs.run_config(run, schedule, seed, num_train, data_dir)
    config_lib.validate(config)
    variant = schedule.variant
    trained.append((variant, seed, config.train.num_steps, config.eval.split,
                    config.optimizer.schedule, config.data.image_size))
    configs[variant, seed] = workdir_lib.identity(config)
    summary = {"run": run.name, "seed": seed, "fingerprint": runs.fingerprint(config),
               "miou": mious[variant, seed], "wall_time_s": 90.0,
               "iou_per_class": {"background": 0.7}}
    path = runs.run_dirs(out, run, seed)[0]
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return summary
  monkeypatch.setattr(runs, "train_one", train_one)
  rows = tc.check(tmp_path, seeds=2)
  assert trained == [(v, s, 300, "val", "constant", (128, 128))
                     for s in (0, 1) for v in ("synthetic", "pretrained")]
  a, b = configs["synthetic", 0], configs["pretrained", 0]
  assert {k for k in set(a) | set(b) if a.get(k) != b.get(k)} <= {"model.init_from",
                                                                  "optimizer.input_rms"}
  assert tc.check(tmp_path, seeds=2) == rows and len(trained) == 4
  assert tc.paired(rows) == pytest.approx([0.025, -0.02])
  markdown = tc.report(rows, "cmd")[1]
  assert "| pretrained − scratch (points) | 2.50 | -2.00 |" in markdown
  assert "| scratch | 7.50 (70.00) | 11.00 (70.00) |" in markdown
  only = tc.check(tmp_path / "one", arms=("pretrained",), seeds=1)
  assert [r["arm"] for r in only] == ["pretrained"] and tc.paired(only) == []
