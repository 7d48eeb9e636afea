"""The paper's annotation-cost model (Bearman et al. 2016, §3 "Annotation time"; §4.2, Fig. 6a).

Seconds of human work per image, for PASCAL VOC (20 classes, 1.5 present classes and 2.8 instances
per image on average):

  image-level   20 classes x 1 s                                   =  20.0 s
  1Point        18.5 s for the absent classes + 1.5 x 2.4 s        =  22.1 s
  AllPoints     18.5 + 1.5 x (2.4 + 0.9 x 0.8)                     =  23.2 s
  3 annotators  the paper's figure for 1Point from 3 annotators    =  29.3 s
  box           18.5 + 2.8 instances x 30 s                        = 102.5 s
  full          18.5 + 2.8 instances x 79 s (COCO's polygon time)  = 239.7 s

Random points are drawn from the full masks, but one per class as 1Point, so they are costed as
1Point. Squiggles and background clicks have no cost in the paper: those regimes are left out of
the cost axis (None) rather than given a number the paper does not state.

We apply the VOC per-image costs to the embedded benchmark as they are: its scenes were generated
to have VOC's class and instance counts (docs/data_synthetic.md), so the per-image click and box
counts the model prices are about the same.
"""
import math

# Seconds per image (paper §3), keyed by supervision regime (supervision.REGIMES).
SECONDS_PER_IMAGE = {
    "image": 20.0,
    "image_obj": 20.0,            # the objectness prior costs no human time
    "point_noobj": 22.1,
    "point": 22.1,
    "random_points": 22.1,
    "all_points": 23.2,
    "all_points_weighted": 23.2,
    "three_annotators": 29.3,
    "box": 102.5,
    "full": 239.7,
    "grown_points": 22.1,         # the same clicks as 1Point, grown by the pipeline
    "squiggle": None,
    "all_points_bg": None,
    "point_crf": 22.1,            # the same clicks as 1Point; the pairwise term costs no human time
}


def seconds_per_image(regime: str) -> float | None:
  """The paper's cost of one image's labels for `regime`; None where the paper gives none."""
  if regime not in SECONDS_PER_IMAGE:
    raise KeyError(f"no annotation cost entry for regime {regime!r} "
                   "(pointseg_jax/experiments/annotation_cost.py)")
  return SECONDS_PER_IMAGE[regime]


def hours(regime: str, num_images: int) -> float | None:
  """Annotation hours for `num_images` images labelled for `regime`."""
  s = seconds_per_image(regime)
  return None if s is None else s * num_images / 3600.0


def images_for_budget(regime: str, budget_seconds_per_image: float, num_images: int) -> int:
  """How many of `num_images` images `regime`'s labels can be bought with the hours that
  `budget_seconds_per_image` x num_images buys (at most all of them)."""
  s = seconds_per_image(regime)
  if s is None:
    raise ValueError(f"regime {regime!r} has no annotation cost in the paper")
  return min(num_images, max(1, math.floor(num_images * budget_seconds_per_image / s)))
