"""`voc2012_points` TFDS builder; importing this package registers it with TFDS.

  import pointseg_jax.data.voc2012_points
  tfds.builder("voc2012_points", data_dir=...).download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=...))
"""
from pointseg_jax.data.voc2012_points.voc2012_points import Voc2012Points

__all__ = ["Voc2012Points"]
