r"""Why Img + Obj fell below Img in Table 1 v1: the objectness maps or the objectness loss?

  python -m pointseg_jax.experiments.objectness_ablation --out=experiments_results/objectness_ablation --git_commit
  python -m pointseg_jax.experiments.objectness_ablation --out=DIR --table_only

At 4,800 steps (Adam 3e-4, constant) Img + Obj was 7.2 points below Img on every seed (RESULTS.md),
the opposite of the paper. Five runs on the train hold-out (runs.holdout: train[:90%] trains,
train[90%:] scores; val is never read), at the schedule chosen on that hold-out
(schedule_search.CHOSEN; its PROVISIONAL leader until the search has finished), one seed:

  img                Img: the image-level term alone (the baseline)
  img_obj            Img + Obj with our objectness maps, Eq. 4 at weight 1 (the v1 setting)
  img_obj_oracle     Img + Obj with an ORACLE map from the ground-truth masks (data.oracle_objectness)
  img_obj_w0.3       our maps, Eq. 4 at weight 0.3
  img_obj_w0.1       our maps, Eq. 4 at weight 0.1

If the oracle lifts Img + Obj above Img while our maps do not, the maps are what fails; if the
oracle also stays below Img, the loss (its weight or its form) is. docs/experiments.md,
"The objectness ablation".
"""
import dataclasses

from absl import flags

from pointseg_jax import cli
from pointseg_jax.experiments import runs
from pointseg_jax.experiments import schedule_search

FLAGS = flags.FLAGS

ORACLE_EPS = 1 / 257     # the oracle at the pipeline's own extremes: P = (0 + 1)/257 and 256/257


@dataclasses.dataclass(frozen=True)
class Arm:
  name: str
  regime: str
  maps: str = "ours"               # 'ours' | 'oracle' (ground-truth masks) | '–' (no Eq. 4)
  weight: float | None = 1.0       # Eq. 4's weight (None: the regime has no objectness term)

  def run(self, num_train: int) -> runs.Run:
    overrides = runs.holdout_overrides(num_train)
    if self.weight is not None:
      overrides += (("loss.weights.objectness", self.weight),)
    if self.maps == "oracle":
      overrides += (("data.oracle_objectness", ORACLE_EPS),)
    return runs.Run(self.name, self.regime, overrides=overrides)


ARMS = (Arm("img", "image", maps="–", weight=None), Arm("img_obj", "image_obj"),
        Arm("img_obj_oracle", "image_obj", maps="oracle"),
        Arm("img_obj_w0.3", "image_obj", weight=0.3), Arm("img_obj_w0.1", "image_obj", weight=0.1))


def ablate(out, variant, candidate, num_train, *, arms=ARMS, seed=0, train_missing=True,
           data_dir=None, after_each=None) -> list[dict]:
  """One row per arm, in order; without train_missing it stops at the first arm not trained."""
  schedule, rows = schedule_search.schedule_of(candidate, variant), []
  for arm in arms:
    summary, trained = runs.kept_or_trained(out, arm.run(num_train), schedule, seed, num_train,
                                            data_dir, train_missing, arm.name,
                                            tag="objectness_ablation")
    if summary is None:
      break
    ious = summary.get("iou_per_class") or {}
    objects = [v for k, v in ious.items() if k != "background" and v is not None]
    rows.append({**dataclasses.asdict(arm), "miou": summary["miou"],
                 "eval_miou_by_step": summary["eval_miou_by_step"],
                 "background_iou": ious.get("background"),
                 "object_iou_mean": sum(objects) / len(objects) if objects else None,
                 "wall_time_s": summary["wall_time_s"]})
    if trained and after_each is not None:
      after_each(rows)
  return rows


def report(rows, candidate, variant, num_train, command) -> tuple[dict, str]:
  fraction, split = runs.holdout(num_train)
  result = {"command": command, "variant": variant, "schedule": dataclasses.asdict(candidate),
            "train_images": round(fraction * num_train), "holdout_split": split,
            "oracle_eps": ORACLE_EPS, "rows": rows}
  pct = lambda v: "–" if v is None else f"{100 * v:.1f}"
  lines = [
      "# Objectness ablation: Img vs Img + Obj on the train hold-out (never val)", "",
      f"`{command}`", "",
      f"Schedule {candidate.optimizer.upper()} {candidate.schedule}, lr "
      f"{candidate.learning_rate:g}, {candidate.num_steps} steps (chosen on the hold-out); "
      f"`{variant}` init; trained on {result['train_images']} train images, scored on `{split}`; "
      "one seed. mIoU (%) at 20/40/60/80/100 % of the steps; IoU of background and the mean over "
      "the object classes at the end.", "",
      "| run | regime | maps | Eq. 4 weight | 20 % | 40 % | 60 % | 80 % | 100 % | vs img "
      "| background IoU | object IoU | wall min |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  base = rows[0]["miou"] if rows and rows[0]["name"] == "img" else None
  for r in rows:
    points = schedule_search.fifths(r["eval_miou_by_step"], candidate.num_steps)
    delta = ("–" if base is None or r["miou"] is None or r["name"] == "img"
             else f"{100 * (r['miou'] - base):+.1f}")
    weight = "–" if r["weight"] is None else f"{r['weight']:g}"
    lines.append(f"| {r['name']} | {r['regime']} | {r['maps']} | {weight} | "
                 + " | ".join(pct(p) for p in points)
                 + f" | {delta} | {pct(r['background_iou'])} | {pct(r['object_iou_mean'])} "
                 f"| {r['wall_time_s'] / 60:.1f} |")
  lines += ["", "Pending: " + ", ".join(a.name for a in ARMS[len(rows):]) if len(rows) < len(ARMS)
            else "All arms trained.", ""]
  return result, "\n".join(lines)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  fv = {"flag_values": flag_values}
  runs.define_result_flags(flag_values, "ablation.md / .json")
  flags.DEFINE_enum("variant", "synthetic", ["synthetic", "pretrained", "tiny"],
                    "Init as in schedule_search (tiny: seconds, tests).", **fv)
  flags.DEFINE_integer("seed", 0, "The one seed.", **fv)
  flags.DEFINE_integer("steps", None, "Override the chosen schedule's steps (default: "
                       "schedule_search.CHOSEN, else its PROVISIONAL leader).", **fv)
  flags.DEFINE_float("lr", None, "Override the chosen schedule's peak lr.", **fv)


def main(argv):
  out = runs.results_dir(argv, FLAGS.out)
  candidate = schedule_search.CHOSEN or schedule_search.PROVISIONAL
  if FLAGS.steps is not None:
    candidate = dataclasses.replace(candidate, num_steps=FLAGS.steps)
  if FLAGS.lr is not None:
    candidate = dataclasses.replace(candidate, learning_rate=FLAGS.lr)
  if candidate.num_steps < 5 or candidate.num_steps % 5 or not candidate.learning_rate > 0:
    cli.fail(f"--steps={candidate.num_steps} --lr={candidate.learning_rate:g}: steps a multiple "
             "of 5 (the hold-out is scored every 20 %), lr > 0")
  num_train = runs.num_train_examples(FLAGS.variant, FLAGS.data_dir)
  command = runs.command_line("objectness_ablation")
  results = runs.ResultFiles(out, "ablation", what="objectness ablation", commit=FLAGS.git_commit)

  def after_each(rows):
    results.write(*report(rows, candidate, FLAGS.variant, num_train, command))
    results.commit_if_asked(rows[-1]["name"])

  rows = ablate(out, FLAGS.variant, candidate, num_train, seed=FLAGS.seed,
                train_missing=not FLAGS.table_only, data_dir=FLAGS.data_dir,
                after_each=after_each)
  results.write(*report(rows, candidate, FLAGS.variant, num_train, command))
  print(f"[objectness_ablation] {len(rows)} of {len(ARMS)} arms -> {results.markdown}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
