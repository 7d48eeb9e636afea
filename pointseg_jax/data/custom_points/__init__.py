"""`custom_points` TFDS builder (your own images and clicks); importing this package registers it.

  from pointseg_jax.data import prepare
  builder = prepare("custom_points", data_dir="tfds_mine", manual_dir="my_data")
  ds = builder.as_dataset(split="train")

Configs: `default` (missing objectness maps are computed into manual_dir/objectness/) and
`no_objectness`. The folder layout and the recipes: docs/data_custom.md.
"""
from pointseg_jax.data.custom_points.custom_points import CustomPoints
from pointseg_jax.data.custom_points.custom_points import CustomPointsConfig

__all__ = ["CustomPoints", "CustomPointsConfig"]
