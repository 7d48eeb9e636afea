r"""Does the pretrained backbone beat scratch after a short run? (issue 26's check, on val)

  python -m pointseg_jax.experiments.transfer_check --out=experiments_results/transfer --git_commit
  python -m pointseg_jax.experiments.transfer_check --out=DIR --table_only

`configs/point.py` (Img + Obj + 1Point) from scratch and from the committed `synthetic_classes`
backbone (`:pretrained`), identical but for the init: 300 steps of 8 at the configs' own optimiser
(SGD 1e-3 constant, warmup 200, clip 20), 128-px images, scored once on val, seeds 0, 1, 2 (a seed
gives both arms the same batches). A check of the pretraining, not a tuning run: nothing is
chosen from it. The table shows each seed's paired difference (pretrained - scratch).
"""

from absl import flags

from pointseg_jax import cli
from pointseg_jax.experiments import runs

FLAGS = flags.FLAGS

STEPS = 300
SEEDS = 3
ARMS = ("synthetic", "pretrained")   # config variants: scratch, the pretrained backbone
RUN = runs.Run("point", "point")


def schedule(variant: str) -> runs.Schedule:
  return runs.Schedule(f"transfer{STEPS}_{variant}", variant, STEPS, seeds=SEEDS, evals=1)


def check(out, *, arms=ARMS, seeds=SEEDS, train_missing=True, data_dir=None,
          after_each=None) -> list[dict]:
  """Rows (arm, seed, mIoU, background IoU, input_rms) seed-major, each arm of a seed in turn;
  without train_missing it stops at the first run not trained."""
  rows = []
  for seed in range(seeds):
    for variant in arms:
      num_train = runs.num_train_examples(variant, data_dir)
      sub = out / variant
      summary, trained = runs.kept_or_trained(sub, RUN, schedule(variant), seed, num_train,
                                              data_dir, train_missing, f"{variant} seed {seed}",
                                              tag="transfer_check")
      if summary is None:
        return rows
      rows.append({"arm": variant, "seed": seed, "miou": summary["miou"],
                   "background_iou": (summary.get("iou_per_class") or {}).get("background"),
                   "wall_time_s": summary["wall_time_s"]})
      if trained and after_each is not None:
        after_each(rows)
  return rows


def paired(rows) -> list[float | None]:
  """pretrained - scratch per seed that has both (None: either diverged)."""
  by = {(r["arm"], r["seed"]): r["miou"] for r in rows}
  seeds = sorted({r["seed"] for r in rows if ("pretrained", r["seed"]) in by
                  and ("synthetic", r["seed"]) in by})
  return [None if by["pretrained", s] is None or by["synthetic", s] is None
          else by["pretrained", s] - by["synthetic", s] for s in seeds]


def report(rows, command) -> tuple[dict, str]:
  diffs = paired(rows)
  known = [d for d in diffs if d is not None]
  result = {"command": command, "steps": STEPS, "rows": rows, "paired_differences": diffs,
            "mean_difference": sum(known) / len(known) if known else None}
  pct = lambda v: "–" if v is None else f"{100 * v:.2f}"
  seeds = sorted({r["seed"] for r in rows})
  lines = ["# Transfer check: pretrained backbone vs scratch, 300 steps, val", "",
           f"`{command}`", "",
           "`configs/point.py` vs `configs/point.py:pretrained`, identical but for the init "
           f"(and conv1_1 trained as pretrained, the variant's optimizer.input_rms); {STEPS} "
           "steps of 8, SGD 1e-3 constant (warmup 200, clip 20), 128 px, scored on val. mIoU (%) "
           "per seed; background IoU in brackets.", "",
           "| init | " + " | ".join(f"seed {s}" for s in seeds) + " |",
           "|---|" + "---|" * len(seeds)]
  for arm in ARMS:
    cells = []
    for s in seeds:
      r = next((r for r in rows if r["arm"] == arm and r["seed"] == s), None)
      cells.append("–" if r is None else f"{pct(r['miou'])} ({pct(r['background_iou'])})")
    lines.append(f"| {'scratch' if arm == 'synthetic' else arm} | " + " | ".join(cells) + " |")
  lines.append("| pretrained − scratch (points) | "
               + " | ".join(pct(d) for d in diffs) + " |" * (1 if diffs else 0))
  mean = result["mean_difference"]
  lines += ["", "Pending." if len(rows) < SEEDS * len(ARMS) else
            f"Mean paired difference {100 * mean:+.2f} points over {len(known)} seeds; "
            f"pretrained above scratch on {sum(d > 0 for d in known)} of {len(known)}.", ""]
  return result, "\n".join(lines)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  fv = {"flag_values": flag_values}
  runs.define_result_flags(flag_values, "transfer.md / .json")
  flags.DEFINE_list("arms", list(ARMS), "Train only these arms (two processes, one per core, "
                    "may share --out: each arm has its own folder).", **fv)


def main(argv):
  out = runs.results_dir(argv, FLAGS.out)
  arms = runs.chosen_arms(FLAGS.arms, ARMS)
  command = runs.command_line("transfer_check")
  results = runs.ResultFiles(out, "transfer", what="transfer check", commit=FLAGS.git_commit)

  def after_each(rows):
    results.write(*report(rows, command))
    results.commit_if_asked(f"{rows[-1]['arm']} seed {rows[-1]['seed']}")

  rows = check(out, arms=arms, train_missing=not FLAGS.table_only, data_dir=FLAGS.data_dir,
               after_each=after_each)
  results.write(*report(rows, command))
  print(f"[transfer_check] {len(rows)} of {SEEDS * len(ARMS)} runs -> {results.markdown}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
