"""Img + Obj + squiggle: supervision grown around the clicks by a radius of 2, 5 or 25 pixels.

Paper §4.2: radii 2, 5 and 25 give 43.0-43.1 % (not in Table 1). The radius is the config argument:

  python -m pointseg_jax.main --config=configs/squiggle.py:25          # embedded benchmark, r=25
  python -m pointseg_jax.main --config=configs/squiggle.py:voc,radius=2
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("squiggle", arg)
