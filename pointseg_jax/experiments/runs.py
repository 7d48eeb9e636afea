"""Experiment runs: what one run is (regime, schedule, seed), how it trains, where its summary goes.

A run is `train.train_and_evaluate` on a config built the way `main` builds it
(config_lib.get_config + a Schedule + config_lib.with_regime), so its numbers are what
`python -m pointseg_jax.main --config=configs/<regime>.py --config.<field>=...` gives. A sweep
keeps one small summary.json per (run, seed) and skips the ones whose config fingerprint
matches, so it resumes after any interruption; checkpoints live in a git-ignored work/ folder.
Used by experiments/table1.py, table1_v2.py and pairwise_search.py; the statistics are in
statistics.py, the tables and figures in report.py.
"""
import dataclasses
import functools
import hashlib
import json
import math
import os
import pathlib
import subprocess
import sys
import time
from typing import Mapping

from absl import flags
from absl import logging
import numpy as np

from pointseg_jax import cli
from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import evaluate
from pointseg_jax import files
from pointseg_jax import metric_writer
from pointseg_jax import predict
from pointseg_jax import runtime
from pointseg_jax import train
from pointseg_jax import workdir
from pointseg_jax.data import pipeline
from pointseg_jax.data.prepare import prepare_spec
from pointseg_jax.data.spec import DataSpec
from pointseg_jax.experiments import annotation_cost


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
  # Evaluations, evenly spaced, the last at num_steps: 2 = at half the steps too (the Table 1
  # convergence check), 5 = every 20 % (the hold-out schedule search's criterion), 1 = the end.
  evals: int = 2
  # Other config fields, ((dotted name, value), ...), e.g. a decaying learning rate: set last.
  fields: tuple = ()

  def apply(self, config):
    c = config.copy_and_resolve_references()
    with c.unlocked():
      c.train.num_steps = self.num_steps
      c.train.eval_every = max(1, self.num_steps // self.evals)
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
    set_fields(c, self.fields, f"schedule {self.name}: field")
    return c


def set_fields(config, pairs, what: str) -> None:
  """config.<dotted> = value for each pair (config unlocked); a name that is no field: an error."""
  for name, value in pairs:
    *parents, leaf = name.split(".")
    node = config
    for parent in parents:
      node = node[parent] if parent in node else None
      if node is None:
        break
    if node is None or leaf not in node:
      raise errors.ConfigError(f"{what} {name!r} names no config field")
    node[leaf] = value


# Adam 3e-4, 100-step warmup, no clipping: docs/training.md measured it ~3 points above the
# synthetic configs' SGD at 2000 steps, on the from-scratch net (not the paper's optimiser).
ADAM = (("name", "adam"), ("learning_rate", 3e-4), ("warmup_steps", 100), ("clip_grad_norm", 0.0))
SCHEDULES = {
    "full": Schedule("full", "synthetic", num_steps=1600, seeds=3, image_size=96, optimizer=ADAM),
    "quick": Schedule("quick", "synthetic", num_steps=100, seeds=1, image_size=96, optimizer=ADAM,
                      evals=1),
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
  config = config_lib.with_regime(base, run.regime, squiggle_radius=run.squiggle_radius,
                                  train_fraction=run.train_fraction(num_train))
  with config.unlocked():
    config.seed = seed
    set_fields(config, run.overrides, f"run {run.name}: override")
  return config


def fingerprint(config) -> str:
  """What a summary stands for: the fields that give the parameters their meaning (the workdir
  guard's `identity`, inactive loss terms left out) plus the schedule that decides when it was
  measured. Equal fingerprints = the same run."""
  values = {**workdir.identity(config), "train.num_steps": int(config.train.num_steps),
            "train.eval_every": int(config.train.eval_every)}
  if values.get("model.init_from"):
    values["model.init_from"] = init_identity(values["model.init_from"])
  text = json.dumps(values, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def init_identity(path: str) -> str:
  """An init file (e.g. the `pretrained` variant's) stands for its content, not for where the
  checkout lies: two worktrees of one sweep give the same fingerprint, and retrained weights a
  new one. A missing file stays its path (training refuses it, naming the command)."""
  p = pathlib.Path(path)
  if not p.is_file():
    return path
  stat = p.stat()
  return "sha256:" + _file_sha256(str(p.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:   # the key: changed file, new hash
  del mtime_ns, size
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def num_train_examples(variant: str, data_dir: str | None = None) -> int:
  """Train-split size of the variant's dataset (built on first use); the equal-budget subsets
  are shares of it."""
  spec = DataSpec.from_config(base_config(variant, data_dir).data)
  return int(prepare_spec(spec).info.splits["train"].num_examples)


# --------------------------------------------------------------------------------- hold-out ---

# Choices made without val (pairwise_search, schedule_search) train on the first 90 % of the train
# split and score on the rest (docs/experiments.md, "Choosing the pairwise term without val").
HOLDOUT_SHARE = 0.1


def holdout(num_train: int) -> tuple[float, str]:
  """(train_fraction, eval split): the first k records train, `train[k:]` scores; disjoint."""
  k = num_train - max(1, round(HOLDOUT_SHARE * num_train))
  fraction = k / num_train
  trained = len(pipeline.train_subset(list(range(num_train)), fraction))
  if not 0 < trained == k < num_train:
    raise errors.DataError(f"hold-out of {num_train} train images: the first {trained} would "
                           f"train and train[{k}:] score; need a train split of >= 2 images")
  return fraction, f"train[{k}:]"


def holdout_overrides(num_train: int) -> tuple:
  """Run.overrides that train on the hold-out's train part and evaluate on the hold-out."""
  fraction, split = holdout(num_train)
  return (("data.train_fraction", fraction), ("eval.split", split))


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
  if error is None:   # kept beside the summary: where each class's pixels went (confusion.py)
    confusion = (work_dir / evaluate.CONFUSION_FILE).read_text()
    files.write_text(run_dir / evaluate.CONFUSION_FILE, confusion)
  files.write_json(run_dir / "summary.json", kept, indent=1)
  return kept


def kept_or_trained(out, run, schedule, seed, num_train, data_dir, train_missing, what,
                    tag="runs") -> tuple[dict | None, bool]:
  """(the run's kept summary, or a fresh one when train_missing (else None); whether it trained).
  A search's step: resumable, one summary per run."""
  path = run_dirs(out, run, seed)[0] / "summary.json"
  summary = load_summary(path, fingerprint(run_config(run, schedule, seed, num_train, data_dir)))
  if summary is not None or not train_missing:
    return summary, False
  print(f"[{tag}] {what}", flush=True)
  return train_one(run, schedule, seed, out, num_train, data_dir), True


def sweep(out: pathlib.Path, schedule: Schedule, seeds, runs, *, train_missing=True,
          after_each=None, data_dir=None, first=()) -> list[dict]:
  """Every (seed, run), seed-major; trains what is missing (unless not train_missing). seeds: the
  same for every run (an int) or per run name (a mapping). Within a seed the runs named in
  `first` go first, in that order (an unfinished sweep has those rows)."""
  num_train = num_train_examples(schedule.variant, data_dir)
  done, todo = [], []
  first = tuple(first)
  ordered = sorted(runs, key=lambda r: first.index(r.name) if r.name in first else len(first))
  count = {r.name: seeds[r.name] if isinstance(seeds, Mapping) else seeds for r in runs}
  for seed in range(max(count.values(), default=0)):
    for run in (r for r in ordered if seed < count[r.name]):
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


def sweep_and_write(out: pathlib.Path, schedule: Schedule, seeds, runs, write, *, table_only=False,
                    commit=False, data_dir=None, first=()):
  """What a sweep command does: <out>/.gitignore, the missing runs trained seed-major (none when
  table_only), after each one the results rebuilt (`write(summaries, num_train)`) and, when
  `commit`, committed; returns write's result for all summaries."""
  out.mkdir(parents=True, exist_ok=True)
  keep_summaries_only(out)
  num_train = num_train_examples(schedule.variant, data_dir)

  def after_each(done, what):
    write(done, num_train)
    if commit:
      git_commit(out, what)

  summaries = sweep(out, schedule, seeds, runs, train_missing=not table_only,
                    after_each=after_each, data_dir=data_dir, first=first)
  return write(summaries, num_train)


def run_regime(config, workdir_path, *, predictions=True):
  """Train (or resume) + evaluate one config; returns (summary, seconds, prediction PNG paths).
  What `demo` (and `demo --compare`) do per regime."""
  t = time.time()
  summary = train.train_and_evaluate(config, workdir_path)
  seconds = time.time() - t
  paths = predict.write_predictions(config, workdir_path) if predictions else []
  return summary, seconds, paths


KEPT_FILES = ("runs", "results.json", "table.md", "fig6a.png", "equal_budget.png",
              "convergence.png", "confusion.md", ".gitignore")


def keep_summaries_only(out: pathlib.Path) -> None:
  """<out>/.gitignore: keep the summaries (a repository's own `runs/` rule must not hide them),
  not the checkpoints. Written atomically: a kill never leaves it empty."""
  ignore, rules = out / ".gitignore", "# checkpoints, metrics, TensorBoard events\nwork/\n!runs/\n"
  if not ignore.exists() or ignore.read_text() != rules:
    files.write_text(ignore, rules)


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


# ------------------------------------------------------------------- experiment commands ---

def define_result_flags(flag_values: flags.FlagValues, tables: str) -> None:
  """--out, --data_dir, --table_only, --git_commit: what every resumable search / check command
  takes (`tables`: the files it writes in --out, e.g. 'search.md / search.json')."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("out", None, f"Results directory (summaries, {tables}; checkpoints in "
                      "work/).", **fv)
  flags.DEFINE_string("data_dir", None, "TFDS data dir (default: TFDS's).", **fv)
  flags.DEFINE_bool("table_only", False, f"Train nothing; rebuild {tables}.", **fv)
  flags.DEFINE_bool("git_commit", False, "Commit <out>'s summaries after each run.", **fv)
  flags.mark_flag_as_required("out", flag_values=flag_values)


def results_dir(argv, out: str) -> pathlib.Path:
  """The start of such a command's main: no stray arguments, the process set up, --out made
  (its .gitignore keeping summaries, not checkpoints)."""
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  runtime.setup_process()
  path = pathlib.Path(out)
  path.mkdir(parents=True, exist_ok=True)
  keep_summaries_only(path)
  return path


def command_line(module: str) -> str:
  """How this command was called, for its tables' provenance line."""
  return f"python -m pointseg_jax.experiments.{module} " + " ".join(sys.argv[1:])


def chosen_arms(requested, names) -> list[str]:
  """--arms, checked against the command's arm names and kept in the command's own order."""
  if not requested or set(requested) - set(names):
    cli.fail(f"--arms={','.join(requested)}: from {', '.join(names)}")
  return [n for n in names if n in requested]


@dataclasses.dataclass(frozen=True)
class ResultFiles:
  """A search / check command's <stem>.json + <stem>.md in --out, rewritten after each finished
  arm (and, with --git_commit, committed with the summaries) so a stopped command leaves its
  table current and the next session resumes from what is committed."""
  out: pathlib.Path
  stem: str
  what: str                # the commit message's prefix, e.g. "full gap"
  commit: bool             # --git_commit
  extra: tuple = ()        # further files the command keeps (schedule_search's chosen schedule)

  @property
  def names(self) -> tuple:
    return ("runs", f"{self.stem}.json", f"{self.stem}.md", *self.extra, ".gitignore")

  @property
  def markdown(self) -> pathlib.Path:
    return self.out / f"{self.stem}.md"

  def write(self, result: dict, markdown: str) -> dict:
    files.write_json(self.out / f"{self.stem}.json", result, indent=1)
    files.write_text(self.markdown, markdown)
    return result

  def commit_if_asked(self, message: str) -> None:
    if self.commit:
      git_commit(self.out, message, self.names, what=self.what)
