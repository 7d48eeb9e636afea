"""Img + 1Point: one click per object class, no objectness, Eq. 2 + 3 (Table 1a: 35.1 %).

  python -m pointseg_jax.main --config=configs/point_noobj.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/point_noobj.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/point_noobj.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("point_noobj", arg)
