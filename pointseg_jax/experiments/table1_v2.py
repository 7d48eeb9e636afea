r"""Table 1, second edition: every row from the pretrained backbone at the chosen schedule.

  python -m pointseg_jax.experiments.table1_v2 --out=experiments_results/v2 --git_commit  # sweep
  python -m pointseg_jax.experiments.table1_v2 --out=/tmp/t2q --quick     # smoke test, <= 10 min
  python -m pointseg_jax.experiments.table1_v2 --out=experiments_results/v2 --table_only
  python -m pointseg_jax.experiments.seed_plan                             # the seeds per row

Pre-registered in docs/experiments.md ("Table 1 v2: pre-registration"): the rows, the findings and
their families, the seeds per row (SEEDS, from seed_plan's power calculation on the v1
summaries), the decision rule (verdicts.py). The schedule is the one chosen on the train
hold-out (docs/training.md), written to <out>/schedule.json (SCHEDULE_KEYS) and committed before
the first run; a schedule that is not converged by the pre-registered criterion is refused.
Every run starts from the `pretrained` backbone except the `scratch_*` rows (Table 1a + full
from random weights at the same schedule). The v1 table (table1.py) and its files stay as they
are.
"""
import json
import pathlib

from absl import flags

from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax import files
from pointseg_jax import runtime
from pointseg_jax.experiments import annotation_cost
from pointseg_jax.experiments import confusion
from pointseg_jax.experiments import figures
from pointseg_jax.experiments import report
from pointseg_jax.experiments import runs as runs_lib
from pointseg_jax.experiments import statistics
from pointseg_jax.experiments import verdicts
from pointseg_jax.experiments.runs import Run
from pointseg_jax.experiments.verdicts import Finding

FLAGS = flags.FLAGS

VARIANT = "pretrained"
SCRATCH = (("model.init_from", None),)   # a scratch_* row: random weights, nothing else changed
MARGIN = 2.0                              # '~': equivalent within +-2 mIoU points
SMALLEST_EFFECT = 2.0                     # what a claim the paper does not size is planned for
POINT_SECONDS = annotation_cost.seconds_per_image("point")    # 22.1 s: 1Point's cost

# ------------------------------------------------------------------------------------ rows ---

PAPER_RUNS = tuple(Run(n, n) for n in (
    "image", "image_obj", "point_noobj", "point", "all_points", "all_points_weighted",
    "three_annotators", "random_points"))
# Paper §5: 1Point grown into discs of 2, 5, 25 VOC pixels; scaled to the 128-px benchmark
# (x 128 / 500: 0.5, 1.3, 6.4) and, beyond the paper, the same numbers in our pixels.
GROWN_SCALED = tuple(Run(f"grown_r{r:g}", "grown_points", overrides=(("data.point_radius", r),))
                     for r in (0.5, 1.3, 6.4))
GROWN_LITERAL = tuple(Run(f"grown_r{r:g}", "grown_points", overrides=(("data.point_radius", r),))
                      for r in (2.0, 5.0, 25.0))
DENSE_RUNS = (Run("box", "box"), Run("full", "full"))
# Beyond the paper: squiggles, background clicks, the pairwise term with the kernel the hold-out
# search chose (experiments_results/pairwise_search/search.md; never val).
BEYOND_RUNS = (
    Run("squiggle_r2", "squiggle", 2), Run("squiggle_r5", "squiggle", 5),
    Run("squiggle_r25", "squiggle", 25), Run("all_points_bg", "all_points_bg"),
    Run("point_crf_tuned", "point_crf", overrides=(
        ("loss.weights.pairwise", 0.3), ("loss.pairwise.sigma_rgb", 3.0),
        ("loss.pairwise.sigma_xy", 24.0))),
)
# Equal budget: full and box on the images that 1, 2 and 4 times 1Point's hours buy.
BUDGET_MULTIPLES = (1, 2, 4)
BUDGET_RUNS = tuple(Run(f"{regime}_budget{k}x", regime, budget_seconds=k * POINT_SECONDS)
                    for regime in ("full", "box") for k in BUDGET_MULTIPLES)
# From scratch at the same schedule: what pretraining changes (Table 1a and full).
SCRATCH_OF = ("image", "image_obj", "point_noobj", "point", "full")
SCRATCH_RUNS = tuple(Run(f"scratch_{n}", n, overrides=SCRATCH) for n in SCRATCH_OF)

ALL_RUNS = (PAPER_RUNS + GROWN_SCALED + GROWN_LITERAL + DENSE_RUNS + BEYOND_RUNS + BUDGET_RUNS
            + SCRATCH_RUNS)
RUNS_BY_NAME = {r.name: r for r in ALL_RUNS}
# --quick: one row of each kind (a regime, a radius, a budget, scratch), 1 seed, 100 steps.
QUICK_RUNS = ("image", "image_obj", "point_noobj", "point", "all_points", "all_points_weighted",
              "three_annotators", "random_points", "grown_r1.3", "box", "full", "squiggle_r5",
              "all_points_bg", "point_crf_tuned", "full_budget1x", "box_budget1x",
              "scratch_point")
# The sweep in parts, each finishing a family (docs/experiments.md, "Parts"): process A on one
# core, B on the other, each in its own worktree; launch/table1_v2_parts.sh runs a process's parts.
PARTS = {
    "1A": ("image", "image_obj", "point_noobj", "point", "all_points", "all_points_weighted",
           "random_points"),
    "1B": ("three_annotators", "grown_r0.5", "grown_r1.3", "grown_r6.4", "box", "full"),
    "2A": ("grown_r2", "grown_r5", "grown_r25", "squiggle_r2", "squiggle_r5", "squiggle_r25"),
    "2B": ("all_points_bg", "point_crf_tuned", "full_budget1x", "box_budget1x", "full_budget2x",
           "full_budget4x", "box_budget2x", "box_budget4x"),
    "3A": ("scratch_image", "scratch_image_obj", "scratch_point"),
    "3B": ("scratch_point_noobj", "scratch_full"),
}
# Within a seed: the primary family's rows first (an unfinished part has the paper's findings).
FIRST = tuple(r.name for r in PAPER_RUNS + GROWN_SCALED + DENSE_RUNS)

# -------------------------------------------------------------------------------- findings ---

PAPER_ROWS = tuple(r.name for r in PAPER_RUNS + GROWN_SCALED) + ("box",)


def _grown(run, family, paper):
  r = dict(run.overrides)["data.point_radius"]
  return Finding(f"grown points r = {r:g} px ~ 1Point", run.name, ("point",), "~", family,
                 paper, 0.35, MARGIN)


FINDINGS = (
    # The paper's findings (§4.2, Table 1a/1b, Fig. 6a): effects are its VOC numbers.
    Finding("Img < Img + Obj", "image_obj", ("image",), ">", "paper", "32.2 vs 29.8", 2.4),
    Finding("Img < Img + 1Point", "point_noobj", ("image",), ">", "paper", "35.1 vs 29.8", 5.3),
    Finding("Img + Obj < Img + Obj + 1Point", "point", ("image_obj",), ">", "paper",
            "42.7 vs 32.2", 10.5),
    Finding("Img + 1Point < Img + Obj + 1Point", "point", ("point_noobj",), ">", "paper",
            "42.7 vs 35.1", 7.6),
    Finding("AllPoints ~ 1Point", "all_points", ("point",), "~", "paper", "42.7 vs 42.7", 0.0,
            MARGIN),
    Finding("AllPoints weighted > AllPoints", "all_points_weighted", ("all_points",), ">",
            "paper", "43.4 vs 42.7", 0.7),
    Finding("3 annotators > 1Point", "three_annotators", ("point",), ">", "paper",
            "43.8 vs 42.7", 1.1),
    Finding("random points > human points", "random_points", ("point",), ">", "paper",
            "46.1 vs 42.7", 3.4),
    *(_grown(r, "paper", "43.0–43.1 vs 42.7 (radius scaled to 128 px)") for r in GROWN_SCALED),
    Finding("box > 1Point", "box", ("point",), ">", "paper", "45.1 vs 42.7", 2.4),
    Finding("full above every other paper row", "full", PAPER_ROWS, ">", "paper",
            "58.3 vs <= 46.1", 12.2),
    # Beyond the paper (its radii taken literally, its squiggle remark, later protocols).
    *(_grown(r, "beyond", "43.0–43.1 vs 42.7 (VOC radius, literal)") for r in GROWN_LITERAL),
    *(Finding(f"squiggles r = {r.squiggle_radius:g} ~ 1Point", r.name, ("point",), "~", "beyond",
              "§4.2: squiggles 'unlikely to significantly improve'", 0.0, MARGIN)
      for r in BEYOND_RUNS[:3]),
    Finding("AllPoints + background clicks > AllPoints", "all_points_bg", ("all_points",), ">",
            "beyond", "", SMALLEST_EFFECT),
    Finding("1Point + pairwise (hold-out kernel) > 1Point", "point_crf_tuned", ("point",), ">",
            "beyond", "", SMALLEST_EFFECT),
    Finding("1Point vs full at 1Point's hours", "point", ("full_budget1x",), "!=", "beyond", "",
            SMALLEST_EFFECT),
    Finding("1Point vs box at 1Point's hours", "point", ("box_budget1x",), "!=", "beyond", "",
            SMALLEST_EFFECT),
    # What pretraining changes: each Table 1a row and full against itself from scratch, and
    # Table 1a's findings from scratch.
    *(Finding(f"pretrained > scratch: {n}", n, (f"scratch_{n}",), ">", "pretraining", "",
              SMALLEST_EFFECT) for n in SCRATCH_OF),
    Finding("from scratch: Img < Img + Obj", "scratch_image_obj", ("scratch_image",), ">",
            "pretraining", "32.2 vs 29.8", 2.4),
    Finding("from scratch: Img < Img + 1Point", "scratch_point_noobj", ("scratch_image",), ">",
            "pretraining", "35.1 vs 29.8", 5.3),
    Finding("from scratch: Img + Obj < Img + Obj + 1Point", "scratch_point",
            ("scratch_image_obj",), ">", "pretraining", "42.7 vs 32.2", 10.5),
    Finding("from scratch: Img + 1Point < Img + Obj + 1Point", "scratch_point",
            ("scratch_point_noobj",), ">", "pretraining", "42.7 vs 35.1", 7.6),
    Finding("from scratch: full above Table 1a", "scratch_full",
            tuple(f"scratch_{n}" for n in SCRATCH_OF[:4]), ">", "pretraining", "58.3 vs 42.7",
            15.6),
)

# Seeds per row: `python -m pointseg_jax.experiments.seed_plan` (a test checks these against it).
SEEDS = {
    "image": 5, "image_obj": 5, "point_noobj": 5, "point": 5, "all_points": 5,
    "all_points_weighted": 5, "three_annotators": 5, "random_points": 3, "grown_r0.5": 5,
    "grown_r1.3": 5, "grown_r6.4": 5, "grown_r2": 5, "grown_r5": 5, "grown_r25": 5, "box": 5,
    "full": 5, "squiggle_r2": 5, "squiggle_r5": 5, "squiggle_r25": 5, "all_points_bg": 5,
    "point_crf_tuned": 5, "full_budget1x": 5, "full_budget2x": 3, "full_budget4x": 3,
    "box_budget1x": 5, "box_budget2x": 3, "box_budget4x": 3, "scratch_image": 5,
    "scratch_image_obj": 5, "scratch_point_noobj": 5, "scratch_point": 5, "scratch_full": 5,
}

# Each finding's power at its seeds for its planned effect (seed_plan; shown beside its verdict,
# so an inconclusive one says what it could have found; the test recomputes it).
PLANNED_POWER = {
    "Img < Img + Obj": 0.43, "Img < Img + 1Point": 0.86, "Img + Obj < Img + Obj + 1Point": 1.0,
    "Img + 1Point < Img + Obj + 1Point": 1.0, "AllPoints ~ 1Point": 0.83,
    "AllPoints weighted > AllPoints": 0.28, "3 annotators > 1Point": 0.39,
    "random points > human points": 0.9, "grown points r = 0.5 px ~ 1Point": 0.77,
    "grown points r = 1.3 px ~ 1Point": 0.77, "grown points r = 6.4 px ~ 1Point": 0.77,
    "box > 1Point": 0.43, "full above every other paper row": 0.81,
    "grown points r = 2 px ~ 1Point": 0.77, "grown points r = 5 px ~ 1Point": 0.77,
    "grown points r = 25 px ~ 1Point": 0.77, "squiggles r = 2 ~ 1Point": 0.43,
    "squiggles r = 5 ~ 1Point": 0.83, "squiggles r = 25 ~ 1Point": 0.74,
    "AllPoints + background clicks > AllPoints": 0.91,
    "1Point + pairwise (hold-out kernel) > 1Point": 0.88, "1Point vs full at 1Point's hours": 0.21,
    "1Point vs box at 1Point's hours": 0.21, "pretrained > scratch: image": 0.23,
    "pretrained > scratch: image_obj": 0.23, "pretrained > scratch: point_noobj": 0.23,
    "pretrained > scratch: point": 0.23, "pretrained > scratch: full": 0.23,
    "from scratch: Img < Img + Obj": 0.43, "from scratch: Img < Img + 1Point": 0.86,
    "from scratch: Img + Obj < Img + Obj + 1Point": 1.0,
    "from scratch: Img + 1Point < Img + Obj + 1Point": 1.0,
    "from scratch: full above Table 1a": 1.0,
}

# ------------------------------------------------------------------ the plan's v1 data -------

# The committed v1 summaries (from scratch, 3 seeds) the seed plan takes its paired sds from.
V1_SOURCES = {
    "1,600 steps": ("experiments_results/runs", "experiments_results/pairwise_search/runs"),
    "4,800 steps": ("experiments_results/long_schedule/runs",)}
_V1_NAMES = {"point_crf_tuned": "val_crf_w0.3_rgb3_xy24", "full_budget1x": "full_budget22s",
             "box_budget1x": "box_budget22s"}
_V1_SAME = ({r.name for r in PAPER_RUNS + DENSE_RUNS + BEYOND_RUNS} - set(_V1_NAMES))
CLICK_REGIMES = {"point", "all_points", "all_points_weighted", "three_annotators",
                 "random_points", "grown_points", "squiggle", "all_points_bg", "point_crf"}


def v1_name(row: str) -> str | None:
  """The v1 run of the same regime (v1 trained from scratch; scratch_x is v1's x); None: none."""
  name = row.removeprefix("scratch_")
  return _V1_NAMES.get(name, name if name in _V1_SAME else None)


def group(finding: Finding) -> str:
  """Which v1 paired sds stand in for a finding's: 'clicks' (two Img + Obj + clicks rows),
  'init' (a row against itself from scratch) or 'across' (different loss families)."""
  rows = [RUNS_BY_NAME[r] for r in finding.rows()]
  if len(rows) == 2 and rows[0].regime == rows[1].regime and rows[0].name != rows[1].name and (
      rows[1].name.startswith("scratch_") != rows[0].name.startswith("scratch_")):
    return "init"
  return "clicks" if all(r.regime in CLICK_REGIMES for r in rows) else "across"


# ---------------------------------------------------------------------------- schedule --------

SCHEDULE_FILE = "schedule.json"
# The hold-out search that chose the schedule (its curves are the convergence figure's left panel).
HOLDOUT_SEARCH = pathlib.Path("schedule_pretrained") / "search.json"   # beside <out>
FIGURES = ("fig6a.png", "equal_budget.png", "convergence.png")
# confusion.md's per-class table (post hoc; every row is in its first table): Table 1a, box, full.
CONFUSION_ROWS = ("image", "image_obj", "point_noobj", "point", "box", "full")
# <out>/schedule.json: written from the hold-out search's choice, committed before the first run.
SCHEDULE_KEYS = {
    "num_steps": "steps per run (int)",
    "config": "other config fields of the chosen schedule, {dotted name: value} (optimizer, lr "
              "decay, ...)",
    "holdout_miou_gain_last_20pct": "hold-out mIoU points gained over the last 20 % of steps "
                                    "(the convergence criterion: < 1)",
    "chosen_by": "the command that chose it (docs/training.md)",
}
IMAGE_SIZE = 96   # as v1: stored 128-px images scaled by 0.75
# The embedded set's version, in the config (and so in every fingerprint): 2.0.0's objectness
# maps are learned on its train scenes (docs/objectness.md); v1 ran 1.0.0.
DATASET = (("data.dataset", "synthetic_points/default:2.0.0"),)
# --quick trains the chosen schedule's optimiser (schedule.json: SGD, cosine, peak lr 3e-3),
# shortened: the pretrained rows fine-tune conv1_1 as V = r W, which needs SGD (state.py).
QUICK_STEPS = 100
QUICK = runs_lib.Schedule(
    "v2_quick", VARIANT, num_steps=QUICK_STEPS, seeds=1, image_size=IMAGE_SIZE, evals=1,
    fields=(("optimizer.name", "sgd"), ("optimizer.learning_rate", 3e-3),
            ("optimizer.warmup_steps", 10), ("optimizer.clip_grad_norm", 20.0),
            ("optimizer.schedule", "cosine"), ("optimizer.decay_steps", QUICK_STEPS)) + DATASET)


def load_schedule(path: pathlib.Path) -> runs_lib.Schedule:
  """The chosen schedule; one error naming the file when it is missing, malformed or not
  converged by the pre-registered criterion."""
  how = ("written from the schedule chosen on the train hold-out (docs/training.md) and "
         "committed before the first run")
  if not path.is_file():
    raise errors.MissingInputError(f"{path} not found: the v2 sweep runs the pre-registered "
                                   f"schedule, {how}; --quick needs none")
  try:
    chosen = json.loads(path.read_text())
  except ValueError as e:
    raise errors.ConfigError(f"{path}: not JSON ({e})") from None
  if not isinstance(chosen, dict) or set(chosen) != set(SCHEDULE_KEYS):
    has = sorted(chosen) if isinstance(chosen, dict) else chosen
    raise errors.ConfigError(f"{path}: needs exactly the keys {sorted(SCHEDULE_KEYS)} "
                             f"(docs/experiments.md); has {has!r}")
  steps, gain, fields = (chosen["num_steps"], chosen["holdout_miou_gain_last_20pct"],
                         chosen["config"])
  if not isinstance(steps, int) or isinstance(steps, bool) or steps < 10:
    raise errors.ConfigError(f"{path}: num_steps = {steps!r}, must be an integer >= 10")
  if not isinstance(gain, (int, float)) or isinstance(gain, bool) or not gain < 1.0:
    raise errors.ConfigError(f"{path}: holdout_miou_gain_last_20pct = {gain!r}: the schedule "
                             "is not converged by the pre-registered criterion (< 1 point over "
                             "the last 20 % of steps); choose a longer one on the hold-out")
  if not isinstance(fields, dict):
    raise errors.ConfigError(f"{path}: config must be {{dotted field: value}}, got {fields!r}")
  schedule = runs_lib.Schedule("v2", VARIANT, num_steps=steps, seeds=max(SEEDS.values()),
                               image_size=IMAGE_SIZE, evals=4,
                               fields=tuple(sorted(fields.items())) + DATASET)
  schedule.apply(runs_lib.base_config(VARIANT))    # every field exists (ConfigError otherwise)
  return schedule


# ------------------------------------------------------------------------------ command ---

def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("out", None, "Results directory: its schedule.json, the summaries, table, "
                      "figure (checkpoints in <out>/work, git-ignored).", **fv)
  flags.DEFINE_bool("quick", False, "Smoke test: one row of each kind, 1 seed, 100 steps.", **fv)
  flags.DEFINE_enum("variant", "synthetic", ["synthetic", "tiny"],
                    "synthetic: the benchmark; tiny: seconds, from scratch (tests).", **fv)
  flags.DEFINE_string("data_dir", None, "TFDS data dir (default: TFDS's).", **fv)
  flags.DEFINE_list("runs", [], "Only these rows (default all).", **fv)
  flags.DEFINE_enum("part", None, list(PARTS), "Only this part's rows (PARTS: 1A, 1B, ...; "
                    "docs/experiments.md, 'Parts').", **fv)
  flags.DEFINE_bool("table_only", False, "Train nothing; rebuild results from the summaries.",
                    **fv)
  flags.DEFINE_bool("git_commit", False, "Commit <out>'s summaries and table after each run.",
                    **fv)
  flags.DEFINE_string("results_md", None, "Also write the tables into this file between its "
                      "table1_v2 markers (RESULTS.md).", **fv)
  flags.mark_flags_as_required(["out"], flag_values=flag_values)


def schedule_and_seeds(out: pathlib.Path, quick: bool, variant: str):
  """(schedule, seeds per row): the chosen schedule and SEEDS; --quick / tiny: 1 seed each."""
  if variant == "tiny":
    return runs_lib.SCHEDULES["tiny"], {n: 1 for n in RUNS_BY_NAME}
  if quick:
    return QUICK, {n: 1 for n in RUNS_BY_NAME}
  return load_schedule(out / SCHEDULE_FILE), dict(SEEDS)


def write_results(out: pathlib.Path, summaries: list[dict], schedule, seeds: dict,
                  num_train: int, command: str, results_md: pathlib.Path | None = None) -> dict:
  """results.json (rows, the pre-registered verdicts), table.md (and its copy in results_md),
  the FIGURES (Fig. 6a and the equal-budget curve of the pretrained rows; convergence)."""
  rows = statistics.collect(summaries, ALL_RUNS)
  found = verdicts.decide(summaries, FINDINGS, seeds)
  results = {"schedule": schedule.name, "num_steps": schedule.num_steps, "seeds": seeds,
             "command": command, "num_train_images": num_train, "rows": rows,
             "findings": found, "runs_finished": len(summaries)}
  files.write_json(out / "results.json", results, indent=1)
  text = "\n".join(report.rows_markdown(rows, schedule.name, seeds)) + "\n\n"
  text += ("Pre-registered findings (docs/experiments.md, 'Table 1 v2'): paired per seed, "
           "Holm within each family, α = 0.05; power = the finding's power at its seeds for its "
           "planned effect (docs/experiments.md, 'Seeds per row').\n\n"
           + report.verdicts_markdown(found, PLANNED_POWER))
  text += ("\nval mIoU (%) of every seed (seed k of every row shares the score layers' init, "
           "the dropout masks and the batch order; · = planned, not finished):\n\n"
           + report.seeds_markdown(rows, seeds))
  files.write_text(out / "table.md", text)
  if results_md is not None:
    embed(results_md, text)
  pretrained = {n: r for n, r in rows.items() if not n.startswith("scratch_")}
  if pretrained:
    figures.plot_fig6a(pretrained, out / "fig6a.png", num_train)
    figures.plot_equal_budget(pretrained, out / "equal_budget.png")
  if summaries:
    runs, chosen = holdout_curves(out.parent / HOLDOUT_SEARCH)
    figures.plot_convergence(summaries, runs, chosen, out / "convergence.png")
  confusion.write_report(out, command, order=RUNS_BY_NAME, detail=CONFUSION_ROWS)
  return results


BEGIN = "<!-- table1_v2 tables: rebuilt by --table_only --results_md; do not edit inside -->"
END = "<!-- table1_v2 tables: end -->"


def split_at_markers(results_md: pathlib.Path) -> tuple[str, str]:
  """RESULTS.md's text before and after the markers; a missing file or marker is an error
  before anything trains."""
  if not results_md.is_file():
    raise errors.MissingInputError(f"--results_md={results_md}: no such file")
  text = results_md.read_text()
  if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
    raise errors.ConfigError(f"{results_md}: needs one line {BEGIN!r} and, after it, one line "
                             f"{END!r}; the tables go between them")
  head, rest = text.split(BEGIN)
  return head, rest.split(END, 1)[1]


def embed(results_md: pathlib.Path, text: str) -> None:
  """table.md's text between RESULTS.md's markers: the tables a reader sees there are rebuilt
  from the summaries, never typed."""
  head, tail = split_at_markers(results_md)
  files.write_text(results_md, head + BEGIN + "\n" + text + END + tail)


def embedded(results_md: pathlib.Path) -> str:
  return results_md.read_text().split(BEGIN, 1)[1].split(END, 1)[0][1:]


def holdout_curves(search: pathlib.Path):
  """([{run, eval_miou_by_step}] of the schedule search's arms, the chosen arm's run); none
  when the search's file is not there (a test's or a user's own --out)."""
  if not search.is_file():
    return [], None
  found = json.loads(search.read_text())
  arms = [{"run": r["run"], "eval_miou_by_step": r["eval_miou_by_step"]} for r in found["rows"]]
  chosen = [r["run"] for r in found["rows"] if r["candidate"] == found["chosen"]]
  return arms, chosen[0] if chosen else None


def check_rows(flag: str, names) -> None:
  """--<flag>: every name a row of the table, else one error listing them."""
  unknown = [n for n in names if n not in RUNS_BY_NAME]
  if unknown:
    cli.fail(f"--{flag}: unknown row(s) {unknown}; known: {', '.join(RUNS_BY_NAME)}")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  runtime.setup_process()
  check_rows("runs", FLAGS.runs)
  out = pathlib.Path(FLAGS.out)
  schedule, seeds = schedule_and_seeds(out, FLAGS.quick, FLAGS.variant)
  if FLAGS.part and FLAGS.runs:
    cli.fail(f"--part={FLAGS.part} and --runs: one or the other")
  names = (FLAGS.runs or (PARTS[FLAGS.part] if FLAGS.part else None)
           or (QUICK_RUNS if FLAGS.quick else list(RUNS_BY_NAME)))
  command = runs_lib.command_line("table1_v2")
  results_md = pathlib.Path(FLAGS.results_md) if FLAGS.results_md else None
  if results_md is not None:
    split_at_markers(results_md)
  results = runs_lib.sweep_and_write(
      out, schedule, seeds, [RUNS_BY_NAME[n] for n in names],
      lambda done, num_train: write_results(out, done, schedule, seeds, num_train, command,
                                            results_md),
      table_only=FLAGS.table_only, commit=FLAGS.git_commit, data_dir=FLAGS.data_dir, first=FIRST)
  print(f"[table1_v2] {results['runs_finished']} runs -> {out / 'table.md'}")
  for f in results["findings"]:
    print(f"  {f['finding']:50s} {f['verdict']}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
