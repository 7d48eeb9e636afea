"""Objectness maps of a prepared click dataset's split: one PNG per example, named by its id.

    python -m pointseg_jax.data.objectness_maps --dataset=voc2012_points --split=train --out=DIR

The layout `voc2012_points` reads from `manual_dir/objectness/` (docs/objectness.md). The maps are
the prior's (objectness/precompute.py does the work, in parallel processes, resumable, atomic
PNGs); this module only reads the examples, so the dependency runs data -> objectness, never back.
"""
import pathlib

from absl import flags

from pointseg_jax import cli
from pointseg_jax.data.prepare import prepared_split
from pointseg_jax.objectness import precompute

FLAGS = flags.FLAGS


def _jobs(examples, out, opts):
  for ex in examples:
    ex_id = ex["id"].decode("utf-8") if isinstance(ex["id"], bytes) else str(ex["id"])
    target = out / f"{ex_id}.png"
    if not target.exists():
      yield ex_id, ex["image"], str(target), opts


def run(out, dataset, split="train", data_dir=None, workers=None, seed=0, num_windows=1000,
        max_side=None, progress=True):
  """Compute the missing maps of the split; returns {"done", "skipped", "failed"} like
  objectness.precompute.run. The dataset is checked before `out` is created."""
  examples = prepared_split(dataset, split, data_dir)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  before = sum(1 for _ in out.glob("*.png"))
  done, failed = precompute.compute_maps(
      _jobs(examples, out, precompute.options(seed, num_windows, max_side)), workers=workers,
      progress=progress)
  return {"done": done, "skipped": before, "failed": failed}


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  cli.define_dataset_flags(flag_values, split="train", dataset_help="TFDS click dataset, e.g. "
                           "voc2012_points or synthetic_points/default.")
  precompute.define_map_flags(flag_values)
  flags.mark_flags_as_required(["dataset", "out"], flag_values=flag_values)


def main(argv) -> int:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  return precompute.report(run(FLAGS.out, FLAGS.dataset, FLAGS.split, FLAGS.data_dir,
                               **precompute.map_options(FLAGS)), FLAGS.out)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
