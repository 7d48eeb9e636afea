"""Img + Obj + squiggle (beyond the paper): one error-free stroke per instance, drawn with a radius.

Not the paper's radius experiment: the paper grows each 1Point click into a disc of radius 2, 5 or
25 px (§5), which is configs/grown_points.py. Squiggles are a denser, stroke-shaped supervision
kept for comparison; the radius is the config argument, in stored-image pixels:

  python -m pointseg_jax.main --config=configs/squiggle.py:25          # embedded benchmark, r=25
  python -m pointseg_jax.main --config=configs/squiggle.py:voc,radius=2
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("squiggle", arg)
