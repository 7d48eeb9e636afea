"""configs/: one file per regime, every variant loads, stable field names, clear errors."""
import importlib
import pathlib

import pytest

from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import main as main_lib
from pointseg_jax import supervision
from pointseg_jax.data.spec import DataSpec

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
REGIMES = sorted(supervision.REGIMES)
STABLE = ("seed", "train.num_steps", "train.checkpoint_every", "train.eval_every", "data.dataset",
          "data.image_size", "model.variant", "model.width")


def load(name, arg=None):
  return importlib.import_module(f"configs.{name}").get_config(arg)


def _get(config, dotted):
  for key in dotted.split("."):
    config = config[key]
  return config


def test_one_config_file_per_regime():
  # pretrain.py configures `python -m pointseg_jax.pretrain`, demo.py `make demo`: not regimes.
  files = {p.stem for p in CONFIG_DIR.glob("*.py")} - {"__init__", "pretrain", "demo"}
  assert files == set(REGIMES)


@pytest.mark.parametrize("name", REGIMES)
@pytest.mark.parametrize("arg", [None, "synthetic", "tiny", "voc", "tpu", "voc,tpu",
                                 "pretrained"])
def test_every_regime_and_variant_loads(name, arg):
  config = load(name, arg)
  for field in STABLE:
    _get(config, field)
  regime = supervision.get_regime(name)
  assert config.regime == name
  assert config.data.label_kind == regime.label_kind
  assert supervision.active_terms(dict(config.loss.weights)) == supervision.active_terms(
      regime.weights)
  DataSpec.from_config(config.data)   # every data field is one the pipeline knows
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
  with pytest.raises(errors.ConfigError, match=r"one of \(2, 5, 25\)"):
    load("squiggle", "7")
  with pytest.raises(errors.ConfigError, match="radius='x' of regime 'squiggle' must be int"):
    load("squiggle", "radius=x")


def test_bad_arguments_are_clear_errors():
  with pytest.raises(errors.ConfigError, match="unknown config variant 'gpu'; accepted: variants"):
    load("point", "gpu")
  with pytest.raises(ValueError, match="exclude each other"):
    load("point", "voc,tiny")
  with pytest.raises(ValueError, match="not known to regime 'point'"):
    load("point", "radius=5")
  with pytest.raises(errors.ConfigError, match="unknown supervision regime 'points'"):
    config_lib.get_config("points")


def test_default_workdir_is_runs_config_stem():
  assert main_lib.default_workdir("configs/point.py:voc,tpu") == "runs/point"
  assert main_lib.default_workdir("/x/configs/squiggle.py") == "runs/squiggle"


def test_config_files_are_thin_and_data_defaults_live_in_dataspec():
  for path in CONFIG_DIR.glob("*.py"):
    text = path.read_text()
    assert "sys.path" not in text and "configs import" not in text, path
  # One place for the data defaults: a config's data block is DataSpec's fields and defaults.
  synthetic = load("squiggle").data.to_dict()
  assert set(synthetic) == set(DataSpec().to_dict())
  assert synthetic["squiggle_radius"] == DataSpec().squiggle_radius == 5


@pytest.mark.e2e
def test_configs_load_by_absolute_path_from_any_directory(tmp_path):
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  code = ("from ml_collections import config_flags; from absl import flags; import sys;"
          "config_flags.DEFINE_config_file('config');"
          f"flags.FLAGS(['x', '--config={CONFIG_DIR / 'squiggle.py'}:voc,25']);"
          "print(flags.FLAGS.config.regime, flags.FLAGS.config.data.squiggle_radius)")
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       check=True, env={k: v for k, v in __import__("os").environ.items()
                                        if k != "PYTHONPATH"})
  assert out.stdout.split() == ["squiggle", "25.0"]
