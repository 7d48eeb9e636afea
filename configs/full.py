"""Full supervision: Eq. 1 on the dense masks (Fig. 6a: 58.3 %).

  python -m pointseg_jax.main --config=configs/full.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/full.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/full.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("full", arg)
