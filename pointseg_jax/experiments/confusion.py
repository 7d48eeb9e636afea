r"""Where each row's pixels went: the val confusion matrices of a sweep, pooled over seeds.

  python -m pointseg_jax.experiments.confusion --out=experiments_results/v2 --backfill
  python -m pointseg_jax.experiments.confusion --out=<sweep>              # <sweep>/confusion.md

A post hoc diagnosis, not part of any pre-registered test: it explains a row's mIoU (which classes
it misses, and whether their pixels go to background or to another object class), it never
chooses anything. Each finished run keeps `runs/<row>/seed<k>/confusion.json` beside its summary
(runs.train_one). `--backfill` writes it for runs finished before that file existed: it evaluates
the run's final checkpoint again (`--work`, the sweep's work dirs, which git does not keep) and
writes the matrix only when its mIoU equals the summary's bit for bit, so the matrix is the one
behind the reported number. <out>/confusion.md: per row, where object pixels go; per class, each
row's recall and the class its missed pixels go to most (table1_v2 --table_only writes v2's, in
the table's row order).
"""
import json
import pathlib

from absl import flags
from absl import logging
import numpy as np

from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax import evaluate
from pointseg_jax import files
from pointseg_jax import metrics
from pointseg_jax import runtime

FLAGS = flags.FLAGS
REPORT = "confusion.md"


def finished_runs(out: pathlib.Path):
  """(row, seed, run dir) of every kept summary, sorted."""
  for summary in sorted(out.glob("runs/*/seed*/summary.json")):
    yield summary.parent.parent.name, int(summary.parent.name[len("seed"):]), summary.parent


def backfill(out: pathlib.Path, work_roots) -> dict[str, list[str]]:
  """confusion.json for each finished run that lacks one, from its final checkpoint in one of
  work_roots (<root>/<row>/seed<k>); refuses a checkpoint whose mIoU is not the summary's."""
  done = {"written": [], "had_one": [], "no_checkpoint": [], "diverged": []}
  for row, seed, run_dir in finished_runs(out):
    name = f"{row}/seed{seed}"
    summary = json.loads((run_dir / "summary.json").read_text())
    if (run_dir / evaluate.CONFUSION_FILE).exists():
      done["had_one"].append(name)
      continue
    if summary.get("error") or summary.get("miou") is None:
      done["diverged"].append(name)
      continue
    candidates = [pathlib.Path(root) / row / f"seed{seed}" for root in work_roots]
    work = next((w for w in candidates if (w / "checkpoints" / str(summary["step"])).is_dir()),
                None)
    if work is None:
      done["no_checkpoint"].append(name)
      continue
    result = evaluate.evaluate_checkpoint(None, work, step=summary["step"])
    if result["eval/miou"] != summary["miou"]:
      raise errors.DataError(
          f"{work}: step {summary['step']} scores mIoU {result['eval/miou']!r}, but "
          f"{run_dir / 'summary.json'} says {summary['miou']!r}; that checkpoint is not the "
          "run the summary reports, so no confusion.json was written for it")
    files.write_text(run_dir / evaluate.CONFUSION_FILE,
                     (work / evaluate.CONFUSION_FILE).read_text())
    logging.info("%s: confusion.json from %s (mIoU %.4f, as its summary)", name, work,
                 result["eval/miou"])
    done["written"].append(name)
  return done


def pooled(out: pathlib.Path, order=()) -> dict[str, dict]:
  """Per row (the rows named in `order` first, in that order): the summed counts of its seeds'
  confusion.json and which seeds they are."""
  rows: dict[str, dict] = {}
  for row, seed, run_dir in finished_runs(out):
    path = run_dir / evaluate.CONFUSION_FILE
    if path.exists():
      data = evaluate.read_confusion(path)
      entry = rows.setdefault(row, {"counts": 0, "seeds": [], "classes": data["classes"]})
      entry["counts"] = entry["counts"] + data["counts"]
      entry["seeds"].append(seed)
  order = list(order)
  return dict(sorted(rows.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order
                                                   else len(order), kv[0])))


def object_pixels(counts: np.ndarray) -> dict[str, float]:
  """Where the object classes' pixels went (%): the right class, background, another object
  class; and the share of background pixels called an object. Class 0 is background."""
  accuracy = metrics.pixel_accuracy(counts)
  counts = np.asarray(counts, np.float64)
  objects = counts[1:].sum()
  right = np.trace(counts[1:, 1:])
  return {"right": 100 * right / objects, "background": 100 * counts[1:, 0].sum() / objects,
          "other_object": 100 * (counts[1:, 1:].sum() - right) / objects,
          "background_as_object": 100 * counts[0, 1:].sum() / counts[0].sum(),
          "pixel_accuracy": 100 * accuracy}


def markdown(rows: dict[str, dict], command: str, detail=None) -> str:
  """The two tables of confusion.md: every row, then per class the rows in `detail` (all when
  None; the table is one column per row)."""
  if not rows:
    return ""
  classes = next(iter(rows.values()))["classes"]
  lines = [f"Post hoc diagnosis (not a pre-registered test): val confusion matrices pooled over "
           f"each row's seeds. `{command}`.", "",
           "| row | seeds | mIoU of the pooled counts (%) | pixel accuracy (%) | object pixels: "
           "right class (%) | → background (%) | → another object class (%) | background "
           "pixels called an object (%) |", "|---|---|---|---|---|---|---|---|"]
  for name, r in rows.items():
    o = object_pixels(r["counts"])
    miou, _ = metrics.mean_iou(r["counts"])
    lines.append(f"| `{name}` | {len(r['seeds'])} | {100 * miou:.1f} | "
                 f"{o['pixel_accuracy']:.1f} | {o['right']:.1f} | {o['background']:.1f} | "
                 f"{o['other_object']:.1f} | {o['background_as_object']:.1f} |")
  total = next(iter(rows.values()))["counts"].sum(axis=1)
  rows = {n: r for n, r in rows.items() if detail is None or n in detail}
  lines += ["", "Per class: share of val pixels, then each row's recall (%) → the class most of "
            "its missed pixels went to (% of the class's pixels).", "",
            "| class | val pixels (%) | " + " | ".join(f"`{n}`" for n in rows) + " |",
            "|---|---|" + "---|" * len(rows)]
  for i, cls in enumerate(classes):
    cells = []
    for r in rows.values():
      row = np.asarray(r["counts"][i], np.float64)
      if row.sum() == 0:
        cells.append("–")
        continue
      missed = row.copy()
      missed[i] = 0
      j = int(missed.argmax())
      share = 100 * row / row.sum()
      cells.append(f"{share[i]:.0f} → {classes[j]} {share[j]:.0f}")
    lines.append(f"| {cls} | {100 * total[i] / total.sum():.2f} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_report(out: pathlib.Path, command: str, order=(), detail=None) -> pathlib.Path | None:
  """<out>/confusion.md from the kept confusion.json files; None when there is none. command:
  the one that rebuilds it (named at its top)."""
  rows = pooled(out, order)
  if not rows:
    return None
  path = out / REPORT
  files.write_text(path, markdown(rows, command, detail))
  return path


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  flags.DEFINE_string("out", None, "The sweep's results folder (runs/<row>/seed<k>/).",
                      flag_values=flag_values)
  flags.DEFINE_bool("backfill", False, "Evaluate the final checkpoint of every finished run "
                    "without a confusion.json (its mIoU must equal the summary's).",
                    flag_values=flag_values)
  flags.DEFINE_list("work", [], "Work roots holding <row>/seed<k>/checkpoints (default: "
                    "<out>/work).", flag_values=flag_values)
  flags.mark_flag_as_required("out", flag_values=flag_values)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  runtime.setup_process()
  out = pathlib.Path(FLAGS.out)
  if not (out / "runs").is_dir():
    raise errors.MissingInputError(f"--out={out}: no runs/ folder there (a sweep's results)")
  if FLAGS.backfill:
    done = backfill(out, FLAGS.work or [out / "work"])
    print("[confusion] " + ", ".join(f"{k.replace('_', ' ')}: {len(v)}" for k, v in done.items()))
    for name in done["no_checkpoint"]:
      print(f"  no final checkpoint found for {name} (its work dir is on another machine?)")
  path = write_report(out, f"python -m pointseg_jax.experiments.confusion --out={out}")
  print(f"[confusion] {path or 'no confusion.json under ' + str(out / 'runs')}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
