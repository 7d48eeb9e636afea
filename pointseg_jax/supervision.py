"""Supervision regimes: the one table regime -> loss terms, weights, label kind and learning rate.

Every training config and the training step read this table, so a regime is defined in exactly one
place. Terms (`losses.py`, docs/losses.md):

  pixel       Eq. 1 on the dense `labels` (full supervision)
  image       Eq. 2 on the image-level labels `present` (the paper's L_img; part of every weak run)
  point       Eq. 3 sum term on `sparse_labels` / `sparse_weights` (points, squiggles, boxes)
  objectness  Eq. 4 on the `objectness` prior (the paper's "Obj")
  pairwise    beyond the paper: a Gated CRF energy on the `image` (docs/losses.md, "Pairwise term")

The total per-image loss is the weighted sum of the active terms, every weight 1 as in the authors'
Caffe layer (docs/losses.md); the pairwise term is weighted (0.1, as the Gated CRF authors). A regime's `label_kind` is the pipeline's `config.data.label_kind`:
what it rasterises into `sparse_labels` (data/label_kinds.py). Learning rates are the authors'
released solvers (docs/training.md): 1e-5, except AllPoints and random points at 5e-5.
"""
import dataclasses
from typing import Callable, Mapping

import jax.numpy as jnp

from pointseg_jax import IGNORE_INDEX
from pointseg_jax import errors
from pointseg_jax import losses


@dataclasses.dataclass(frozen=True)
class PairwiseKernel:
  """config.loss.pairwise: the Gated CRF window and kernel (losses.pairwise_loss).

  Defaults are the Gated CRF authors' (radius 5 and sigma_xy 6 cells on their network's stride-4
  output, sigma_rgb 0.1 on ImageNet-standardised RGB, i.e. about 0.1 * 0.226 * 255 = 5.8 in 0..255
  units) expressed in our units: a grid 4 times coarser than the input, sigma_xy 6 * 4 = 24 input
  pixels, sigma_rgb 6. Not tuned on our data.
  """
  radius: int = 5           # window half-size, in cells of the loss's grid
  sigma_rgb: float = 6.0    # colour bandwidth, 0..255 units
  sigma_xy: float = 24.0    # spatial bandwidth, input pixels
  scale: int = 4            # the loss's grid is `scale` times coarser than the logits

  def __post_init__(self):
    for name in ("radius", "scale"):
      value = getattr(self, name)
      if isinstance(value, bool) or int(value) != value or value < 1:
        raise errors.ConfigError(f"config.loss.pairwise.{name} must be an integer >= 1; got "
                                 f"{value!r}")
    for name in ("sigma_rgb", "sigma_xy"):
      value = getattr(self, name)
      if not value > 0 or value == float("inf"):
        raise errors.ConfigError(f"config.loss.pairwise.{name} must be a finite number > 0; got "
                                 f"{value!r}")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LossOptions:
  """The static (compile-time) settings of the terms, from config.loss. Hashable, so the compiled
  step is cached per value."""
  # True: the authors' Eq. 4 (only at unclicked pixels); False: the paper text (every pixel).
  objectness_exclude_clicked: bool = True
  pairwise: PairwiseKernel = PairwiseKernel()

  @classmethod
  def from_config(cls, loss_config) -> "LossOptions":
    """config.loss -> LossOptions; a missing `pairwise` block (older configs) means the defaults,
    an unknown field in it is a ConfigError."""
    block = dict(loss_config.get("pairwise") or {})
    known = {f.name for f in dataclasses.fields(PairwiseKernel)}
    unknown = sorted(set(block) - known)
    if unknown:
      raise errors.ConfigError(f"config.loss.pairwise has unknown fields {unknown}; known: "
                               f"{sorted(known)}")
    return cls(bool(loss_config.get("objectness_exclude_clicked", True)), PairwiseKernel(**block))


def _objectness(logits, batch, options):
  exclude = (batch["sparse_labels"] != IGNORE_INDEX if options.objectness_exclude_clicked
             else None)
  return losses.objectness_loss(logits, batch["objectness"], batch["valid"], exclude)


def _pairwise(logits, batch, options):
  k = options.pairwise
  return losses.pairwise_loss(logits, batch["image"], batch["valid"], radius=k.radius,
                              sigma_rgb=k.sigma_rgb, sigma_xy=k.sigma_xy, scale=k.scale)


@dataclasses.dataclass(frozen=True)
class Term:
  """A loss term: the batch fields it reads (the step transfers only those) and its per-image loss
  fn(logits, batch, options: LossOptions) -> float32 [B]."""
  fields: tuple[str, ...]
  fn: Callable


# Term table, in the order a step sums them (docs/batch_dict.md for the fields).
TERM_TABLE = {
    "pixel": Term(("labels", "valid"),
                  lambda logits, b, _: losses.pixel_loss(logits, b["labels"], b["valid"])),
    "image": Term(("known", "present", "valid"),
                  lambda logits, b, _: losses.image_level_loss(logits, b["present"], b["valid"],
                                                               b["known"])),
    "point": Term(("sparse_labels", "sparse_weights"),
                  lambda logits, b, _: losses.point_loss(logits, b["sparse_labels"],
                                                         b["sparse_weights"])),
    "objectness": Term(("objectness", "valid", "sparse_labels"), _objectness),
    "pairwise": Term(("image", "valid"), _pairwise),
}
TERMS = tuple(TERM_TABLE)

_IMG_OBJ_POINT = {"image": 1.0, "point": 1.0, "objectness": 1.0}


@dataclasses.dataclass(frozen=True)
class Regime:
  """One row of the paper's Table 1 / Fig. 6a."""
  name: str                       # config file stem: configs/<name>.py
  paper: str                      # the paper's name for the run
  label_kind: str                 # config.data.label_kind (what goes into sparse_labels)
  weights: Mapping[str, float]    # active term -> weight (inactive terms are absent)
  learning_rate: float = 1e-5     # authors' released solver.prototxt for this row
  paper_miou: float | None = None  # PASCAL VOC 2012 val mIoU in the paper (%)


REGIMES = {r.name: r for r in (
    Regime("image", "Img", "none", {"image": 1.0}, paper_miou=29.8),
    Regime("image_obj", "Img + Obj", "none", {"image": 1.0, "objectness": 1.0}, paper_miou=32.2),
    Regime("point_noobj", "Img + 1Point", "one_point", {"image": 1.0, "point": 1.0},
           paper_miou=35.1),
    Regime("point", "Img + Obj + 1Point", "one_point", _IMG_OBJ_POINT, paper_miou=42.7),
    Regime("all_points", "Img + Obj + AllPoints", "all_points", _IMG_OBJ_POINT,
           learning_rate=5e-5, paper_miou=42.7),
    Regime("all_points_weighted", "Img + Obj + AllPoints (weighted)", "all_points_weighted",
           _IMG_OBJ_POINT, paper_miou=43.4),
    Regime("three_annotators", "Img + Obj + 1Point (3 annotators)", "three_annotators",
           _IMG_OBJ_POINT, paper_miou=43.8),
    Regime("random_points", "Img + Obj + 1Point (random)", "random_points", _IMG_OBJ_POINT,
           learning_rate=5e-5, paper_miou=46.1),
    # Not in the paper: the protocol most later point-supervised work trains on (TEL, SPML, Gated
    # CRF): every instance clicked plus clicks on the background, here with Img + Obj like the
    # other rows so it differs from `all_points` only in the background clicks.
    Regime("all_points_bg", "Img + Obj + AllPoints + background clicks", "background_points",
           _IMG_OBJ_POINT),
    # Paper §5: each 1Point click grown into a disc of radius 2, 5 or 25 pixels gives 43.0-43.1
    # (not in Table 1); config argument radius=R (docs/clicks.md, "Grown points").
    Regime("grown_points", "Img + Obj + 1Point grown by radius r", "grown_points",
           _IMG_OBJ_POINT),
    # Beyond the paper: one error-free stroke per instance, drawn with a radius.
    Regime("squiggle", "not in the paper: Img + Obj + squiggle", "squiggle", _IMG_OBJ_POINT),
    # Paper §4.2 / Fig. 6a: boxes turned into per-pixel labels (smallest covering box wins), then
    # trained like full supervision on those labels.
    Regime("box", "Box", "box", {"point": 1.0}, paper_miou=45.1),
    # Eq. 1 on the dense masks (Fig. 6a, 58.3 %).
    Regime("full", "Full", "full", {"pixel": 1.0}, paper_miou=58.3),
    # Beyond the paper (issue 20): 1Point plus a Gated CRF term (Obukhov et al. 2019) that spreads
    # a click's label to neighbouring pixels of similar colour; weight 0.1 as its authors'.
    Regime("point_crf", "not in the paper: Img + Obj + 1Point + pairwise (Gated CRF)", "one_point",
           {**_IMG_OBJ_POINT, "pairwise": 0.1}),
)}


def get_regime(name: str) -> Regime:
  """The table row for `name`, or a clear error listing the known regimes."""
  if name not in REGIMES:
    raise errors.ConfigError(
        f"unknown supervision regime {name!r} (config.regime); known regimes: "
        f"{', '.join(REGIMES)} (pointseg_jax/supervision.py)")
  return REGIMES[name]


def default_weights(name: str) -> dict[str, float]:
  """Every term's weight for a regime, 0.0 for the inactive ones (what configs store)."""
  weights = get_regime(name).weights
  return {term: float(weights.get(term, 0.0)) for term in TERMS}


def active_terms(weights: Mapping[str, float]) -> tuple[str, ...]:
  """The terms with a non-zero weight, in TERMS order; a step computes only these."""
  unknown = set(weights) - set(TERMS)
  if unknown:
    raise errors.ConfigError(f"unknown loss terms {sorted(unknown)} in config.loss.weights; known: {TERMS}")
  terms = tuple(t for t in TERMS if weights.get(t, 0.0))
  if not terms:
    raise errors.ConfigError("config.loss.weights are all 0: at least one loss term must be active")
  return terms


def needed_fields(terms: tuple[str, ...]) -> tuple[str, ...]:
  """Batch fields a step with these terms reads (always `image`)."""
  fields = {"image"}
  for term in terms:
    fields.update(TERM_TABLE[term].fields)
  return tuple(sorted(fields))


def loss_terms(logits, batch, terms, options: LossOptions = LossOptions()):
  """Per-image losses {term: float32 [B]} for the given terms, with config.loss's static settings
  (LossOptions: which pixels Eq. 4 uses, the pairwise kernel)."""
  unknown = [t for t in terms if t not in TERM_TABLE]
  if unknown:
    raise ValueError(f"unknown loss terms {unknown}; known: {TERMS}")
  # Mixed precision: softmax, log and logsumexp in float32 whatever the model computed in (the
  # FCN already returns float32; this keeps the rule for any logits handed in).
  logits = jnp.asarray(logits, jnp.float32)
  return {t: TERM_TABLE[t].fn(logits, batch, options) for t in terms}


def total_loss(per_term, weights):
  """sum_t weights[t] * per_term[t], per image: float32 [B]."""
  terms = list(per_term)
  total = weights[terms[0]] * per_term[terms[0]]
  for term in terms[1:]:
    total = total + weights[term] * per_term[term]
  return jnp.asarray(total, jnp.float32)
