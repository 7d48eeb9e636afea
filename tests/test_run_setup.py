"""run_setup.open_run: the one setup of train / eval / predict, checked before data or compile."""
import jax
import pytest

from pointseg_jax import errors
from pointseg_jax import run_setup
from pointseg_jax import workdir as workdir_lib
from helpers import load_config


def test_train_setup_checks_and_builds_everything_but_data(tmp_path):
  config = load_config("point", "tiny", data__data_dir="~/somewhere")
  run = run_setup.open_run(config, tmp_path / "run", mode="train")
  assert run.workdir == tmp_path / "run" and not run.workdir.exists()   # nothing written yet
  assert run.mesh.devices.size == jax.device_count() == 8
  assert run.model.num_classes == 21 and run.opt.name == config.optimizer.name
  assert run.spec.label_kind == config.data.label_kind
  assert not run.config.data.data_dir.startswith("~")                    # paths expanded


def test_eval_and_predict_read_the_runs_own_config(tmp_path):
  config = load_config("point", "tiny")
  with pytest.raises(errors.MissingInputError, match="holds no trained run"):
    run_setup.open_run(None, tmp_path, mode="eval")
  workdir_lib.write_config(config, tmp_path)
  ev = run_setup.open_run(None, tmp_path, mode="eval")
  pr = run_setup.open_run(None, tmp_path, mode="predict")
  assert ev.config.to_dict() == pr.config.to_dict()
  assert ev.mesh.devices.size == 8 and pr.mesh.devices.size == 1       # pictures: one device
  other = load_config("image", "tiny")
  with pytest.raises(errors.WorkdirError, match="regime: 'point' -> 'image'"):
    run_setup.open_run(other, tmp_path, mode="predict")


def test_bad_batch_size_and_mode_fail_before_anything_is_built(tmp_path):
  config = load_config("point", "tiny", eval__batch_size=3)
  with pytest.raises(errors.ConfigError, match="config.eval.batch_size"):
    run_setup.open_run(config, tmp_path, mode="train")
  with pytest.raises(ValueError, match="mode must be one of"):
    run_setup.open_run(config, tmp_path, mode="serve")
