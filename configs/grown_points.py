"""Img + Obj + 1Point grown: every 1Point click becomes a disc of radius R (paper §5, 43.0-43.1 %).

R is in pixels of the stored image. The paper's 2, 5 and 25 px are on ~500-px VOC photos; on the
128-px benchmark the same share of the image is R * 128 / 500 = 0.5, 1.3, 6.4 px (docs/clicks.md,
"Grown points"). Both are runnable; without a radius R = 1.3.

  python -m pointseg_jax.main --config=configs/grown_points.py:radius=6.4    # paper's 25, scaled
  python -m pointseg_jax.main --config=configs/grown_points.py:radius=25     # paper's 25, literal
  python -m pointseg_jax.main --config=configs/grown_points.py:voc,radius=5
  python -m pointseg_jax.main --config=configs/grown_points.py:tiny,radius=2
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("grown_points", arg)
