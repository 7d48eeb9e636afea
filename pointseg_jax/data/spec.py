"""DataSpec: the one typed schema of `config.data`, with every default, validated once.

A training config's `data` block is `dataclasses.asdict(DataSpec(...))` (config_lib.py), and the
run builds `DataSpec.from_config(config.data)` once and passes it down to the pipeline, the
evaluator and the predictor. Bad fields fail here, before anything is compiled or built, with a
`ConfigError` that names the field and the fix (docs/pipeline.md, "config.data").

`label_kind` says what the pipeline rasterises into `sparse_labels` (the label kinds of
`data/label_kinds.py`); the *regime* (`supervision.py`) says which loss terms train on it.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any, Mapping

from pointseg_jax import errors

# What goes into sparse_labels / sparse_weights (paper Table 1; docs/pipeline.md "Label kinds").
# data/label_kinds.py holds how each one rasterises; a test keeps the two lists equal.
LABEL_KINDS = (
    "none",                 # image-level labels only: all 255
    "one_point",            # 1Point: rank-1 clicks of annotator 0
    "all_points",           # AllPoints: every click of annotator 0, weight 1
    "all_points_weighted",  # AllPoints with rank weights 2^-(r-1)
    "three_annotators",     # 1Point (3 annotators): rank-1 clicks of annotators 0, 1, 2
    "random_points",        # 1Point random: uniform inside the class mask
    "background_points",    # every click of annotator 0 + background clicks (TEL-style)
    "grown_points",         # 1Point clicks grown into discs of point_radius (paper §5)
    "squiggle",             # strokes drawn with squiggle_radius (beyond the paper)
    "box",                  # smallest covering box, background outside boxes (dense)
    "full",                 # the dense mask
)
IMAGE_LABELS_FROM = ("classes", "clicks")


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """Every data field and its default (the configs override what they need)."""
  dataset: str = "synthetic_points/default"   # TFDS name (data/prepare.py BUILDERS + config)
  data_dir: str | None = None      # TFDS data dir (None = TFDS default, ~/tensorflow_datasets)
  manual_dir: str | None = None    # voc2012_points: VOCdevkit / SBD / JSON; custom_points: your folder
  image_size: tuple[int, int] = (128, 128)   # static (H, W) of every batch
  label_kind: str = "one_point"    # LABEL_KINDS: what sparse_labels holds
  squiggle_radius: float = 5       # stroke half-width, stored-image pixels (beyond the paper)
  # grown_points: disc radius around each click, stored-image pixels (paper §5: 2, 5, 25 px of
  # ~500-px VOC photos = 0.5, 1.3, 6.4 px of the 128-px benchmark; docs/clicks.md).
  point_radius: float = 0
  augment: bool = True             # random scale / crop / flip on train
  scale_range: tuple[float, float] = (0.75, 1.25)
  image_labels_from: str = "classes"   # `present` from the class list, or from the clicks
  # Train on the first ceil(fraction * N) records of this host's train slice (file order, which
  # TFDS shuffled at write time): the same images for every seed, e.g. what a fixed annotation
  # budget buys (experiments/annotation_cost.py). Eval and predict always read the whole split.
  train_fraction: float = 1.0
  # ORACLE, for ablations on a train hold-out only (config_lib.validate refuses it with any other
  # eval split): None = the objectness prior's maps (every real regime). A number eps in [0, 0.5)
  # replaces them by a map made from the ground-truth mask: P = 1 - eps on object pixels, eps on
  # background, 0.5 on the void band (docs/losses.md, "An oracle objectness map").
  oracle_objectness: float | None = None

  def __post_init__(self):
    def bad(field, fix):
      return errors.ConfigError(f"config.data.{field} = {getattr(self, field)!r}: {fix}")

    if not isinstance(self.dataset, str) or not self.dataset:
      raise bad("dataset", "a TFDS name such as 'synthetic_points/default' or 'voc2012_points'")
    for field in ("data_dir", "manual_dir"):
      if getattr(self, field) is not None and not isinstance(getattr(self, field), str):
        raise bad(field, "a directory path (str) or None")
      if isinstance(getattr(self, field), str) and not getattr(self, field).strip():
        # TFDS would read and build in the current directory (e.g. `--data_dir=` from a script
        # whose variable was unset): refuse rather than scatter a dataset there.
        raise bad(field, "a directory path, or unset (None) for the default; an empty path "
                  "would put the dataset in the current directory")
    size = self.image_size
    if (not isinstance(size, (tuple, list)) or len(size) != 2
        or not all(_is_int(v) and v > 0 for v in size)):
      raise bad("image_size", "two positive ints (height, width), e.g. (128, 128)")
    if self.label_kind not in LABEL_KINDS:
      raise bad("label_kind", f"one of {', '.join(LABEL_KINDS)}")
    radius = self.squiggle_radius
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius >= 1:
      raise bad("squiggle_radius", "a number >= 1 (pixels; the paper used 2, 5, 25)")
    radius = self.point_radius
    if (isinstance(radius, bool) or not isinstance(radius, (int, float))
        or not 0 <= radius < float("inf")):
      raise bad("point_radius", "a finite number >= 0 (stored-image pixels; docs/clicks.md maps "
                "the paper's 2, 5, 25 to 0.5, 1.3, 6.4 on the 128-px benchmark)")
    scale = self.scale_range
    if (not isinstance(scale, (tuple, list)) or len(scale) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
        or not 0 < scale[0] <= scale[1]):
      raise bad("scale_range", "(lo, hi) with 0 < lo <= hi, e.g. (0.75, 1.25)")
    if not isinstance(self.augment, bool):
      raise bad("augment", "True or False")
    fraction = self.train_fraction
    if (isinstance(fraction, bool) or not isinstance(fraction, numbers.Real)
        or not 0 < fraction <= 1):
      raise bad("train_fraction", "a number in (0, 1]: the share of the train split to train on")
    eps = self.oracle_objectness
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, numbers.Real)
                            or not 0 <= eps < 0.5):
      raise bad("oracle_objectness", "None (the prior's maps) or a number in [0, 0.5) (the "
                "oracle's softening; hold-out ablations only)")
    if self.image_labels_from not in IMAGE_LABELS_FROM:
      raise bad("image_labels_from", f"one of {IMAGE_LABELS_FROM}")
    # Normalise to plain, hashable Python values (tf.data functions close over the spec).
    set_ = object.__setattr__
    set_(self, "image_size", (int(size[0]), int(size[1])))
    set_(self, "squiggle_radius", float(self.squiggle_radius))
    set_(self, "point_radius", float(self.point_radius))
    set_(self, "scale_range", (float(scale[0]), float(scale[1])))
    set_(self, "train_fraction", float(fraction))
    set_(self, "oracle_objectness", None if eps is None else float(eps))
    for field in ("data_dir", "manual_dir"):
      set_(self, field, expand_path(getattr(self, field)))

  @classmethod
  def from_config(cls, data_config: Mapping[str, Any] | "DataSpec") -> "DataSpec":
    """The spec of a `config.data` block (ConfigDict or dict); unknown fields are errors."""
    if isinstance(data_config, cls):
      return data_config
    values = dict(data_config)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
      raise errors.ConfigError(f"config.data has unknown fields {unknown}; known fields: {known} "
                               "(pointseg_jax/data/spec.py)")
    return cls(**values)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def expand_path(path: str | None) -> str | None:
  """`~` and $VARS expanded; remote URLs (gs://, s3://) kept as they are."""
  if path is None or "://" in path:
    return path
  return os.path.expandvars(os.path.expanduser(path))


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)
