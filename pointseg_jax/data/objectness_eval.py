"""How well a prepared click dataset's objectness maps separate object pixels from background.

    python -m pointseg_jax.data.objectness_eval --dataset=synthetic_points/default --split=val
    python -m pointseg_jax.data.objectness_eval --dataset=synthetic_points/default:1.0.0 \\
        --split=val --model=my_model.npz     # recompute every map with this model first

The stored maps (what training reads; with --model, maps recomputed from each image) against the
split's masks, pooled over every non-void pixel: ROC AUC, the accuracy of P >= 0.5 against calling
every pixel background, and the share of object pixels with P < 0.5 (docs/objectness.md §5b).
The statistics are the prior's (`objectness.evaluate.evaluate_examples`); this module only reads
the examples, so the dependency runs data -> objectness, never back.
"""
import time

from absl import flags

from pointseg_jax import cli
from pointseg_jax.data.prepare import prepared_split
from pointseg_jax.objectness import evaluate

FLAGS = flags.FLAGS


def examples(dataset: str, split: str, data_dir=None):
  """(id, image, class mask [H, W], stored objectness uint8 [H, W] or None) of a prepared split;
  an unprepared dataset is refused here, before any example is read."""
  split_examples = prepared_split(dataset, split, data_dir)
  return ((ex["id"].decode(), ex["image"], ex["mask"][..., 0],
           ex["objectness"][..., 0] if ex["has_objectness"] else None) for ex in split_examples)


def run(dataset: str, split: str, data_dir=None, model=None, seed: int = 0, progress: bool = True,
        **heatmap_kw) -> dict:
  """`evaluate_examples` of the split (model=None: its stored maps)."""
  return evaluate.evaluate_examples(examples(dataset, split, data_dir), model, seed, progress,
                                    name=f"{dataset} {split}", **heatmap_kw)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  fv = {"flag_values": flag_values}
  cli.define_dataset_flags(flag_values, split="val", dataset_help="A prepared TFDS click "
                           "dataset, e.g. synthetic_points/default or synthetic_points/default:1.0.0.")
  flags.DEFINE_integer("num_windows", 1000, "Windows kept by NMS when recomputing (--model; the "
                       "synthetic builder's setting).", lower_bound=1, **fv)
  flags.DEFINE_integer("distribution_windows", None, "Candidate windows when recomputing "
                       "(default: the model's; synthetic_points/default uses 20000).",
                       lower_bound=1, **fv)
  evaluate.define_scoring_flags(flag_values)
  flags.mark_flags_as_required(["dataset"], flag_values=flag_values)


def main(argv) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  kw = evaluate.heatmap_options(FLAGS)
  model = kw.pop("model", None)
  if model is not None:
    kw.update(num_windows=FLAGS.num_windows, distribution_windows=FLAGS.distribution_windows)
  t = time.perf_counter()
  res = run(FLAGS.dataset, FLAGS.split, FLAGS.data_dir, model, FLAGS.seed, **kw)
  res.update(dataset=FLAGS.dataset, split=FLAGS.split, maps="recomputed" if model else "stored",
             seconds=round(time.perf_counter() - t, 1))
  print(f"{FLAGS.dataset} {FLAGS.split}: {res['images']} images, {res['maps']} maps, "
        f"{res['seconds']:.1f} s")
  evaluate.print_threshold_stats(res)
  evaluate.write_json(res, FLAGS.json)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
