"""Img + Obj + 1Point (random): one point per class drawn in the mask, lr 5e-5 (46.1 %).

  python -m pointseg_jax.main --config=configs/random_points.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/random_points.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/random_points.py:tiny   # seconds (tests, CI)
"""
from configs import common


def get_config(arg=None):
  return common.get_config("random_points", arg)
