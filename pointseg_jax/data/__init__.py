"""Data: TFDS click datasets (`synthetic_points/`, `voc2012_points/`), click synthesis (`clicks`),
click JSON files (`click_json`), the tf.data pipeline (`pipeline`), and `prepare` (build on first
use). Label PNGs and the VOC palette are `pointseg_jax.labels`.

Importing this package stays light (no TensorFlow); builders register when their package is
imported or when `prepare` / `get_builder` is called.
"""
from pointseg_jax.data.prepare import get_builder, prepare

__all__ = ["get_builder", "prepare"]
