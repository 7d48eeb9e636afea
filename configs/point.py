"""Img + Obj + 1Point: one click per class, Eq. 2 + 3 + 4; the paper's main result (42.7 %).

  python -m pointseg_jax.main --config=configs/point.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/point.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/point.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("point", arg)
