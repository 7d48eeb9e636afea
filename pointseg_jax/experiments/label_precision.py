r"""How right each row's training labels are: the labelled pixels a regime gives the loss, scored
against the masks of the same images (RESULTS.md, "Why the ones that differ differ").

  python -m pointseg_jax.experiments.label_precision --out=experiments_results/v2
  python -m pointseg_jax.experiments.label_precision --out=<dir> --variant=tiny --rows=box

A post hoc diagnosis, like confusion.py: it chooses nothing and no verdict rests on it. Each row's
labels come from the real input pipeline (data/pipeline.py with the row's sweep config, the split
read once without augmentation, i.e. the eval geometry: the whole image scaled to the schedule's
size), so what is scored is exactly what the row's label kind rasterises (data/label_kinds.py):
boxes filled smallest-first, discs grown around clicks, squiggle strokes, background clicks.
Writes <out>/label_precision.md and .json. Image-level rows label no pixel and are not rows here;
rows whose labels are another row's (point_noobj, point_crf_tuned, the budget and scratch rows)
are left out of the default list.
"""
import pathlib

from absl import flags
import numpy as np

from pointseg_jax import IGNORE_INDEX
from pointseg_jax import cli
from pointseg_jax import files
from pointseg_jax import runtime
from pointseg_jax.data import pipeline
from pointseg_jax.experiments import runs as runs_lib
from pointseg_jax.experiments import table1_v2

FLAGS = flags.FLAGS
STEM = "label_precision"
# Rows with labels of their own, in the table's order.
DEFAULT_ROWS = ("point", "all_points", "all_points_weighted", "three_annotators", "random_points",
                "grown_r1.3", "grown_r6.4", "grown_r2", "grown_r5", "grown_r25", "box", "full",
                "squiggle_r2", "squiggle_r5", "squiggle_r25", "all_points_bg")
# What `counts` returns, in order.
FIELDS = ("valid", "object", "labelled", "labelled_object", "right", "object_on_background",
          "background_on_object", "object_on_other_object")


def counts(labels: np.ndarray, sparse: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """Pixel counts (FIELDS) of a batch: `labels` the dense masks, `sparse`/`weights` the regime's
  labels. A labelled pixel has weight > 0 and a known true class (void and padding are left out).
  """
  valid = labels != IGNORE_INDEX
  on = valid & (weights > 0) & (sparse != IGNORE_INDEX)
  said, true = sparse[on], labels[on]
  return np.array([valid.sum(), (valid & (labels > 0)).sum(), on.sum(), (said > 0).sum(),
                   (said == true).sum(), ((said > 0) & (true == 0)).sum(),
                   ((said == 0) & (true > 0)).sum(), ((said > 0) & (true > 0) & (said != true)).sum()
                   ], np.int64)


def measure(config, split: str, batch_size: int = 64) -> dict:
  """FIELDS summed over `split` (read once, in order, unaugmented), plus `images`."""
  batches = pipeline.make_dataset(config.data, split, batch_size=batch_size, train=False, seed=0,
                                  process_index=0, process_count=1)
  total, images = np.zeros(len(FIELDS), np.int64), 0
  for batch in batches:
    keep = batch["example_mask"]
    total += counts(batch["labels"][keep], batch["sparse_labels"][keep],
                    batch["sparse_weights"][keep])
    images += int(keep.sum())
  return {"images": images, **{k: int(v) for k, v in zip(FIELDS, total)}}


def shares(c: dict) -> dict:
  """The table's columns (%), from one row's counts; None where the denominator is 0."""
  pct = lambda a, b: 100.0 * a / b if b else None   # noqa: E731
  return {"labelled per image": c["labelled"] / c["images"] if c["images"] else None,
          "labelled of all pixels": pct(c["labelled"], c["valid"]),
          "object share: labels": pct(c["labelled_object"], c["labelled"]),
          "object share: masks": pct(c["object"], c["valid"]),
          "right": pct(c["right"], c["labelled"]),
          "object labels right": pct(c["labelled_object"] - c["object_on_background"]
                                     - c["object_on_other_object"], c["labelled_object"]),
          "object on background": pct(c["object_on_background"], c["labelled"]),
          "background on object": pct(c["background_on_object"], c["labelled"]),
          "object on another object": pct(c["object_on_other_object"], c["labelled"])}


def markdown(result: dict) -> str:
  cols = list(shares({"images": 0, **dict.fromkeys(FIELDS, 0)}))
  lines = [
      "Post hoc diagnosis (not a pre-registered test): how right each row's training labels are, "
      f"on `{result['split']}` ({result['dataset']}) at the eval geometry. `{result['command']}`.",
      "",
      "Of a row's labelled pixels: the share whose label is the mask's class (right), the share "
      "of its object labels that are right, and the three ways to be wrong (% of the labelled "
      "pixels). 'object share' compares how much of what a row labels is object with how much "
      "of the images is.",
      "",
      "| row | images | " + " | ".join(f"{c} (%)" if c != "labelled per image" else c
                                       for c in cols) + " |",
      "|---|---|" + "---|" * len(cols)]
  for row, c in result["rows"].items():
    s = shares(c)
    cells = ["–" if v is None else f"{v:,.1f}" for v in s.values()]
    lines.append(f"| `{row}` | {c['images']} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  runtime.setup_process()
  table1_v2.check_rows("rows", FLAGS.rows)
  out = pathlib.Path(FLAGS.out)
  schedule, _ = table1_v2.schedule_and_seeds(out, False, FLAGS.variant)
  num_train = runs_lib.num_train_examples(schedule.variant, FLAGS.data_dir)
  result = {"split": FLAGS.split, "command": runs_lib.command_line(STEM), "rows": {}}
  for name in FLAGS.rows:
    config = runs_lib.run_config(table1_v2.RUNS_BY_NAME[name], schedule, 0, num_train,
                                 FLAGS.data_dir)
    result["dataset"] = config.data.dataset
    result["rows"][name] = measure(config, FLAGS.split)
    print(f"[{STEM}] {name}: " + ", ".join(
        f"{k} {'–' if v is None else f'{v:.1f}'}" for k, v in shares(result["rows"][name]).items()))
  out.mkdir(parents=True, exist_ok=True)
  files.write_json(out / f"{STEM}.json", result, indent=1)
  files.write_text(out / f"{STEM}.md", markdown(result))
  print(f"[{STEM}] -> {out / f'{STEM}.md'}")


if __name__ == "__main__":
  flags.DEFINE_string("out", None, "Directory of the sweep (its schedule.json); the tables go "
                      "there.")
  flags.DEFINE_enum("variant", "synthetic", ["synthetic", "tiny"],
                    "synthetic: the benchmark at the v2 schedule; tiny: the test dataset.")
  flags.DEFINE_string("data_dir", None, "TFDS data dir (default: TFDS's).")
  flags.DEFINE_list("rows", list(DEFAULT_ROWS), "Table 1 v2 rows to score.")
  flags.DEFINE_string("split", "train", "TFDS split (slices allowed).")
  flags.mark_flag_as_required("out")
  cli.run(main)
