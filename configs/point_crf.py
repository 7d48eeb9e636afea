"""Img + Obj + 1Point + pairwise: the paper's main regime plus a Gated CRF term (not in the paper).

The pairwise term (losses.pairwise_loss, docs/losses.md "Pairwise term") spreads a click's label to
neighbouring pixels of similar colour; its weight is config.loss.weights.pairwise (0.1) and its
window / kernel config.loss.pairwise. Any other regime takes the term the same way:
`--config.loss.weights.pairwise=0.1`.

  python -m pointseg_jax.main --config=configs/point_crf.py        # embedded benchmark
  python -m pointseg_jax.main --config=configs/point_crf.py:voc    # VOC
  python -m pointseg_jax.main --config=configs/point_crf.py:tiny   # seconds (tests, CI)
"""

from pointseg_jax import config_lib


def get_config(arg=None):
  return config_lib.get_config("point_crf", arg)
