r"""Fine-tuning the pretrained backbone: train its conv1_1 as pretraining did, or plainly?

  python -m pointseg_jax.experiments.first_layer --out=experiments_results/first_layer --git_commit
  python -m pointseg_jax.experiments.first_layer --out=DIR --table_only

Pretraining trained conv1_1's kernel as V = r W (r = the corpus input's RMS, ~55; docs/training.md,
"Pretraining"), so its SGD steps on W were r^2 ~ 3,000 times smaller than the FCN trainer's plain
SGD takes: in session 6's transfer check the FCN moved the pretrained conv1_1 by 14 times its norm
in 300 steps. Two runs from the pretrained backbone (`configs/point.py:pretrained`), `point`
regime, on the train hold-out (runs.holdout; val is never read), one seed:

  plain        optimizer.input_rms = 1: plain SGD on W (what the FCN trainer did before)
  normalised   optimizer.input_rms = r (the weights file's _meta.input_rms): V = r W

The rule, stated before the runs: `normalised` (the pretraining's own parametrisation) unless
`plain` ends >= 1 point of hold-out mIoU above it (schedule_search.TIE: one seed cannot separate
less). The schedule: SGD cosine, lr 1e-3, 2,000 steps (half the scratch search's provisional 4,000,
to fit the session; the pretrained schedule search runs after this choice).
"""
import dataclasses

from absl import flags

from pointseg_jax import cli
from pointseg_jax import config_lib
from pointseg_jax.experiments import runs
from pointseg_jax.experiments import schedule_search
from pointseg_jax.models import weights as weights_lib

FLAGS = flags.FLAGS

SCHEDULE = schedule_search.Candidate(2000, 1e-3)
ARMS = ("plain", "normalised")


def input_rms_of(path=config_lib.PRETRAINED_INIT_FROM) -> float:
  """r of the pretrained file: the RMS of the preprocessed corpus input its conv1_1 was trained on."""
  meta = weights_lib.read_meta(path)
  if "input_rms" not in meta:
    raise weights_lib.WeightsError(f"{path}: _meta has no input_rms (a file written before "
                                   f"pretraining normalised conv1_1); remake it: "
                                   f"{weights_lib.PRETRAIN_COMMAND}")
  return float(meta["input_rms"])


def arm_run(arm: str, r: float, num_train: int) -> runs.Run:
  rms = {"plain": 1.0, "normalised": r}[arm]
  return runs.Run(arm, "point", overrides=runs.holdout_overrides(num_train)
                  + (("optimizer.input_rms", rms),))


def choose(rows) -> str | None:
  """The stated rule; None until both arms are scored (a diverged arm loses)."""
  miou = {r["name"]: r["miou"] for r in rows}
  if set(miou) != set(ARMS):
    return None
  if miou["plain"] is not None and (miou["normalised"] is None
                                    or miou["plain"] - miou["normalised"] >= schedule_search.TIE):
    return "plain"
  return "normalised"


def compare(out, variant, num_train, r, *, arms=ARMS, seed=0, train_missing=True, data_dir=None,
            after_each=None) -> list[dict]:
  schedule, rows = schedule_search.schedule_of(SCHEDULE, variant), []
  for arm in arms:
    summary, trained = runs.kept_or_trained(out, arm_run(arm, r, num_train), schedule, seed,
                                            num_train, data_dir, train_missing, arm,
                                            tag="first_layer")
    if summary is None:
      break
    rows.append({"name": arm, "input_rms": 1.0 if arm == "plain" else r, "miou": summary["miou"],
                 "eval_miou_by_step": summary["eval_miou_by_step"],
                 "background_iou": (summary.get("iou_per_class") or {}).get("background"),
                 "wall_time_s": summary["wall_time_s"]})
    if trained and after_each is not None:
      after_each(rows)
  return rows


def report(rows, variant, num_train, command) -> tuple[dict, str]:
  fraction, split = runs.holdout(num_train)
  chosen = choose(rows)
  result = {"command": command, "variant": variant, "schedule": dataclasses.asdict(SCHEDULE),
            "train_images": round(fraction * num_train), "holdout_split": split, "rows": rows,
            "chosen": chosen}
  pct = lambda v: "–" if v is None else f"{100 * v:.1f}"
  lines = [
      "# conv1_1 of the pretrained backbone: plain SGD or as pretrained (V = r W), on the hold-out",
      "", f"`{command}`", "",
      f"`point` (Img + Obj + 1Point) from `{variant}` init, SGD cosine lr "
      f"{SCHEDULE.learning_rate:g}, {SCHEDULE.num_steps} steps; trained on "
      f"{result['train_images']} train images, scored on `{split}`; one seed. mIoU (%) at "
      "20/40/60/80/100 % of the steps. Rule (stated before the runs): normalised unless plain "
      "ends >= 1 point above it.", "",
      "| arm | optimizer.input_rms | 20 % | 40 % | 60 % | 80 % | 100 % | background IoU "
      "| wall min |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    points = schedule_search.fifths(r["eval_miou_by_step"], SCHEDULE.num_steps)
    lines.append(f"| {r['name']} | {r['input_rms']:.4g} | " + " | ".join(pct(p) for p in points)
                 + f" | {pct(r['background_iou'])} | {r['wall_time_s'] / 60:.1f} |")
  lines += ["", f"**Chosen: {chosen}**." if chosen else "Chosen: pending (both arms needed).", ""]
  return result, "\n".join(lines)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  fv = {"flag_values": flag_values}
  runs.define_result_flags(flag_values, "first_layer.md / .json")
  flags.DEFINE_enum("variant", "pretrained", ["pretrained", "tiny"],
                    "pretrained: the committed backbone; tiny: seconds (tests).", **fv)
  flags.DEFINE_list("arms", list(ARMS), "Train only these arms (one process per core may share "
                    "--out).", **fv)


def main(argv):
  out = runs.results_dir(argv, FLAGS.out)
  r = input_rms_of()
  num_train = runs.num_train_examples(FLAGS.variant, FLAGS.data_dir)
  arms = runs.chosen_arms(FLAGS.arms, ARMS)
  command = runs.command_line("first_layer")
  results = runs.ResultFiles(out, "first_layer", what="first layer", commit=FLAGS.git_commit)

  def after_each(rows):
    results.write(*report(rows, FLAGS.variant, num_train, command))
    results.commit_if_asked(rows[-1]["name"])

  rows = compare(out, FLAGS.variant, num_train, r, arms=arms, train_missing=not FLAGS.table_only,
                 data_dir=FLAGS.data_dir, after_each=after_each)
  results.write(*report(rows, FLAGS.variant, num_train, command))
  print(f"[first_layer] {len(rows)} of {len(ARMS)} arms -> {results.markdown}; chosen: "
        f"{choose(rows)}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
