"""demo.py (`make demo`): the comparison configs and RESULTS.md, without training."""
import pathlib

from pointseg_jax import CLASS_NAMES
from pointseg_jax import config_lib
from pointseg_jax.experiments import demo
from pointseg_jax import supervision
from helpers import load_config


def test_default_config_is_the_pretrained_point_run_at_the_demo_schedule():
  """configs/demo.py = configs/point.py:pretrained trained as the pretrained schedule search trained
  schedule_search.DEMO_PRETRAINED (the search's rule within DEMO_STEPS); one eval at the end."""
  import importlib   # pylint: disable=g-import-not-at-top
  from pointseg_jax import workdir as workdir_lib   # pylint: disable=g-import-not-at-top
  from pointseg_jax.experiments import runs   # pylint: disable=g-import-not-at-top
  from pointseg_jax.experiments import schedule_search as ss   # pylint: disable=g-import-not-at-top
  assert pathlib.Path(demo.DEFAULT_CONFIG).name == "demo.py"
  config = importlib.import_module("configs.demo").get_config()
  config_lib.validate(config)
  searched = runs.run_config(runs.Run("point", "point"),
                             ss.schedule_of(ss.DEMO_PRETRAINED, "pretrained"), 0, 2000)
  assert workdir_lib.identity(config) == workdir_lib.identity(searched)   # same trained thing
  assert config.model.init_from == config_lib.PRETRAINED_INIT_FROM
  assert config.train.num_steps == ss.DEMO_PRETRAINED.num_steps <= ss.DEMO_STEPS
  assert config.train.eval_every == config.train.num_steps and config.train.progress_bar


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
