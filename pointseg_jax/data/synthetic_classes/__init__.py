"""`synthetic_classes` TFDS builder (the pretraining corpus); importing registers it.

  from pointseg_jax.data import prepare
  builder = prepare("synthetic_classes/tiny", data_dir="/tmp/tfds")   # builds on first use
  ds = builder.as_dataset(split="heldout")

Configs: `tiny` (2 + 1 images per class at 32 px: tests) and `default` (120 + 20 per class at
64 px: `python -m pointseg_jax.pretrain`). Classes: `corpus.py`.
"""
from pointseg_jax.data.synthetic_classes.synthetic_classes import SyntheticClasses
from pointseg_jax.data.synthetic_classes.synthetic_classes import SyntheticClassesConfig

__all__ = ["SyntheticClasses", "SyntheticClassesConfig"]
