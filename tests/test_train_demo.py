"""demo.py (`make demo`): the comparison configs and RESULTS.md, without training."""
import pathlib

import pytest

from pointseg_jax import CLASS_NAMES
from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax.experiments import demo
from pointseg_jax.experiments import demo_stability as ds
from pointseg_jax import supervision
from helpers import load_config


def test_default_config_is_the_chosen_hold_out_arm_on_the_demo_set():
  """configs/demo.py = configs/point.py:pretrained trained as demo_stability trained its chosen arm
  on default's train[:25%], but on synthetic_points/demo (those records: test_synthetic_points)
  and scored on val; one eval at the end."""
  import importlib   # pylint: disable=g-import-not-at-top
  from pointseg_jax import workdir as workdir_lib   # pylint: disable=g-import-not-at-top
  from pointseg_jax.experiments import runs   # pylint: disable=g-import-not-at-top
  from pointseg_jax.experiments import schedule_search as ss   # pylint: disable=g-import-not-at-top
  assert pathlib.Path(demo.DEFAULT_CONFIG).name == "demo.py"
  config = importlib.import_module("configs.demo").get_config()
  config_lib.validate(config)
  arm = ds.chosen_arm()
  searched = runs.run_config(ds.arm_run(arm, 2000), ss.schedule_of(arm.candidate, "pretrained"),
                             0, 2000)
  assert searched.data.train_fraction == 0.25 and searched.eval.split == "train[1800:]"
  with searched.unlocked():
    searched.data.update(dataset="synthetic_points/demo", train_fraction=1.0)
    searched.eval.split = "val"
  assert workdir_lib.identity(config) == workdir_lib.identity(searched)   # same trained thing
  assert config.model.init_from == config_lib.PRETRAINED_INIT_FROM
  assert config.train.num_steps == arm.candidate.num_steps <= ss.DEMO_STEPS
  assert config.train.eval_every == config.train.num_steps and config.train.progress_bar


def test_an_unfinished_stability_study_names_its_command(monkeypatch):
  """configs/demo.py before the study is done (or a hand edit to the reference): one line."""
  monkeypatch.setattr(ds, "CHOSEN", None)
  with pytest.raises(errors.ConfigError, match="experiments.demo_stability --out="):
    ds.chosen_arm()
  monkeypatch.setattr(ds, "CHOSEN", "holdout_lr0.01")   # the reference is never the demo
  with pytest.raises(errors.ConfigError, match="names no candidate arm"):
    ds.chosen_arm()


def test_regime_config_swaps_the_table_row_and_keeps_the_rest():
  config = load_config("point", None)
  other = config_lib.with_regime(config, "all_points")
  assert other.regime == "all_points" and other.data.label_kind == "all_points"
  assert other.loss.weights.to_dict() == supervision.default_weights("all_points")
  # One lr for every regime on the synthetic set; the released solvers' 5x on VOC.
  assert other.optimizer.learning_rate == config.optimizer.learning_rate
  voc = load_config("point", "voc")
  assert config_lib.with_regime(voc, "all_points").optimizer.learning_rate == 5e-5
  assert other.train.num_steps == config.train.num_steps and config.regime == "point"
  baseline = config_lib.with_regime(config, "image_obj")
  assert baseline.data.label_kind == "none"
  assert supervision.active_terms(dict(baseline.loss.weights)) == ("image", "objectness")


def test_results_markdown(tmp_path):
  config = load_config("point", None)
  iou = {name: (0.5 if name in ("background", "cat") else None) for name in CLASS_NAMES}
  summary = {"eval/miou": 0.5, "eval/pixel_accuracy": 0.8125, "eval/iou_per_class": iou,
             "step": 10}
  picture = tmp_path / "predictions" / "000_id3.png"
  text = demo.results_markdown(config, [("point", summary, 90.0, [picture])], 30.0, tmp_path)
  row = "| `point` | Img + Obj + 1Point | image + point + objectness | 50.0 % | 81.2 % | 1.5 min |"
  assert row in text
  assert "| cat | 50.0 |" in text and "| dog | – |" in text
  assert "![point](predictions/000_id3.png)" in text
  assert "Dataset build: 0.5 min" in text
  assert "trained from scratch: 2000 steps of 8 images at 128 px, SGD peak lr 0.001, constant" in text
  pretrained = load_config("point", "pretrained")
  assert "from the backbone pretrained on synthetic_classes" in demo.results_markdown(
      pretrained, [("point", summary, 90.0, [])], 0.0, tmp_path)
