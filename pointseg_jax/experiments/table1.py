r"""The paper's Table 1 and Fig. 6a on the embedded benchmark, per seed, resumable.

  python -m pointseg_jax.experiments.table1 --out=experiments_results            # 3 seeds, all runs
  python -m pointseg_jax.experiments.table1 --out=/tmp/t1q --quick                # 1 seed, short
  python -m pointseg_jax.experiments.table1 --out=experiments_results --table_only  # rebuild table
  python -m pointseg_jax.experiments.table1 --out=/tmp/t1 --variant=tiny --runs=image,point

Every run is `train.train_and_evaluate` on a config built the way `main` builds it
(config_lib.get_config + the schedule below + compare.regime_config), so its numbers are what
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
Schedules, the cost model and the findings are documented in docs/experiments.md.
"""
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import subprocess
import sys
import time

from absl import flags
from absl import logging
import numpy as np

from pointseg_jax import cli
from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import main as main_lib
from pointseg_jax import metric_writer
from pointseg_jax import supervision
from pointseg_jax import train
from pointseg_jax import workdir
from pointseg_jax.data.prepare import prepare_spec
from pointseg_jax.data.spec import DataSpec
from pointseg_jax.experiments import annotation_cost
from pointseg_jax.experiments import compare

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

@dataclasses.dataclass(frozen=True)
class Run:
  """One row: a regime, its regime argument, and for equal-budget runs the budget it is given."""
  name: str
  regime: str
  squiggle_radius: float | None = None
  # Equal-budget runs: the annotation seconds per train image that the *whole* train set gets
  # (22.1 = what 1Point costs); the run trains on the images that budget buys at its own cost.
  budget_seconds: float | None = None
  # Other config fields, ((dotted name, value), ...), set last: e.g. a pairwise kernel or a
  # hold-out split (experiments/pairwise_search.py). Empty for every Table 1 run.
  overrides: tuple = ()

  def train_fraction(self, num_train: int) -> float | None:
    if self.budget_seconds is None:
      return None
    return annotation_cost.images_for_budget(self.regime, self.budget_seconds,
                                             num_train) / num_train


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


# ------------------------------------------------------------------------------- schedules ---

@dataclasses.dataclass(frozen=True)
class Schedule:
  """What the experiments change in the configs, for every run alike (docs/experiments.md)."""
  name: str
  variant: str
  num_steps: int
  seeds: int
  image_size: int | None = None   # None: the variant's; else stored images scaled to fit
  optimizer: tuple = ()           # config.optimizer overrides
  eval_halfway: bool = True       # also evaluate at num_steps / 2 (the convergence check)

  def apply(self, config):
    c = config.copy_and_resolve_references()
    with c.unlocked():
      c.train.num_steps = self.num_steps
      # mIoU at half the steps too: the convergence check.
      c.train.eval_every = max(1, self.num_steps // 2) if self.eval_halfway else self.num_steps
      c.train.checkpoint_every = max(1, self.num_steps // 4)
      c.train.log_every = max(1, min(100, self.num_steps // 4))
      c.train.keep_checkpoints = 1
      c.train.progress_bar = False
      if self.image_size is not None:
        stored = max(config.data.image_size)
        ratio = self.image_size / stored
        c.data.image_size = (self.image_size, self.image_size)
        # Train crops at the scale eval shrinks to (eval: whole image scaled to fit).
        lo, hi = config.data.scale_range
        c.data.scale_range = (lo * ratio, hi * ratio)
      c.optimizer.update(dict(self.optimizer))
    return c


# Adam 3e-4, 100-step warmup, no clipping: docs/training.md measured it ~3 points above the
# synthetic configs' SGD at 2000 steps, on the from-scratch net (not the paper's optimiser).
ADAM = (("name", "adam"), ("learning_rate", 3e-4), ("warmup_steps", 100), ("clip_grad_norm", 0.0))
SCHEDULES = {
    "full": Schedule("full", "synthetic", num_steps=1600, seeds=3, image_size=96, optimizer=ADAM),
    "quick": Schedule("quick", "synthetic", num_steps=100, seeds=1, image_size=96, optimizer=ADAM,
                      eval_halfway=False),
    "tiny": Schedule("tiny", "tiny", num_steps=4, seeds=1),
}


def schedule_for(quick: bool, variant: str, num_steps: int | None) -> Schedule:
  s = SCHEDULES["tiny" if variant == "tiny" else ("quick" if quick else "full")]
  if num_steps is not None:
    if num_steps < 2:
      raise errors.ConfigError(f"--num_steps={num_steps}: need at least 2 (eval at half and end)")
    s = dataclasses.replace(s, name=f"{s.name}_{num_steps}steps", num_steps=num_steps)
  return s


def base_config(variant: str, data_dir: str | None = None):
  config = config_lib.get_config("point", variant)
  config.data.data_dir = data_dir
  return config


def run_config(run: Run, schedule: Schedule, seed: int, num_train: int, data_dir=None):
  """The config of one run: configs/point.py's variant, the schedule, the run's regime row."""
  base = schedule.apply(base_config(schedule.variant, data_dir))
  config = compare.regime_config(base, run.regime, squiggle_radius=run.squiggle_radius,
                                 train_fraction=run.train_fraction(num_train))
  with config.unlocked():
    config.seed = seed
    for name, value in run.overrides:
      *parents, leaf = name.split(".")
      node = config
      for parent in parents:
        node = node[parent]
      if leaf not in node:
        raise errors.ConfigError(f"run {run.name}: override {name!r} names no config field")
      node[leaf] = value
  return config


def fingerprint(config) -> str:
  """What a summary stands for: the fields that give the parameters their meaning (the workdir
  guard's `identity`, inactive loss terms left out) plus the schedule that decides when it was
  measured. Equal fingerprints = the same run."""
  values = {**workdir.identity(config), "train.num_steps": int(config.train.num_steps),
            "train.eval_every": int(config.train.eval_every)}
  text = json.dumps(values, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def num_train_examples(variant: str, data_dir: str | None = None) -> int:
  """Train-split size of the variant's dataset (built on first use); the equal-budget subsets
  are shares of it."""
  spec = DataSpec.from_config(base_config(variant, data_dir).data)
  return int(prepare_spec(spec).info.splits["train"].num_examples)


# ---------------------------------------------------------------------------------- running ---

def run_dirs(out: pathlib.Path, run: Run, seed: int) -> tuple[pathlib.Path, pathlib.Path]:
  return out / "runs" / run.name / f"seed{seed}", out / "work" / run.name / f"seed{seed}"


def load_summary(path: pathlib.Path, fp: str) -> dict | None:
  """The run's kept summary when it is of this config; None when absent; an error when stale."""
  if not path.exists():
    return None
  summary = json.loads(path.read_text())
  if summary.get("fingerprint") != fp:
    raise errors.WorkdirError(
        f"{path} is from another config (fingerprint {summary.get('fingerprint')} != {fp}): "
        "the schedule or the code's config defaults changed. Use another --out, or delete that "
        "run's summary and work dir to retrain it.")
  return summary


def train_one(run: Run, schedule: Schedule, seed: int, out: pathlib.Path, num_train: int,
              data_dir=None) -> dict:
  """Train + evaluate one run (resuming its checkpoint); keep and return its small summary."""
  config = run_config(run, schedule, seed, num_train, data_dir)
  fp = fingerprint(config)
  run_dir, work_dir = run_dirs(out, run, seed)
  work_dir.mkdir(parents=True, exist_ok=True)
  mark = work_dir / "fingerprint.txt"
  if mark.exists() and mark.read_text().strip() != fp:
    raise errors.WorkdirError(
        f"{work_dir} holds checkpoints of another config (fingerprint "
        f"{mark.read_text().strip()} != {fp}); delete it or use another --out")
  mark.write_text(fp + "\n")
  load = os.getloadavg()
  t = time.time()
  error = None
  try:
    summary = train.train_and_evaluate(config, work_dir)
  except train.NonFiniteLossError as e:   # a diverged run is a result too: kept, not retried
    logging.error("%s seed %d diverged: %s", run.name, seed, e)
    error = str(e)
    summary = {"step": None, "eval/miou": None, "eval/pixel_accuracy": None,
               "eval/iou_per_class": None, "params_sha256": None, "resumed_from_step": None}
  wall = time.time() - t
  rows = metric_writer.read_metrics(work_dir)
  curve = {str(r["step"]): r["eval/miou"] for r in rows if "eval/miou" in r}
  speeds = [r["train/steps_per_sec"] for r in rows if "train/steps_per_sec" in r]
  fraction = config.data.train_fraction
  kept = {
      "run": run.name, "regime": run.regime, "seed": seed, "schedule": schedule.name,
      "fingerprint": fp, "step": summary["step"],
      "miou": summary["eval/miou"], "pixel_accuracy": summary["eval/pixel_accuracy"],
      "iou_per_class": summary["eval/iou_per_class"], "eval_miou_by_step": curve,
      "train_images": math.ceil(fraction * num_train - 1e-9), "train_fraction": fraction,
      "params_sha256": summary["params_sha256"],
      "wall_time_s": round(wall, 1), "resumed_from_step": summary["resumed_from_step"],
      "train_steps_per_sec": round(float(np.median(speeds)), 2) if speeds else None,
      "loadavg_1min_start": round(load[0], 2), "loadavg_1min_end": round(os.getloadavg()[0], 2),
      "cpu_count": os.cpu_count(), "error": error,
  }
  run_dir.mkdir(parents=True, exist_ok=True)
  (run_dir / "summary.json").write_text(json.dumps(kept, indent=1) + "\n")
  return kept


def sweep(out: pathlib.Path, schedule: Schedule, seeds: int, runs, *, train_missing=True,
          after_each=None, data_dir=None) -> list[dict]:
  """Every (seed, run), seed-major; trains what is missing (unless not train_missing)."""
  num_train = num_train_examples(schedule.variant, data_dir)
  done, todo = [], []
  ordered = sorted(runs, key=lambda r: FIRST.index(r.name) if r.name in FIRST else len(FIRST))
  for seed in range(seeds):
    for run in ordered:
      fp = fingerprint(run_config(run, schedule, seed, num_train, data_dir))
      summary = load_summary(run_dirs(out, run, seed)[0] / "summary.json", fp)
      (done if summary else todo).append(summary or (run, seed))
  logging.info("%d runs done, %d to train", len(done), len(todo))
  if not train_missing:
    return done
  for i, (run, seed) in enumerate(todo):
    print(f"[table1] {i + 1}/{len(todo)}: {run.name} seed {seed} ({schedule.num_steps} steps)",
          flush=True)
    kept = train_one(run, schedule, seed, out, num_train, data_dir)
    done.append(kept)
    miou = "diverged" if kept["miou"] is None else f"mIoU {100 * kept['miou']:.1f} %"
    print(f"[table1] {run.name} seed {seed}: {miou} in "
          f"{kept['wall_time_s'] / 60:.1f} min", flush=True)
    if after_each is not None:
      after_each(done, f"{run.name} seed {seed}")
  return done


# ---------------------------------------------------------------------------------- tables ---

def _mean_std(values):
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def collect(summaries: list[dict]) -> dict:
  """{run: {n, seeds, miou_mean, miou_std, half_mean, hours, paper_miou, ...}} (% numbers)."""
  by_run = {}
  for s in summaries:
    by_run.setdefault(s["run"], []).append(s)
  rows = {}
  for name in [r.name for r in ALL_RUNS if r.name in by_run] + sorted(
      set(by_run) - set(RUNS_BY_NAME)):
    group = sorted(by_run[name], key=lambda s: s["seed"])
    regime = supervision.get_regime(group[0]["regime"])
    mious = [None if s["miou"] is None else 100 * s["miou"] for s in group]
    mean, std = _mean_std(mious)
    halves = []
    for s in group:
      steps = sorted(int(k) for k in s["eval_miou_by_step"])
      if len(steps) > 1:
        halves.append(100 * s["eval_miou_by_step"][str(steps[-2])])
    half_mean, _ = _mean_std(halves)
    cost = annotation_cost.seconds_per_image(regime.name)
    images = group[0]["train_images"]
    rows[name] = {
        "regime": regime.name, "paper_name": regime.paper, "n": len(group),
        "seeds": [s["seed"] for s in group],
        "miou_mean": mean, "miou_std": std, "miou_per_seed": mious,
        "diverged_seeds": [s["seed"] for s in group if s.get("error")],
        "miou_half_steps_mean": half_mean,
        "paper_miou": (regime.paper_miou
                       if RUNS_BY_NAME.get(name, Run(name, regime.name)).budget_seconds is None
                       else None),
        "seconds_per_image": cost, "train_images": images,
        "annotation_hours": None if cost is None else round(cost * images / 3600, 2),
        "wall_time_s_mean": float(np.mean([s["wall_time_s"] for s in group])),
        "train_steps_per_sec_median": _median([s.get("train_steps_per_sec") for s in group]),
    }
  return rows


def _median(values):
  values = [v for v in values if v is not None]
  return float(np.median(values)) if values else None


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


def _paired(b: dict, a: dict) -> dict:
  """b - a seed by seed (a seed fixes the initial weights and the batch order, which every
  regime shares): shown beside the pooled-sigma verdict, not part of it (docs/experiments.md)."""
  by_seed = dict(zip(a["seeds"], a["miou_per_seed"]))
  diffs = [vb - by_seed[seed] for seed, vb in zip(b["seeds"], b["miou_per_seed"])
           if vb is not None and by_seed.get(seed) is not None]
  mean, sd = _mean_std(diffs)
  return {"paired_differences": diffs, "paired_mean": mean, "paired_sd": sd}


def findings(rows: dict) -> list[dict]:
  """Per finding: b - (best of a), the pooled per-seed std sigma, and the verdict vs 2 sigma."""
  out = []
  for what, b, a_names, relation, paper in FINDINGS:
    item = {"finding": what, "b": b, "a": list(a_names), "relation": relation, "paper": paper}
    present = [a for a in a_names if a in rows and rows[a]["miou_mean"] is not None]
    if b not in rows or len(present) < len(a_names):
      missing = [n for n in (b, *a_names) if n not in rows]
      out.append({**item, "verdict": f"pending ({', '.join(missing)} not run yet)"})
      continue
    a = max(present, key=lambda n: rows[n]["miou_mean"])
    diff = rows[b]["miou_mean"] - rows[a]["miou_mean"]
    stds = [rows[n]["miou_std"] for n in (a, b)]
    sigma = None if None in stds else math.sqrt((stds[0] ** 2 + stds[1] ** 2) / 2)
    item.update(compared_with=a, difference=diff, sigma=sigma,
                n=min(rows[a]["n"], rows[b]["n"]), **_paired(rows[b], rows[a]))
    if sigma is None:
      item["verdict"] = "pending (needs >= 2 seeds for a spread)"
    elif relation == ">":
      item["verdict"] = ("reproduced (> 2 sigma)" if diff > 2 * sigma else
                         "same sign, within 2 sigma" if diff > 0 else
                         "not reproduced: reversed by > 2 sigma" if diff < -2 * sigma else
                         "not reproduced: opposite sign, within 2 sigma")
    else:
      item["verdict"] = ("consistent (within 2 sigma)" if abs(diff) <= 2 * sigma else
                         "not reproduced: differ by > 2 sigma")
    out.append(item)
  return out


def _pm(mean, std, digits=1, signed=False):
  if mean is None:
    return "–"
  sign = "+" if signed else ""
  return f"{mean:{sign}.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def table_markdown(rows: dict, found: list[dict], schedule_name: str, seeds: int) -> str:
  lines = [
      f"Schedule `{schedule_name}`, {seeds} seed(s) asked; val mIoU (%) mean ± std over the seeds "
      "finished (std with ddof=1).",
      "",
      "| run | paper name | seeds | mIoU (%) | mIoU at half the steps | paper VOC (%) | "
      "label cost (s/img) | train images | annotation hours | wall min/run |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, r in rows.items():
    lines.append(
        f"| `{name}` | {r['paper_name']} | {r['n']} | {_pm(r['miou_mean'], r['miou_std'])} | "
        f"{_pm(r['miou_half_steps_mean'], None)} | "
        f"{'–' if r['paper_miou'] is None else r['paper_miou']} | "
        f"{'–' if r['seconds_per_image'] is None else r['seconds_per_image']} | "
        f"{r['train_images']} | "
        f"{'–' if r['annotation_hours'] is None else r['annotation_hours']} | "
        f"{r['wall_time_s_mean'] / 60:.1f} |")
  lines += ["", "Findings (difference = b − a in mIoU points; σ = the pooled per-seed std "
            "sqrt((σa² + σb²)/2); a finding '>' is reproduced when the difference exceeds 2σ, "
            "'~' when it stays within 2σ; the last column is b − a seed by seed, shown, not "
            "part of the verdict):", "",
            "| finding | paper (VOC) | b | a | difference | σ | verdict | "
            "b − a per seed: mean ± sd |",
            "|---|---|---|---|---|---|---|---|"]
  for f in found:
    diff = "–" if "difference" not in f else f"{f['difference']:+.1f}"
    sigma = "–" if f.get("sigma") is None else f"{f['sigma']:.1f}"
    lines.append(f"| {f['finding']} | {f['paper']} | `{f['b']}` | "
                 f"`{f.get('compared_with', ', '.join(f['a']))}` | {diff} | {sigma} | "
                 f"{f['verdict']} | {_pm(f.get('paired_mean'), f.get('paired_sd'), signed=True)} |")
  return "\n".join(lines) + "\n"


def plot_fig6a(rows: dict, path: pathlib.Path, num_train: int) -> None:
  """mIoU vs annotation hours (paper's cost model): table regimes as points, the equal-budget
  full / box runs as lines; the paper's VOC numbers (10,582 images) in a second panel."""
  import matplotlib   # pylint: disable=g-import-not-at-top  (heavy; only when drawing)
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt   # pylint: disable=g-import-not-at-top

  fig, (ax, ax_paper) = plt.subplots(1, 2, figsize=(12, 4.8))
  for name, r in rows.items():
    if r["annotation_hours"] is None or RUNS_BY_NAME.get(name, Run(name, "")).budget_seconds:
      continue
    ax.errorbar(r["annotation_hours"], r["miou_mean"], yerr=r["miou_std"] or 0, fmt="o",
                capsize=3, color="C0" if r["regime"] not in ("box", "full") else "C3")
    ax.annotate(r["paper_name"], (r["annotation_hours"], r["miou_mean"]), fontsize=7,
                xytext=(4, 3), textcoords="offset points")
  for regime, color in (("full", "C3"), ("box", "C2")):
    series = sorted((r["annotation_hours"], r["miou_mean"], r["miou_std"] or 0)
                    for r in rows.values() if r["regime"] == regime and r["miou_mean"] is not None)
    if len(series) > 1:
      x, y, e = zip(*series)
      ax.errorbar(x, y, yerr=e, fmt="-s", color=color, capsize=3, alpha=0.7,
                  label=f"{regime} on the images a budget buys")
  point = rows.get("point")
  if point and point["annotation_hours"]:
    ax.axvline(point["annotation_hours"], color="grey", ls=":", lw=1, label="1Point's hours")
  ax.set_xscale("log")
  ax.set_xlabel(f"annotation hours (paper's cost model; {num_train} train images)")
  ax.set_ylabel("val mIoU (%)")
  ax.set_title("embedded benchmark (mean ± std over seeds)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right")
  voc_images = 10582
  for regime in ("image", "point", "box", "full"):
    row = supervision.get_regime(regime)
    h = annotation_cost.hours(regime, voc_images)
    ax_paper.plot(h, row.paper_miou, "o", color="C3" if regime in ("box", "full") else "C0")
    ax_paper.annotate(row.paper, (h, row.paper_miou), fontsize=8, xytext=(4, 3),
                      textcoords="offset points")
  ax_paper.set_xscale("log")
  ax_paper.set_xlabel(f"annotation hours ({voc_images} VOC train images)")
  ax_paper.set_ylabel("VOC 2012 val mIoU (%)")
  ax_paper.set_title("paper, Fig. 6a")
  ax_paper.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_results(out: pathlib.Path, summaries: list[dict], schedule: Schedule, seeds: int,
                  num_train: int, command: str) -> dict:
  """results.json, table.md and fig6a.png from the kept summaries."""
  rows = collect(summaries)
  found = findings(rows)
  results = {"schedule": dataclasses.asdict(schedule), "seeds": seeds, "command": command,
             "num_train_images": num_train, "rows": rows, "findings": found,
             "runs_finished": len(summaries)}
  (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
  (out / "table.md").write_text(table_markdown(rows, found, schedule.name, seeds))
  if rows:
    plot_fig6a(rows, out / "fig6a.png", num_train)
  return results


KEPT_FILES = ("runs", "results.json", "table.md", "fig6a.png", ".gitignore")


def keep_summaries_only(out: pathlib.Path) -> None:
  """<out>/.gitignore: keep the summaries (a repository's own `runs/` rule must not hide them),
  not the checkpoints. Written atomically: a kill never leaves it empty."""
  ignore, rules = out / ".gitignore", "# checkpoints, metrics, TensorBoard events\nwork/\n!runs/\n"
  if not ignore.exists() or ignore.read_text() != rules:
    (out / ".gitignore.tmp").write_text(rules)
    os.replace(out / ".gitignore.tmp", ignore)


def git_commit(out: pathlib.Path, message: str, names=KEPT_FILES, what="table1 sweep") -> None:
  """Commit <out>'s small files (never work/); a failure is logged, the sweep goes on."""
  paths = [str(out / name) for name in names if (out / name).exists()]
  try:
    subprocess.run(["git", "add", "--", *paths], check=True, capture_output=True, text=True)
    subprocess.run(["git", "commit", "-q", "-m", f"{what}: {message}", "--", *paths],
                   check=True, capture_output=True, text=True)
  except (subprocess.CalledProcessError, FileNotFoundError) as e:
    logging.warning("git commit of %s failed (the sweep goes on): %s", out,
                    getattr(e, "stderr", e))


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  main_lib.quiet_orbax_info()
  main_lib.hide_accelerators_from_tensorflow()
  schedule = schedule_for(FLAGS.quick, FLAGS.variant, FLAGS.num_steps)
  seeds = FLAGS.seeds if FLAGS.seeds is not None else schedule.seeds
  if seeds < 1:
    cli.fail(f"--seeds={seeds}: need at least 1")
  unknown = [n for n in FLAGS.runs if n not in RUNS_BY_NAME]
  if unknown:
    cli.fail(f"--runs: unknown run(s) {unknown}; known: {', '.join(RUNS_BY_NAME)}")
  runs = [RUNS_BY_NAME[n] for n in FLAGS.runs] if FLAGS.runs else list(ALL_RUNS)
  out = pathlib.Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  keep_summaries_only(out)
  command = "python -m pointseg_jax.experiments.table1 " + " ".join(sys.argv[1:])
  num_train = num_train_examples(schedule.variant, FLAGS.data_dir)

  def after_each(done, what):
    write_results(out, done, schedule, seeds, num_train, command)
    if FLAGS.git_commit:
      git_commit(out, what)

  summaries = sweep(out, schedule, seeds, runs, train_missing=not FLAGS.table_only,
                    after_each=after_each, data_dir=FLAGS.data_dir)
  results = write_results(out, summaries, schedule, seeds, num_train, command)
  print(f"[table1] {len(summaries)} runs in the table -> {out / 'table.md'}, "
        f"{out / 'results.json'}, {out / 'fig6a.png'}")
  for name, r in results["rows"].items():
    print(f"  {name:22s} {_pm(r['miou_mean'], r['miou_std']):>12s} % (n={r['n']})")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
