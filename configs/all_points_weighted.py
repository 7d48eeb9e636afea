"""Img + Obj + AllPoints (weighted): click r of a class weighs 2^-(r-1) (43.4 %).

  python -m pointseg_jax.main --config=configs/all_points_weighted.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/all_points_weighted.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/all_points_weighted.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("all_points_weighted", arg)
