"""Box: pixel labels from boxes (smallest covering box wins), trained on them (Fig. 6a: 45.1 %).

  python -m pointseg_jax.main --config=configs/box.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/box.py:voc    # the paper's VOC run
  python -m pointseg_jax.main --config=configs/box.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("box", arg)
