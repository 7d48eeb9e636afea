"""`make demo`: Img + Obj + 1Point from the pretrained backbone, at a schedule chosen on the hold-out.

  python -m pointseg_jax.experiments.demo                      # this config (make demo)
  python -m pointseg_jax.main --config=configs/demo.py         # the same run without the report

`configs/point.py:pretrained` (the committed synthetic_classes backbone, conv1_1 fine-tuned as
V = r W) trained exactly as the pretrained schedule search trained its candidates (96-px images,
SGD cosine after a 200-step warmup, clip 20), at `schedule_search.DEMO_PRETRAINED`: the search's
own rule applied to its runs of at most DEMO_STEPS steps, so the demo fits a few minutes
(docs/training.md, "The demo's schedule"). Trained on the whole train split, scored once on val.
"""
from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax.experiments import schedule_search


def get_config(arg=None):
  if arg not in (None, ""):
    raise errors.ConfigError(f"configs/demo.py takes no variant (got {arg!r}); "
                             "configs/point.py:<variant> has them")
  candidate = schedule_search.DEMO_PRETRAINED
  c = schedule_search.schedule_of(candidate, "pretrained").apply(
      config_lib.get_config("point", "pretrained"))
  # What a person watching wants: a progress bar, one evaluation at the end, the trainer's usual
  # checkpoints (the search's runs kept one and scored the hold-out five times).
  c.train.update(progress_bar=True, eval_every=candidate.num_steps, checkpoint_every=500,
                 keep_checkpoints=3, log_every=50)
  return c
