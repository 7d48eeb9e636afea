"""config.optimizer.schedule: the lr at hand-computed steps, the default's unchanged behaviour and
identity, the decay length written into config.json, and the schedule a real run logs."""
import json
import math

import numpy as np
import optax
import pytest

from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import metric_writer
from pointseg_jax import train
from pointseg_jax import workdir as workdir_lib
from helpers import load_config, tiny_config


def lr_at(steps, *, schedule="constant", lr=1e-3, warmup=200, decay_steps=2000):
  optimizer = load_config("point", "synthetic").optimizer
  optimizer.update(learning_rate=lr, warmup_steps=warmup, schedule=schedule,
                   decay_steps=decay_steps)
  hparams = train.hyperparams(optimizer, {"point": 1.0})
  return np.array([float(train.learning_rate(hparams, np.int32(s))) for s in steps])


def test_constant_is_the_old_warmup_then_fixed_lr():
  # Update n = step + 1 gets n / 200 of the lr during the warmup, then the lr.
  np.testing.assert_allclose(lr_at([0, 99, 199, 200, 1999, 5000]),
                             [5e-6, 5e-4, 1e-3, 1e-3, 1e-3, 1e-3], rtol=1e-6)
  # hparams without the schedule's keys (older callers: pretrain, bench) are the same lr.
  hparams = {"learning_rate": np.float32(1e-3), "warmup_steps": np.float32(200)}
  assert float(train.learning_rate(hparams, np.int32(99))) == pytest.approx(5e-4, rel=1e-6)


def test_cosine_and_poly_by_hand():
  # warmup 200, decay to 2000: t = (step - 200) / 1800.
  steps = [0, 199, 200, 1100, 1550, 1999, 2000, 3000]
  cos = lambda t: 0.5 * (1 + math.cos(math.pi * t))
  np.testing.assert_allclose(
      lr_at(steps, schedule="cosine"),
      [5e-6, 1e-3, 1e-3, 5e-4, 1e-3 * cos(0.75), 1e-3 * cos(1799 / 1800), 0, 0],
      rtol=1e-5, atol=1e-10)   # float32: 1 + cos(pi t) near t = 1 keeps ~7 digits of 1e-3
  assert cos(0.75) == pytest.approx(0.1464466, abs=1e-7)
  np.testing.assert_allclose(
      lr_at(steps, schedule="poly"),
      [5e-6, 1e-3, 1e-3, 1e-3 * 0.5 ** 0.9, 1e-3 * 0.25 ** 0.9, 1e-3 * (1 / 1800) ** 0.9, 0, 0],
      rtol=1e-5, atol=1e-10)
  assert 0.5 ** 0.9 == pytest.approx(0.5358867, abs=1e-7)
  # After the warmup the cosine is optax's cosine_decay_schedule shifted by the warmup.
  reference = optax.cosine_decay_schedule(1e-3, 1800)
  after = np.arange(200, 2001, 37)
  np.testing.assert_allclose(lr_at(after, schedule="cosine"),
                             [float(reference(s - 200)) for s in after], rtol=1e-5, atol=1e-10)
  # No warmup: the decay starts at step 0.
  np.testing.assert_allclose(lr_at([0, 50, 100], schedule="cosine", warmup=0, decay_steps=100),
                             [1e-3, 5e-4, 0], rtol=1e-5, atol=1e-12)


def test_the_default_schedule_stays_out_of_a_runs_identity():
  """Configs written before the fields existed (no schedule, no decay_steps) are the same run."""
  config = load_config("point", "synthetic")
  assert (config.optimizer.schedule, config.optimizer.decay_steps) == ("constant", 0)
  older = load_config("point", "synthetic")
  with older.unlocked():
    del older.optimizer["schedule"], older.optimizer["decay_steps"]
  assert workdir_lib.config_sha256(config) == workdir_lib.config_sha256(older)
  assert workdir_lib.differences(older, config) == []
  cosine = load_config("point", "synthetic", optimizer__schedule="cosine",
                       optimizer__decay_steps=2000)
  assert workdir_lib.differences(older, cosine) == [
      "optimizer.decay_steps: '<absent>' -> 2000", "optimizer.schedule: '<absent>' -> 'cosine'"]


def test_decay_length_is_resolved_and_checked():
  config = load_config("point", "synthetic", optimizer__schedule="cosine")
  resolved = config_lib.with_decay_length(config)
  assert resolved.optimizer.decay_steps == 2000 and config.optimizer.decay_steps == 0
  explicit = load_config("point", "synthetic", optimizer__schedule="poly",
                         optimizer__decay_steps=3000)
  assert config_lib.with_decay_length(explicit).optimizer.decay_steps == 3000
  constant = load_config("point", "synthetic")
  assert config_lib.with_decay_length(constant) is constant
  with pytest.raises(errors.ConfigError, match="must be > optimizer.warmup_steps = 200"):
    config_lib.with_decay_length(load_config("point", "synthetic", optimizer__schedule="cosine",
                                             train__num_steps=150))
  with pytest.raises(errors.ConfigError, match="must be one of constant, cosine, poly"):
    config_lib.validate(load_config("point", "synthetic", optimizer__schedule="cos"))


def test_a_cosine_run_logs_its_schedule_and_records_its_length(tiny_data_dir, tmp_path):
  config = tiny_config(tiny_data_dir, optimizer__schedule="cosine", optimizer__warmup_steps=1,
                       train__num_steps=4, train__log_every=1, train__checkpoint_every=4,
                       train__eval_every=4)
  train.train_and_evaluate(config, tmp_path / "run")
  logged = [r["train/learning_rate"] for r in metric_writer.read_metrics(tmp_path / "run")
            if "train/learning_rate" in r]
  lr = config.optimizer.learning_rate
  # warmup 1 (step 0 gets the whole lr), then the decay over steps 1..4: t = (step - 1) / 3.
  expected = [lr * 0.5 * (1 + math.cos(math.pi * max(0, s - 1) / 3)) for s in (0, 1, 2, 3)]
  np.testing.assert_allclose(logged, expected, rtol=1e-5)
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert (saved["optimizer"]["schedule"], saved["optimizer"]["decay_steps"]) == ("cosine", 4)
