"""`synthetic_points` TFDS builder (the embedded VOC-like benchmark); importing registers it.

  from pointseg_jax.data import prepare
  builder = prepare("synthetic_points/tiny", data_dir="/tmp/tfds")   # builds on first use
  ds = builder.as_dataset(split="train")

Configs: `tiny` (48 / 16 images at 64 px, seconds: tests and CI) and `default` (2000 / 300 at 128 px:
demo and Table-1 experiments). Statistics next to VOC 2012: docs/data_synthetic.md.
"""
from pointseg_jax.data.synthetic_points.synthetic_points import SyntheticPoints
from pointseg_jax.data.synthetic_points.synthetic_points import SyntheticPointsConfig

__all__ = ["SyntheticPoints", "SyntheticPointsConfig"]
