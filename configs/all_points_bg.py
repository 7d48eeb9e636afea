"""Img + Obj + AllPoints + background clicks: every instance clicked and clicks on the background.

Not a row of the paper: the protocol most later point-supervised papers train on (TEL, SPML, Gated
CRF), as one more regime of the experiments (pointseg_jax/experiments/table1.py).

  python -m pointseg_jax.main --config=configs/all_points_bg.py
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("all_points_bg", arg)
