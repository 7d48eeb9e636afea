"""The regime table (supervision.py): terms, label fields, learning rates and the loss it builds."""
import jax
import numpy as np
import pytest

from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import losses
from pointseg_jax import supervision
from pointseg_jax.data.spec import LABEL_KINDS

PAPER_TABLE = {  # regime -> (active terms, pipeline supervision, authors' lr)
    "image": ({"image"}, "none", 1e-5),
    "image_obj": ({"image", "objectness"}, "none", 1e-5),
    "point_noobj": ({"image", "point"}, "one_point", 1e-5),
    "point": ({"image", "point", "objectness"}, "one_point", 1e-5),
    "all_points": ({"image", "point", "objectness"}, "all_points", 5e-5),
    "all_points_weighted": ({"image", "point", "objectness"}, "all_points_weighted", 1e-5),
    "three_annotators": ({"image", "point", "objectness"}, "three_annotators", 1e-5),
    "random_points": ({"image", "point", "objectness"}, "random_points", 5e-5),
    "grown_points": ({"image", "point", "objectness"}, "grown_points", 1e-5),
    # Not the paper's: later papers' protocol (every instance + background clicks), our losses.
    "all_points_bg": ({"image", "point", "objectness"}, "background_points", 1e-5),
    "box": ({"point"}, "box", 1e-5),
    "full": ({"pixel"}, "full", 1e-5),
}
BEYOND_THE_PAPER = {  # regime -> (term weights, pipeline supervision, lr)
    "squiggle": ({"image": 1.0, "point": 1.0, "objectness": 1.0}, "squiggle", 1e-5),
    "point_crf": ({"image": 1.0, "point": 1.0, "objectness": 1.0, "pairwise": 0.1}, "one_point",
                  1e-5),
}


def test_table_matches_the_paper_and_the_released_solvers():
  assert set(supervision.REGIMES) == set(PAPER_TABLE) | set(BEYOND_THE_PAPER)
  for name, (terms, sup, lr) in PAPER_TABLE.items():
    regime = supervision.get_regime(name)
    assert set(supervision.active_terms(regime.weights)) == terms, name
    assert regime.label_kind == sup, name
    assert regime.learning_rate == lr, name
    assert all(w == 1.0 for w in regime.weights.values()), name   # authors: no lambdas
  for name, (weights, sup, lr) in BEYOND_THE_PAPER.items():
    regime = supervision.get_regime(name)
    assert dict(regime.weights) == weights and regime.label_kind == sup, name
    assert regime.learning_rate == lr and regime.paper_miou is None, name
    assert "not in the paper" in regime.paper, name


def test_every_supervision_field_is_one_the_pipeline_knows():
  for regime in supervision.REGIMES.values():
    assert regime.label_kind in LABEL_KINDS


def test_unknown_regime_is_a_clear_error():
  with pytest.raises(ValueError, match=r"unknown supervision regime 'points'.*image_obj"):
    supervision.get_regime("points")


def test_default_weights_list_every_term():
  assert supervision.default_weights("image_obj") == {
      "pixel": 0.0, "image": 1.0, "point": 0.0, "objectness": 1.0, "pairwise": 0.0}


def test_active_terms_rejects_unknown_and_all_zero():
  with pytest.raises(ValueError, match="unknown loss terms"):
    supervision.active_terms({"image": 1.0, "clicks": 1.0})
  with pytest.raises(ValueError, match="all 0"):
    supervision.active_terms({"image": 0.0, "point": 0.0})
  assert supervision.active_terms({"objectness": 2.0, "image": 1.0}) == ("image", "objectness")


def test_needed_fields():
  assert supervision.needed_fields(("image",)) == ("image", "known", "present", "valid")
  assert supervision.needed_fields(("point", "objectness")) == (
      "image", "objectness", "sparse_labels", "sparse_weights", "valid")
  assert supervision.needed_fields(("pairwise",)) == ("image", "valid")


def _batch():
  rng = np.random.default_rng(0)
  b, h, w = 2, 4, 5
  sparse = np.full((b, h, w), 255, np.int32)
  sparse[0, 1, 2] = 3
  sparse[1, 0, 0] = 0
  present = np.zeros((b, 21), bool)
  present[:, 0] = True
  present[0, 3] = True
  return {
      "image": rng.uniform(0, 255, (b, h, w, 3)).astype(np.float32),
      "labels": rng.integers(0, 21, (b, h, w)).astype(np.int32),
      "valid": np.ones((b, h, w), bool),
      "present": present,
      "known": np.ones((b, 21), bool) & (np.arange(21) != 5),   # class 5 not asked
      "sparse_labels": sparse,
      "sparse_weights": (sparse != 255).astype(np.float32),
      "objectness": rng.uniform(0.1, 0.9, (b, h, w)).astype(np.float32),
  }, rng.normal(size=(b, h, w, 21)).astype(np.float32)


KERNEL = supervision.PairwiseKernel(radius=2, sigma_rgb=50.0, sigma_xy=3.0, scale=1)


@jax.jit
def _terms_and_references(logits, batch):
  """Both sides in one jit: op-by-op eager dispatch compiles every op (slow on 2 cores)."""
  options = supervision.LossOptions(pairwise=KERNEL)
  got = supervision.loss_terms(logits, batch, supervision.TERMS, options)
  got["objectness_everywhere"] = supervision.loss_terms(
      logits, batch, ("objectness",),
      supervision.LossOptions(objectness_exclude_clicked=False))["objectness"]
  want = {
      "pixel": losses.pixel_loss(logits, batch["labels"], batch["valid"]),
      "image": losses.image_level_loss(logits, batch["present"], batch["valid"], batch["known"]),
      "point": losses.point_loss(logits, batch["sparse_labels"], batch["sparse_weights"]),
      # Authors' Eq. 4: clicked pixels excluded; the paper text (False) uses every pixel.
      "objectness": losses.objectness_loss(logits, batch["objectness"], batch["valid"],
                                           batch["sparse_labels"] != 255),
      "objectness_everywhere": losses.objectness_loss(logits, batch["objectness"],
                                                      batch["valid"]),
      "pairwise": losses.pairwise_loss(logits, batch["image"], batch["valid"], radius=2,
                                       sigma_rgb=50.0, sigma_xy=3.0),
  }
  return got, want


def test_loss_terms_call_the_paper_equations():
  batch, logits = _batch()
  got, want = jax.device_get(_terms_and_references(logits, batch))
  assert set(got) == set(want)
  for term in want:
    np.testing.assert_allclose(got[term], want[term], err_msg=term)
  assert not np.allclose(got["objectness"], got["objectness_everywhere"])


def test_total_loss_is_the_weighted_sum():
  per_term = {"image": np.array([1.0, 2.0]), "point": np.array([0.5, 4.0])}
  total = supervision.total_loss(per_term, {"image": 1.0, "point": 0.25})
  np.testing.assert_allclose(total, [1.125, 3.0])
  assert total.dtype == np.float32


def test_loss_options_from_config_and_bad_values():
  config = config_lib.get_config("point")
  assert supervision.LossOptions.from_config(config.loss) == supervision.LossOptions()
  config.loss.pairwise.radius = 3
  config.loss.objectness_exclude_clicked = False
  options = supervision.LossOptions.from_config(config.loss)
  assert options.pairwise.radius == 3 and not options.objectness_exclude_clicked
  hash(options)   # a static argument of the compiled step
  with pytest.raises(errors.ConfigError, match=r"config.loss.pairwise.scale must be an integer"):
    supervision.PairwiseKernel(scale=0)
  with pytest.raises(errors.ConfigError, match=r"config.loss.pairwise.sigma_xy must be"):
    supervision.PairwiseKernel(sigma_xy=float("nan"))
  with config.loss.pairwise.unlocked():
    config.loss.pairwise.sigma = 3.0
  with pytest.raises(errors.ConfigError, match=r"unknown fields \['sigma'\]"):
    supervision.LossOptions.from_config(config.loss)
