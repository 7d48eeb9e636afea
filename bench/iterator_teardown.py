"""How long deleting a train iterator takes after a busy run, with tf.data's autotuning on and off.

    python -m bench.iterator_teardown [--batches 300 --rounds 3]

The trainer drops its train iterator when the loop ends. With model-based autotuning on, that
waited for the autotuning thread (seen: 16 s on one core, 37 s at the end of a 2,000-step
`make demo`), so `pipeline.pipeline_options` turns it off (docs/pipeline.md, "Autotuning off").
Per round and setting: a train iterator of configs/demo.py's data (`synthetic_points/default`,
96 px, batch 8) gives `--batches` batches while this thread does a train-step-sized matmul per
batch, then the iterator is deleted and timed; the pipeline's own batches/s is timed alone too.
Reported: teardown seconds per round and their maximum (the wait depends on where the autotuning
thread's sleep is, so it swings from 0 to tens of seconds), and batches/s per setting (medians).
"""
import statistics
import time

from absl import app
from absl import flags
import numpy as np

from bench import common

flags.DEFINE_integer("batches", 300, "Batches taken before the teardown (busy main thread).")
flags.DEFINE_integer("rounds", 3, "Alternating rounds of (on, off).")
FLAGS = flags.FLAGS


def measure(autotune: bool, batches: int, busy: np.ndarray) -> tuple[float, float]:
  """(teardown seconds after a busy run, batches/s of the pipeline alone)."""
  from pointseg_jax import config_lib  # pylint: disable=g-import-not-at-top
  from pointseg_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  original = pipeline.pipeline_options

  def options():
    o = original()
    o.autotune.enabled = autotune
    return o

  pipeline.pipeline_options = options
  try:
    data = config_lib.get_config("point", "pretrained").data
    data.image_size = (96, 96)
    batches_iter = iter(pipeline.make_dataset(data, "train", batch_size=8, train=True, seed=0))
    for _ in range(batches):
      next(batches_iter)
      busy @ busy
    t = time.perf_counter()
    del batches_iter
    teardown = time.perf_counter() - t
    alone = iter(pipeline.make_dataset(data, "train", batch_size=8, train=True, seed=0))
    for _ in range(10):
      next(alone)
    t = time.perf_counter()
    for _ in range(200):
      next(alone)
    rate = 200 / (time.perf_counter() - t)
    del alone
    return teardown, rate
  finally:
    pipeline.pipeline_options = original


def main(argv):
  del argv
  common.print_header("tf.data train iterator teardown, autotuning on vs off")
  busy = np.random.default_rng(0).random((700, 700), np.float32)
  results = {True: [], False: []}
  for _ in range(FLAGS.rounds):
    for autotune in (True, False):
      results[autotune].append(measure(autotune, FLAGS.batches, busy))
  rows = []
  for autotune in (True, False):
    teardowns, rates = zip(*results[autotune])
    rows.append(("on" if autotune else "off", " / ".join(f"{t:.2f}" for t in teardowns),
                 f"{max(teardowns):.2f}", f"{statistics.median(rates):.0f}"))
  common.table(("autotune", "teardown s per round", "max teardown s", "batches/s alone"), rows)
  rate = {a: statistics.median(r for _, r in results[a]) for a in results}
  common.summary("teardown max s; batches/s on / off",
                 teardown_max_on=max(t for t, _ in results[True]),
                 teardown_max_off=max(t for t, _ in results[False]),
                 batches_per_s_ratio=round(rate[True] / rate[False], 2))


if __name__ == "__main__":
  app.run(main)
