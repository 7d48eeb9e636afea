"""The objectness oracle (data.oracle_objectness) and experiments/objectness_ablation.py: the oracle
map by hand, refused with any split but a train hold-out, out of a real run's identity; the
ablation's arms train on train[:90%] and score the hold-out only."""
import json

import numpy as np
import pytest

from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import workdir as workdir_lib
from pointseg_jax.data import pipeline
from pointseg_jax.data.spec import DataSpec
from pointseg_jax.experiments import objectness_ablation as oa
from pointseg_jax.experiments import runs
from pointseg_jax.experiments import schedule_search as ss
from helpers import load_config

CANDIDATE = ss.Candidate(2000, 1e-3)


def test_oracle_map_by_hand():
  labels = np.array([[0, 0, 7], [255, 15, 0], [255, 0, 3]], np.int32)   # last row: padding
  valid = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0]], bool)
  got = pipeline.oracle_objectness(labels, valid, 0.1).numpy()
  np.testing.assert_allclose(got, [[0.1, 0.1, 0.9], [0.5, 0.9, 0.1], [0, 0, 0]], rtol=1e-6)


def test_the_oracle_is_refused_outside_a_train_holdout_and_stays_out_of_real_runs():
  with pytest.raises(errors.ConfigError, match="only be scored on a train hold-out"):
    config_lib.validate(load_config("image_obj", "synthetic", data__oracle_objectness=0.0))
  config_lib.validate(load_config("image_obj", "synthetic", data__oracle_objectness=0.0,
                                  eval__split="train[1800:]"))
  for bad in (0.5, -0.1, True):
    with pytest.raises(errors.ConfigError, match="oracle_objectness"):
      DataSpec(oracle_objectness=bad)
  real = load_config("image_obj", "synthetic")
  assert real.data.oracle_objectness is None
  assert "data.oracle_objectness" not in workdir_lib.identity(real)
  older = load_config("image_obj", "synthetic")
  with older.unlocked():
    del older.data["oracle_objectness"]
  assert workdir_lib.config_sha256(older) == workdir_lib.config_sha256(real)


def test_the_pipeline_feeds_the_oracle_instead_of_the_prior(tiny_data_dir):
  def batch(oracle):
    spec = DataSpec(dataset="synthetic_points/tiny", data_dir=tiny_data_dir, image_size=(64, 64),
                    label_kind="none", oracle_objectness=oracle)
    return next(pipeline.make_dataset(spec, "train", batch_size=4, train=True, seed=0))
  prior, oracle = batch(None), batch(1 / 257)
  np.testing.assert_array_equal(prior["labels"], oracle["labels"])
  labels, valid = oracle["labels"], oracle["valid"]
  objects = valid & (labels > 0) & (labels < 255)
  assert objects.any() and (valid & (labels == 0)).any()
  np.testing.assert_allclose(oracle["objectness"][objects], 256 / 257, rtol=1e-6)
  np.testing.assert_allclose(oracle["objectness"][valid & (labels == 0)], 1 / 257, rtol=1e-6)
  assert not np.allclose(prior["objectness"][objects], 256 / 257)


def test_arms_configs_order_and_resume(tmp_path, monkeypatch):
  trained = []

  def train_one(run, schedule, seed, out, num_train, data_dir=None):
    config = runs.run_config(run, schedule, seed, num_train, data_dir)
    config_lib.validate(config)    # the oracle arm passes: scored on the hold-out
    trained.append((run.name, config.regime, config.loss.weights.get("objectness", 0.0),
                    config.data.oracle_objectness, config.eval.split,
                    config.optimizer.schedule, config.train.num_steps))
    summary = {"run": run.name, "seed": seed, "fingerprint": runs.fingerprint(config),
               "miou": 0.2 + 0.01 * len(trained), "wall_time_s": 30.0,
               "eval_miou_by_step": {"1600": 0.1, "2000": 0.2 + 0.01 * len(trained)},
               "iou_per_class": {"background": 0.8, "aeroplane": 0.1, "bus": 0.3, "cat": None}}
    path = runs.run_dirs(out, run, seed)[0]
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return summary
  monkeypatch.setattr(runs, "train_one", train_one)
  rows = oa.ablate(tmp_path, "synthetic", CANDIDATE, 2000)
  split = "train[1800:]"
  assert trained == [("img", "image", 0.0, None, split, "cosine", 2000),
                     ("img_obj", "image_obj", 1.0, None, split, "cosine", 2000),
                     ("img_obj_oracle", "image_obj", 1.0, 1 / 257, split, "cosine", 2000),
                     ("img_obj_w0.3", "image_obj", 0.3, None, split, "cosine", 2000),
                     ("img_obj_w0.1", "image_obj", 0.1, None, split, "cosine", 2000)]
  assert rows[1]["object_iou_mean"] == pytest.approx(0.2)
  assert oa.ablate(tmp_path, "synthetic", CANDIDATE, 2000) == rows and len(trained) == 5
  markdown = oa.report(rows, CANDIDATE, "synthetic", 2000, "cmd")[1]
  assert "| img_obj_oracle | image_obj | oracle | 1 | – | – | – | 10.0 | 23.0 | +2.0 | 80.0 | 20.0 " in markdown
  assert "All arms trained." in markdown


@pytest.mark.slow
def test_a_real_tiny_oracle_run(tiny_data_dir, tmp_path):
  num_train = runs.num_train_examples("tiny", tiny_data_dir)
  rows = oa.ablate(tmp_path, "tiny", ss.Candidate(5, 1e-3), num_train, arms=oa.ARMS[2:3],
                   data_dir=tiny_data_dir)
  assert [r["name"] for r in rows] == ["img_obj_oracle"] and rows[0]["miou"] is not None
  saved = json.loads((runs.run_dirs(tmp_path, oa.ARMS[2].run(num_train), 0)[1]
                      / "config.json").read_text())
  assert saved["data"]["oracle_objectness"] == pytest.approx(1 / 257)
  assert saved["eval"]["split"].startswith("train[")
