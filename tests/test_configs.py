"""configs/: one file per regime, every variant loads, stable field names, clear errors."""
import pathlib
import runpy

import pytest

from pointseg_jax import main as main_lib  # puts the repository root on sys.path
from pointseg_jax import supervision
from pointseg_jax.data import pipeline

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
REGIMES = sorted(supervision.REGIMES)
STABLE = ("seed", "train.num_steps", "train.checkpoint_every", "train.eval_every", "data.dataset",
          "data.image_size", "model.variant", "model.width")


def load(name, arg=None):
  module = runpy.run_path(str(CONFIG_DIR / f"{name}.py"))
  return module["get_config"](arg)


def _get(config, dotted):
  for key in dotted.split("."):
    config = config[key]
  return config


def test_one_config_file_per_regime():
  files = {p.stem for p in CONFIG_DIR.glob("*.py")} - {"__init__", "common"}
  assert files == set(REGIMES)


@pytest.mark.parametrize("name", REGIMES)
@pytest.mark.parametrize("arg", [None, "synthetic", "tiny", "voc", "tpu", "voc,tpu"])
def test_every_regime_and_variant_loads(name, arg):
  config = load(name, arg)
  for field in STABLE:
    _get(config, field)
  regime = supervision.get_regime(name)
  assert config.regime == name
  assert config.data.supervision == regime.supervision
  assert supervision.active_terms(dict(config.loss.weights)) == supervision.active_terms(
      regime.weights)
  pipeline.check_data_config(config.data)   # every data field is one the pipeline knows
  assert config.train.batch_size % 8 == 0 or "voc" in (arg or "")


def test_variants():
  synthetic = load("point")
  assert synthetic.data.dataset == "synthetic_points/default"
  assert synthetic.model.mode == "same" and synthetic.model.width == 1 / 8
  tiny = load("point", "tiny")
  assert tiny.data.dataset == "synthetic_points/tiny" and tiny.train.num_steps < 10
  voc = load("point", "voc")
  assert voc.data.dataset == "voc2012_points"
  assert (voc.model.mode, voc.model.width, voc.model.variant) == ("caffe", 1.0, "32s")
  assert voc.model.init_from.endswith(".npz")
  assert voc.optimizer.learning_rate == 1e-5            # the authors' solver
  assert load("all_points", "voc").optimizer.learning_rate == 5e-5
  assert load("random_points", "voc").optimizer.learning_rate == 5e-5
  tpu = load("point", "voc,tpu")
  assert tpu.distributed and tpu.data.dataset == "voc2012_points" and tpu.train.batch_size == 16
  for config in (synthetic, voc):   # paper §4.1 optimiser
    o = config.optimizer
    assert (o.momentum, o.weight_decay, o.bias_lr_mult) == (0.9, 5e-4, 2.0)
  # One measured lr for every regime on the synthetic set (docs/training.md).
  assert load("all_points").optimizer.learning_rate == synthetic.optimizer.learning_rate


def test_squiggle_radius_argument():
  assert load("squiggle").data.squiggle_radius == 5
  assert load("squiggle", "25").data.squiggle_radius == 25
  assert load("squiggle", "voc,radius=2").data.squiggle_radius == 2
  with pytest.raises(ValueError, match="2, 5 or 25"):
    load("squiggle", "7")


def test_bad_arguments_are_clear_errors():
  with pytest.raises(ValueError, match="unknown config variant 'gpu'"):
    load("point", "gpu")
  with pytest.raises(ValueError, match="exclude each other"):
    load("point", "voc,tiny")
  with pytest.raises(ValueError, match="not known to regime 'point'"):
    load("point", "radius=5")
  common = runpy.run_path(str(CONFIG_DIR / "common.py"))
  with pytest.raises(ValueError, match="unknown supervision regime 'points'"):
    common["get_config"]("points")


def test_default_workdir_is_runs_config_stem():
  assert main_lib.default_workdir("configs/point.py:voc,tpu") == "runs/point"
  assert main_lib.default_workdir("/x/configs/squiggle.py") == "runs/squiggle"
