r"""The paper's Table 1 and Fig. 6a on the embedded benchmark, per seed, resumable.

  python -m pointseg_jax.experiments.table1 --out=experiments_results            # 3 seeds, all runs
  python -m pointseg_jax.experiments.table1 --out=/tmp/t1q --quick                # 1 seed, short
  python -m pointseg_jax.experiments.table1 --out=experiments_results --table_only  # rebuild table
  python -m pointseg_jax.experiments.table1 --out=/tmp/t1 --variant=tiny --runs=image,point

Every run is `train.train_and_evaluate` on a config built the way `main` builds it
(config_lib.get_config + a schedule of runs.py + config_lib.with_regime), so its numbers are what
`python -m pointseg_jax.main --config=configs/<regime>.py --config.<field>=...` gives. Runs go
seed by seed (all runs of seed 0 first), so a partial sweep already has a 1-seed table.

Layout of --out:
  runs/<run>/seed<k>/summary.json   small per-run summary (mIoU, eval curve, wall time, config
                                    fingerprint): kept, and the whole table is rebuilt from these
  results.json, table.md, fig6a.png the collected table, mean +- std over seeds, the figure
  work/                             checkpoints, metrics, TensorBoard (ignored by git: .gitignore)

Resuming: a run whose summary.json exists with the same config fingerprint is never repeated; an
interrupted run resumes from its latest checkpoint in work/ (bit-identical, docs/training.md). A
summary or work dir from a *different* config is an error (pick another --out), never mixed in.
Schedules, the cost model and the findings are documented in docs/experiments.md. This module is
the Table 1 definition (its rows and the paper's claims) and its command; running a run is
runs.py, the statistics statistics.py, the table and figure report.py.
"""
import pathlib

from absl import flags

from pointseg_jax import cli
from pointseg_jax import runtime
from pointseg_jax.experiments import report
from pointseg_jax.experiments.runs import Run
from pointseg_jax.experiments import runs as runs_lib

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The command's flags, defined only when it runs as a program (absl flags are global)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("out", None, "Results directory (summaries, table, figure; checkpoints in "
                      "<out>/work, git-ignored).", **fv)
  flags.DEFINE_integer("seeds", None, "Seeds per run (default: the schedule's, 3; --quick: 1).",
                       **fv)
  flags.DEFINE_bool("quick", False, "The short schedule: 1 seed, fewer steps (<= 10 min idle).",
                    **fv)
  flags.DEFINE_enum("variant", "synthetic", ["synthetic", "tiny"],
                    "Config variant: synthetic (the benchmark) or tiny (seconds; tests).", **fv)
  flags.DEFINE_string("data_dir", None, "TFDS data dir (default: TFDS's, ~/tensorflow_datasets).",
                      **fv)
  flags.DEFINE_list("runs", [], "Only these runs (names as in the table; default all).", **fv)
  flags.DEFINE_integer("num_steps", None, "Override the schedule's steps (a new fingerprint).",
                       **fv)
  flags.DEFINE_bool("table_only", False, "Train nothing; rebuild results.json / table.md / PNG "
                    "from the summaries present.", **fv)
  flags.DEFINE_bool("git_commit", False, "After each finished run, commit <out>'s summaries and "
                    "table (`git add` + `git commit -- <out>`): a long sweep survives the "
                    "session.", **fv)
  flags.mark_flags_as_required(["out"], flag_values=flag_values)


# ------------------------------------------------------------------------------------ runs ---

TABLE_RUNS = (
    Run("image", "image"), Run("image_obj", "image_obj"), Run("point_noobj", "point_noobj"),
    Run("point", "point"), Run("all_points", "all_points"),
    Run("all_points_weighted", "all_points_weighted"), Run("three_annotators", "three_annotators"),
    Run("random_points", "random_points"),
    # Paper §5: 1Point grown into discs of radius 2, 5, 25 VOC pixels = 0.5, 1.3, 6.4 of ours
    # (docs/clicks.md, "Grown points"); the literal radii are configs/grown_points.py:2|5|25.
    Run("grown_r0.5", "grown_points", overrides=(("data.point_radius", 0.5),)),
    Run("grown_r1.3", "grown_points", overrides=(("data.point_radius", 1.3),)),
    Run("grown_r6.4", "grown_points", overrides=(("data.point_radius", 6.4),)),
    # Beyond the paper: one error-free stroke per instance, drawn with these radii.
    Run("squiggle_r2", "squiggle", 2), Run("squiggle_r5", "squiggle", 5),
    Run("squiggle_r25", "squiggle", 25),
    Run("all_points_bg", "all_points_bg"), Run("box", "box"), Run("full", "full"),
    # Beyond the paper: Img + Obj + 1Point + the pairwise (Gated-CRF-style) term, its default
    # kernel (docs/losses.md) -- not tuned on val.
    Run("point_crf", "point_crf"),
)
# Equal budget: full and box on the images that 1Point's hours buy (22.1 s/image), and budgets
# between (50 s; 102.5 s = what box costs on the whole set).
BUDGETS = (22.1, 50.0, 102.5)
BUDGET_RUNS = (
    Run("full_budget22s", "full", budget_seconds=22.1),
    Run("full_budget50s", "full", budget_seconds=50.0),
    Run("full_budget102s", "full", budget_seconds=102.5),
    Run("box_budget22s", "box", budget_seconds=22.1),
    Run("box_budget50s", "box", budget_seconds=50.0),
)
ALL_RUNS = TABLE_RUNS + BUDGET_RUNS
# Training order within a seed: the convergence check's two runs and the main comparisons first,
# so an unfinished sweep has the most informative rows.
FIRST = ("point", "full", "image", "image_obj", "point_noobj", "box", "full_budget22s",
         "box_budget22s")
RUNS_BY_NAME = {r.name: r for r in ALL_RUNS}


# The paper's findings (§4.2, Table 1, Fig. 6a): (what, run b, run(s) a, relation, paper numbers).
# relation '>': b above a; '~': b about a (the paper's gap is within about a point).
FINDINGS = (
    ("Img < Img + Obj", "image_obj", ("image",), ">", "32.2 vs 29.8"),
    ("Img < Img + 1Point", "point_noobj", ("image",), ">", "35.1 vs 29.8"),
    ("Img + Obj + 1Point best of the one-click regimes", "point",
     ("image", "image_obj", "point_noobj"), ">", "42.7 vs 35.1"),
    ("random points >= human points", "random_points", ("point",), ">", "46.1 vs 42.7"),
    ("AllPoints ~ 1Point", "all_points", ("point",), "~", "42.7 vs 42.7"),
    ("3 annotators: a small gain", "three_annotators", ("point",), ">", "43.8 vs 42.7"),
    ("grown points (r=2 VOC px = 0.5) ~ points", "grown_r0.5", ("point",), "~",
     "43.0-43.1 vs 42.7"),
    ("grown points (r=5 VOC px = 1.3) ~ points", "grown_r1.3", ("point",), "~",
     "43.0-43.1 vs 42.7"),
    ("grown points (r=25 VOC px = 6.4) ~ points", "grown_r6.4", ("point",), "~",
     "43.0-43.1 vs 42.7"),
    ("box > point", "box", ("point",), ">", "45.1 vs 42.7"),
    ("full best", "full", tuple(r.name for r in TABLE_RUNS if r.name != "full"), ">",
     "58.3 vs 46.1"),
)


def write_results(out: pathlib.Path, summaries: list[dict], schedule, seeds: int, num_train: int,
                  command: str) -> dict:
  """results.json, table.md and fig6a.png of Table 1's runs and claims."""
  return report.write_results(out, summaries, schedule, seeds, num_train, command,
                              runs=ALL_RUNS, claims=FINDINGS)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  runtime.setup_process()
  schedule = runs_lib.schedule_for(FLAGS.quick, FLAGS.variant, FLAGS.num_steps)
  seeds = FLAGS.seeds if FLAGS.seeds is not None else schedule.seeds
  if seeds < 1:
    cli.fail(f"--seeds={seeds}: need at least 1")
  unknown = [n for n in FLAGS.runs if n not in RUNS_BY_NAME]
  if unknown:
    cli.fail(f"--runs: unknown run(s) {unknown}; known: {', '.join(RUNS_BY_NAME)}")
  runs = [RUNS_BY_NAME[n] for n in FLAGS.runs] if FLAGS.runs else list(ALL_RUNS)
  out = pathlib.Path(FLAGS.out)
  command = runs_lib.command_line("table1")
  results = runs_lib.sweep_and_write(
      out, schedule, seeds, runs,
      lambda done, num_train: write_results(out, done, schedule, seeds, num_train, command),
      table_only=FLAGS.table_only, commit=FLAGS.git_commit, data_dir=FLAGS.data_dir, first=FIRST)
  print(f"[table1] {results['runs_finished']} runs in the table -> {out / 'table.md'}, "
        f"{out / 'results.json'}, {out / 'fig6a.png'}")
  for name, r in results["rows"].items():
    print(f"  {name:22s} {report.pm(r['miou_mean'], r['miou_std']):>12s} % (n={r['n']})")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
