"""Img + Obj + 1Point (3 annotators): the first clicks of three workers (43.8 %).

  python -m pointseg_jax.main --config=configs/three_annotators.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/three_annotators.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/three_annotators.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("three_annotators", arg)
