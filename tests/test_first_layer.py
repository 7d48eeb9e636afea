"""experiments/first_layer.py: the two arms' configs (plain vs V = r W on conv1_1, pretrained init,
train hold-out), the stated rule, resume, the report; r read from the committed file's _meta."""
import json

import pytest

from pointseg_jax import config_lib
from pointseg_jax import workdir as workdir_lib
from pointseg_jax.experiments import first_layer as fl
from pointseg_jax.experiments import runs
from pointseg_jax.models import weights as weights_lib


def test_r_is_the_committed_files_and_the_pretrained_variant_uses_it():
  r = fl.input_rms_of()
  assert 40 < r < 70   # the Caffe-preprocessed corpus input's RMS (docs/training.md, "Pretraining")
  assert r == weights_lib.read_meta(config_lib.PRETRAINED_INIT_FROM)["input_rms"]
  assert config_lib.get_config("point", "pretrained").optimizer.input_rms == r
  assert config_lib.get_config("point").optimizer.input_rms == 1.0


def test_a_file_without_input_rms_names_the_command(tmp_path):
  path = weights_lib.save_npz(str(tmp_path / "old.npz"), {"conv1_1/kernel": [[1.0]]}, width=0.125)
  with pytest.raises(weights_lib.WeightsError, match=r"no input_rms.*python -m pointseg_jax.pretrain"):
    fl.input_rms_of(path)


def test_arms_rule_resume_and_report(tmp_path, monkeypatch):
  trained = []
  mious = {"plain": 0.30, "normalised": 0.295}

  def train_one(run, schedule, seed, out, num_train, data_dir=None):
    config = runs.run_config(run, schedule, seed, num_train, data_dir)
    config_lib.validate(config)
    trained.append((run.name, config.optimizer.input_rms, config.model.init_from,
                    config.eval.split, config.optimizer.schedule, config.train.num_steps))
    summary = {"run": run.name, "seed": seed, "fingerprint": runs.fingerprint(config),
               "miou": mious[run.name], "wall_time_s": 60.0,
               "eval_miou_by_step": {"1600": 0.2, "2000": mious[run.name]},
               "iou_per_class": {"background": 0.8}}
    path = runs.run_dirs(out, run, seed)[0]
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return summary
  monkeypatch.setattr(runs, "train_one", train_one)
  rows = fl.compare(tmp_path, "pretrained", 2000, 55.0)
  assert trained == [("plain", 1.0, config_lib.PRETRAINED_INIT_FROM, "train[1800:]", "cosine", 2000),
                     ("normalised", 55.0, config_lib.PRETRAINED_INIT_FROM, "train[1800:]",
                      "cosine", 2000)]
  assert fl.choose(rows) == "normalised"   # plain only 0.5 points above: within the tie
  assert fl.compare(tmp_path, "pretrained", 2000, 55.0) == rows and len(trained) == 2
  assert fl.choose(rows[:1]) is None
  assert fl.choose([dict(rows[0], miou=0.31), rows[1]]) == "plain"
  assert fl.choose([rows[0], dict(rows[1], miou=None)]) == "plain"   # diverged
  markdown = fl.report(rows, "pretrained", 2000, "cmd")[1]
  assert "| normalised | 55 | – | – | – | 20.0 | 29.5 | 80.0 | 1.0 |" in markdown
  assert "**Chosen: normalised**" in markdown


def test_input_rms_at_1_stays_out_of_a_runs_identity():
  config = config_lib.get_config("point")
  assert "optimizer.input_rms" not in workdir_lib.identity(config)
  with config.unlocked():
    config.optimizer.input_rms = 55.0
  assert workdir_lib.identity(config)["optimizer.input_rms"] == 55.0
