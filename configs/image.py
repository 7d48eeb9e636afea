"""Img: image-level labels only, Eq. 2 with present and absent classes (Table 1a: 29.8 %).

  python -m pointseg_jax.main --config=configs/image.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/image.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/image.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("image", arg)
