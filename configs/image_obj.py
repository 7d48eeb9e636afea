"""Img + Obj: image-level labels plus the objectness prior, Eq. 2 + 4 (Table 1a: 32.2 %).

  python -m pointseg_jax.main --config=configs/image_obj.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/image_obj.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/image_obj.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("image_obj", arg)
