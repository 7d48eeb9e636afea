"""`make demo`: Img + Obj + 1Point from the pretrained backbone, trained and chosen without val.

  python -m pointseg_jax.experiments.demo                      # this config (make demo)
  python -m pointseg_jax.main --config=configs/demo.py         # the same run without the report

`configs/point.py:pretrained` (the committed synthetic_classes backbone, conv1_1 fine-tuned as
V = r W) on `synthetic_points/demo` — `default`'s val and the first quarter of its train split, bit
for bit, so the build fits the demo's 5 minutes — at the lr `demo_stability.CHOSEN`: the arm whose
three seeds were converged and agreed within 3 points on `default`'s train hold-out
(docs/training.md, "The demo's schedule"). 96-px images, SGD cosine after a 200-step warmup, clip
20, 2,000 steps, as the hold-out runs trained. Scored once on val.
"""
from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax.experiments import demo_stability
from pointseg_jax.experiments import schedule_search

DATASET = "synthetic_points/demo"


def get_config(arg=None):
  if arg not in (None, ""):
    raise errors.ConfigError(f"configs/demo.py takes no variant (got {arg!r}); "
                             "configs/point.py:<variant> has them")
  candidate = demo_stability.chosen_arm().candidate
  c = schedule_search.schedule_of(candidate, "pretrained").apply(
      config_lib.get_config("point", "pretrained"))
  c.data.dataset = DATASET
  # What a person watching wants: a progress bar, one evaluation at the end, the trainer's usual
  # checkpoints (the hold-out runs kept one and scored the hold-out five times).
  c.train.update(progress_bar=True, eval_every=candidate.num_steps, checkpoint_every=500,
                 keep_checkpoints=3, log_every=50)
  return c
