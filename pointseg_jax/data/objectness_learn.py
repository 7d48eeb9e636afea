"""Learn the objectness prior on a prepared click dataset's train scenes (docs/objectness.md §5b).

    python -m pointseg_jax.data.objectness_learn --dataset=synthetic_points/default:1.0.0 \\
        --split='train[:200]' --render_split='train[1600:2000]' --out=model.npz

Step 1 learns the cue likelihoods (and θ with --search_theta) from the split's instance boxes
(`objectness.learn.learn`); step 2, with --render_split, chooses the superpixel smoothing and
learns the calibration on another train split's masks (`objectness.learn.learn_rendering`).
Never pass a val split: nothing of the prior is chosen on val. The learning is the prior's; this
module only reads the examples, so the dependency runs data -> objectness, never back.
"""
import time

from absl import flags
import numpy as np

from pointseg_jax import cli
from pointseg_jax.data import objectness_eval
from pointseg_jax.data.prepare import prepared_split
from pointseg_jax.objectness import learn

FLAGS = flags.FLAGS


def boxes(dataset: str, split: str, data_dir=None):
  """(id, image, tight instance boxes 0-based inclusive [K, 4]) of a prepared split: its `boxes`
  feature covers pixels ymin <= row < ymax, xmin <= col < xmax."""
  def inclusive(b):
    return np.round(np.stack([b["xmin"], b["ymin"], b["xmax"] - 1, b["ymax"] - 1], 1)).astype(
        np.int64).reshape(-1, 4)
  split_examples = prepared_split(dataset, split, data_dir)
  return ((ex["id"].decode(), ex["image"], inclusive(ex["boxes"])) for ex in split_examples)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  fv = {"flag_values": flag_values}
  cli.define_dataset_flags(flag_values, split="train", split_help="Train split to learn the cues "
                           "on (never val).", dataset_help="A prepared TFDS click dataset whose "
                           "`boxes` are the annotations, e.g. synthetic_points/default:1.0.0.")
  flags.DEFINE_string("render_split", None, "Another train split on which the superpixel "
                      "smoothing is chosen (--smooth_grid) and the calibration learned.", **fv)
  flags.DEFINE_list("smooth_grid", ["0", "800", "1200", "1600", "2400"], "smooth_k values tried "
                    "on --render_split (0 = no smoothing).", **fv)
  flags.DEFINE_integer("num_windows", 1000, "Windows kept by NMS in --render_split maps.",
                       lower_bound=1, **fv)
  flags.DEFINE_integer("distribution_windows", None, "Candidates of --render_split maps "
                       "(synthetic_points/default: 20000).", lower_bound=1, **fv)
  learn.define_learning_flags(flag_values)
  flags.mark_flags_as_required(["dataset"], flag_values=flag_values)


def main(argv) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  options = learn.learning_options(FLAGS)
  t = time.perf_counter()
  learned, report = learn.learn(examples=boxes(FLAGS.dataset, FLAGS.split, FLAGS.data_dir),
                                source=f"{FLAGS.dataset} {FLAGS.split}", **options)
  if FLAGS.render_split:
    masks = ((key, image, labels) for key, image, labels, _ in objectness_eval.examples(
        FLAGS.dataset, FLAGS.render_split, FLAGS.data_dir))
    learned, report["render"] = learn.learn_rendering(
        learned, masks, [float(k) for k in FLAGS.smooth_grid], max_side=FLAGS.max_side,
        num_windows=FLAGS.num_windows, distribution_windows=FLAGS.distribution_windows)
    learned = learned.replace(source=learned.source + f"; smoothing and calibration on "
                                                      f"{FLAGS.dataset} {FLAGS.render_split}")
  learn.write_learned(learned, report, FLAGS, t)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
