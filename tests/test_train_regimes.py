"""Every regime config trains end to end on the tiny set: train -> checkpoint -> resume -> eval.

Regimes that share their active loss terms share one compiled step (the learning rate and term
weights are traced inputs), so the 12 regimes cost 7 train-step compilations. The two ends of the
supervision spectrum (`image`, `full`) and the one term beyond the paper (`point_crf`: pairwise)
run in the fast suite, `point` in test_train.py; the rest of the table is `make test-slow` (about
10 s each on 2 cores).
"""
import json

import numpy as np
import pytest

from pointseg_jax import evaluate
from pointseg_jax import supervision
from pointseg_jax import train
from helpers import tiny_config  # noqa: F401


FAST = ("image", "full", "point_crf")


REGIMES = [r if r in FAST else pytest.param(r, marks=pytest.mark.slow)
           for r in sorted(supervision.REGIMES)]


@pytest.mark.parametrize("regime", REGIMES)
def test_regime_trains_resumes_and_evaluates(regime, tiny_data_dir, tmp_path):  # noqa: F811
  config = tiny_config(tiny_data_dir, name=regime, train__num_steps=2, train__checkpoint_every=2,
                       train__eval_every=100)
  first = train.train_and_evaluate(config, tmp_path)
  assert first["step"] == 2 and first["regime"] == regime
  config.train.num_steps = 4
  resumed = train.train_and_evaluate(config, tmp_path)
  assert resumed["resumed_from_step"] == 2 and resumed["step"] == 4
  assert 0.0 <= resumed["eval/miou"] <= 1.0
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if "train/loss" in r]
  assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
  active = supervision.active_terms(supervision.get_regime(regime).weights)
  for row in train_rows:
    assert {k.removeprefix("train/") for k in row} >= set(active)
    assert not {f"train/{t}" for t in supervision.TERMS if t not in active} & set(row)
    assert np.isfinite(row["train/loss"])
    # The total is the weighted sum of the active terms (weight 1 each; pairwise 0.1).
    weights = supervision.get_regime(regime).weights
    assert row["train/loss"] == pytest.approx(
        sum(weights[t] * row[f"train/{t}"] for t in active), rel=1e-5)
  assert evaluate.evaluate_checkpoint(config, tmp_path)["eval/miou"] == pytest.approx(
      resumed["eval/miou"])
