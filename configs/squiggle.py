"""Img + Obj + squiggle: supervision grown around the clicks by a radius of 2, 5 or 25 pixels.

Paper §4.2: radii 2, 5 and 25 give 43.0-43.1 % (not in Table 1). The radius is the config argument:

  python -m pointseg_jax.main --config=configs/squiggle.py:25          # embedded benchmark, r=25
  python -m pointseg_jax.main --config=configs/squiggle.py:voc,radius=2
"""
from configs import common


def get_config(arg=None):
  # A bare number is the radius: 'voc,25' == 'voc,radius=25'.
  tokens = [t.strip() for t in (arg or "").split(",")]
  tokens = [f"radius={t}" if t.isdigit() else t for t in tokens]
  return common.get_config("squiggle", ",".join(tokens), allowed_kwargs=("radius",))
