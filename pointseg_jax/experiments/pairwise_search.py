r"""The pairwise term's weight and kernel, chosen without the val split (docs/experiments.md).

  python -m pointseg_jax.experiments.pairwise_search --out=experiments_results/pairwise_search
  python -m pointseg_jax.experiments.pairwise_search --out=DIR --table_only     # rebuild search.md

The hold-out: train on the first 90 % of the train split (`DataSpec.train_fraction`, the split's
stored and shuffled order) and score on the dense masks of the rest (`eval.split = "train[k:]"`);
the two are disjoint (checked) and val is never read. One seed and the Table 1 schedule, so a
chosen setting is what the sweep's `point_crf` row would train with.

The search goes one setting at a time, from the defaults of supervision.PairwiseKernel
(weight 0.1, sigma_rgb 6, sigma_xy 24; radius 5 and scale 4 stay fixed, they set the cost):
the weight first, then sigma_rgb at the best weight, then sigma_xy at both. A candidate replaces
the current best only when its hold-out mIoU is strictly higher, so ties keep the default. `point`
(no pairwise term) on the same hold-out is the baseline. Every run is a table1 run (resumable,
its summary kept under <out>/runs/), so an interrupted search resumes and makes the same choices.
"""
import dataclasses

from absl import flags

from pointseg_jax import cli
from pointseg_jax import supervision
from pointseg_jax.experiments import runs

FLAGS = flags.FLAGS

DEFAULT = supervision.PairwiseKernel()
DEFAULT_WEIGHT = supervision.default_weights("point_crf")["pairwise"]
GRID = {"weight": (0.03, 0.1, 0.3, 1.0), "sigma_rgb": (3.0, 6.0, 12.0, 24.0),
        "sigma_xy": (12.0, 24.0, 48.0)}


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  fv = {"flag_values": flag_values}
  runs.define_result_flags(flag_values, "search.md / search.json")
  flags.DEFINE_enum("variant", "synthetic", ["synthetic", "tiny"],
                    "synthetic: the Table 1 schedule; tiny: seconds (tests).", **fv)
  flags.DEFINE_integer("seed", 0, "The one seed of the search.", **fv)
  flags.DEFINE_list("weights", [str(v) for v in GRID["weight"]], "Weights to try.", **fv)
  flags.DEFINE_list("sigma_rgb", [str(v) for v in GRID["sigma_rgb"]], "sigma_rgb to try.", **fv)
  flags.DEFINE_list("sigma_xy", [str(v) for v in GRID["sigma_xy"]], "sigma_xy to try.", **fv)
  flags.DEFINE_integer("val_seeds", 3, "After the search: train the chosen setting on all train "
                       "images and score it on val for this many seeds (0 = skip; the default "
                       "setting is never retrained: it is the sweep's point_crf row).", **fv)


@dataclasses.dataclass(frozen=True)
class Setting:
  weight: float
  sigma_rgb: float
  sigma_xy: float

  @property
  def name(self) -> str:
    if self.weight == 0:
      return "point_holdout"
    return f"crf_w{self.weight:g}_rgb{self.sigma_rgb:g}_xy{self.sigma_xy:g}"


def as_run(setting: Setting, num_train: int, *, on_val: bool = False) -> runs.Run:
  """The search's run (hold-out) or, on_val, the chosen setting's run on the whole train split,
  scored on val like the Table 1 rows."""
  if on_val:
    name, split_fields = f"val_{setting.name}", ()
  else:
    name, split_fields = setting.name, runs.holdout_overrides(num_train)
  if setting.weight == 0:
    return runs.Run(name, "point", overrides=split_fields)
  return runs.Run(name, "point_crf", overrides=split_fields + (
      ("loss.weights.pairwise", setting.weight),
      ("loss.pairwise.sigma_rgb", setting.sigma_rgb),
      ("loss.pairwise.sigma_xy", setting.sigma_xy)))


def kept_or_trained(out, run, schedule, seed, num_train, data_dir, train_missing, what):
  return runs.kept_or_trained(out, run, schedule, seed, num_train, data_dir, train_missing, what,
                              tag="pairwise_search")


def search(out, schedule, grid, num_train, *, seed=0, train_missing=True, data_dir=None,
           after_each=None) -> tuple[list[dict], Setting | None]:
  """The coordinate search; returns (one row per setting tried, in order; the chosen setting).
  Without train_missing it stops at the first setting not trained yet (chosen = None)."""
  rows, scores = [], {}

  def score(setting, stage):
    run = as_run(setting, num_train)
    summary, trained = kept_or_trained(out, run, schedule, seed, num_train, data_dir,
                                       train_missing, f"{stage}: {setting}")
    if summary is None:
      return None
    miou = summary["miou"]
    scores[setting] = -1.0 if miou is None else miou
    rows.append({"stage": stage, **dataclasses.asdict(setting), "run": run.name,
                 "miou": miou, "eval_miou_by_step": summary["eval_miou_by_step"],
                 "wall_time_s": summary["wall_time_s"]})
    if trained and after_each is not None:
      after_each(rows, None)
    return miou

  if score(Setting(0.0, DEFAULT.sigma_rgb, DEFAULT.sigma_xy), "baseline") is None:
    return rows, None
  best = default_setting()
  for field in ("weight", "sigma_rgb", "sigma_xy"):
    values = sorted(sorted(set(grid[field]) | {getattr(best, field)}),
                    key=lambda v: v != getattr(best, field))   # the incumbent, then ascending
    for value in values:
      setting = dataclasses.replace(best, **{field: value})
      if setting not in scores and score(setting, field) is None:
        return rows, None
    best = max((dataclasses.replace(best, **{field: v}) for v in values),
               key=lambda s: (scores[s], s == best))
  return rows, best


def confirm_on_val(out, schedule, chosen: Setting, seeds: int, num_train: int, *,
                   train_missing=True, data_dir=None) -> list[dict]:
  """The chosen setting trained on all train images and scored on val, seeds 0..seeds-1 (the
  only time val is read). The default setting is the sweep's `point_crf` row: not retrained."""
  if chosen == default_setting() or seeds < 1:
    return []
  run, kept = as_run(chosen, num_train, on_val=True), []
  for seed in range(seeds):
    summary, _ = kept_or_trained(out, run, schedule, seed, num_train, data_dir, train_missing,
                                 f"val: {chosen} seed {seed}")
    if summary is not None:
      kept.append(summary)
  return kept


def default_setting() -> Setting:
  return Setting(DEFAULT_WEIGHT, DEFAULT.sigma_rgb, DEFAULT.sigma_xy)


def report(rows, chosen, schedule, num_train, command, val=()) -> tuple[dict, str]:
  fraction, split = runs.holdout(num_train)
  result = {"command": command, "schedule": dataclasses.asdict(schedule),
            "train_images": round(fraction * num_train), "holdout_split": split,
            "default": dataclasses.asdict(default_setting()),
            "chosen": dataclasses.asdict(chosen) if chosen else None, "rows": rows,
            "val": [{"seed": v["seed"], "miou": v["miou"]} for v in val]}
  lines = [
      "# Pairwise term: hold-out search (never val)", "",
      f"`{command}`", "",
      f"Train on {result['train_images']} train images, score on `{split}` (dense masks); "
      f"schedule `{schedule.name}` ({schedule.num_steps} steps), one seed. Radius "
      f"{DEFAULT.radius}, scale {DEFAULT.scale} fixed.", "",
      "| stage | weight | sigma_rgb | sigma_xy | hold-out mIoU (%) | at half the steps "
      "| wall min |",
      "|---|---|---|---|---|---|---|"]
  for r in rows:
    curve = r["eval_miou_by_step"] or {}
    half = min(curve, key=int, default=None)
    fmt = lambda v: "diverged" if v is None else f"{100 * v:.1f}"
    lines.append(f"| {r['stage']} | {r['weight']:g} | {r['sigma_rgb']:g} | {r['sigma_xy']:g} "
                 f"| {fmt(r['miou'])} | {fmt(curve[half]) if half and len(curve) > 1 else '–'} "
                 f"| {r['wall_time_s'] / 60:.1f} |")
  lines += ["", "Chosen: " + (f"weight {chosen.weight:g}, sigma_rgb {chosen.sigma_rgb:g}, "
                              f"sigma_xy {chosen.sigma_xy:g}" if chosen else
                              "pending (the search has not finished)"), ""]
  if chosen is not None and chosen == default_setting():
    lines += ["The default won: its val result is the sweep's `point_crf` row (RESULTS.md).", ""]
  elif val:
    per_seed = ", ".join("diverged" if v["miou"] is None else f"{100 * v['miou']:.1f}"
                         for v in val)
    lines += [f"The chosen setting on val (all train images, seeds 0..{len(val) - 1}): "
              f"{per_seed} % mIoU.", ""]
  return result, "\n".join(lines)


def main(argv):
  out = runs.results_dir(argv, FLAGS.out)
  grid = {}
  for field, flag in (("weight", "weights"), ("sigma_rgb", "sigma_rgb"), ("sigma_xy", "sigma_xy")):
    try:
      grid[field] = tuple(float(v) for v in FLAGS[flag].value)
    except ValueError:
      cli.fail(f"--{flag}={','.join(FLAGS[flag].value)}: numbers separated by commas")
    if not grid[field] or min(grid[field]) <= 0:
      cli.fail(f"--{flag}: at least one value, every value > 0")
  schedule = runs.schedule_for(False, FLAGS.variant, None)
  num_train = runs.num_train_examples(schedule.variant, FLAGS.data_dir)
  command = runs.command_line("pairwise_search")
  results = runs.ResultFiles(out, "search", what="pairwise search", commit=FLAGS.git_commit)

  def after_each(rows, chosen):
    results.write(*report(rows, chosen, schedule, num_train, command))
    results.commit_if_asked(rows[-1]["run"])

  rows, chosen = search(out, schedule, grid, num_train, seed=FLAGS.seed,
                        train_missing=not FLAGS.table_only, data_dir=FLAGS.data_dir,
                        after_each=after_each)
  val = []
  if chosen is not None:
    val = confirm_on_val(out, schedule, chosen, FLAGS.val_seeds, num_train,
                         train_missing=not FLAGS.table_only, data_dir=FLAGS.data_dir)
  results.write(*report(rows, chosen, schedule, num_train, command, val))
  if chosen:
    results.commit_if_asked("chosen")
  print(f"[pairwise_search] {len(rows)} settings scored -> {results.markdown}; chosen: "
        f"{chosen or 'pending'}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
