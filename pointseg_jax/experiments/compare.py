"""One config per regime from one base config: what `demo --compare` and `table1` both train.

`regime_config(config, regime)` swaps the regime's row of the table in supervision.py (loss terms,
weights, label kind) into an otherwise unchanged config, so a comparison changes only the
supervision. On the synthetic variants it equals `configs/<regime>.py` with the same overrides
(tests/test_experiments.py checks this for every regime).
"""
import time

from pointseg_jax import config_lib
from pointseg_jax import predict
from pointseg_jax import supervision
from pointseg_jax import train
from pointseg_jax.data.spec import DataSpec


def regime_config(config, regime, *, squiggle_radius=None, train_fraction=None):
  """The same config with another regime's row of the table (terms, label field; on VOC also the
  authors' learning-rate ratio -- the synthetic configs use one lr for every regime).

  squiggle_radius: config.data.squiggle_radius (paper §4.2: 2, 5, 25); train_fraction:
  config.data.train_fraction (train on a fixed share of the train split, e.g. an equal-budget run).
  """
  other = config.copy_and_resolve_references()
  base = supervision.get_regime(config.regime)
  row = supervision.get_regime(regime)
  with other.unlocked():
    other.regime = regime
    other.data.label_kind = row.label_kind
    other.loss.weights = supervision.default_weights(regime)
    if config.data.dataset.startswith("voc"):
      other.optimizer.learning_rate = (config.optimizer.learning_rate * row.learning_rate
                                       / base.learning_rate)
    # The grown-points radius is that regime's own default (configs/grown_points.py), 0 elsewhere.
    other.data.point_radius = (config_lib.GROWN_POINTS_RADIUS if regime == "grown_points"
                               else DataSpec().point_radius)
    if squiggle_radius is not None:
      other.data.squiggle_radius = squiggle_radius
    if train_fraction is not None:
      other.data.train_fraction = train_fraction
  return other


def run_regime(config, workdir, *, predictions=True):
  """Train (or resume) + evaluate one config; returns (summary, seconds, prediction PNG paths)."""
  t = time.time()
  summary = train.train_and_evaluate(config, workdir)
  seconds = time.time() - t
  paths = predict.write_predictions(config, workdir) if predictions else []
  return summary, seconds, paths
