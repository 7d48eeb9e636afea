"""Img + Obj + 1Point (random): one point per class drawn in the mask, lr 5e-5 (46.1 %).

  python -m pointseg_jax.main --config=configs/random_points.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/random_points.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/random_points.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("random_points", arg)
