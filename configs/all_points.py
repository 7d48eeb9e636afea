"""Img + Obj + AllPoints: a click on every instance, weight 1, lr 5e-5 (Table 1b: 42.7 %).

  python -m pointseg_jax.main --config=configs/all_points.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/all_points.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/all_points.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("all_points", arg)
