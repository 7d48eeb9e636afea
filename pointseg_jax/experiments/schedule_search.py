r"""The optimiser, lr schedule and number of steps, chosen on a train hold-out, never val.

  python -m pointseg_jax.experiments.schedule_search --out=experiments_results/schedule --git_commit
  python -m pointseg_jax.experiments.schedule_search --variant=pretrained \
      --out=experiments_results/schedule_pretrained --git_commit      # from the pretrained backbone
  python -m pointseg_jax.experiments.schedule_search --out=DIR --table_only   # rebuild search.md

The plan (grid, budget, convergence criterion, selection rule) is docs/training.md, "The schedule
chosen on a train hold-out", written before the first run. In short: `point` (Img + Obj + 1Point)
trains on train[:90%] and is scored on train[90%:] (runs.holdout) at 20, 40, ..., 100 % of its
steps; a candidate is *converged* when its last 20 % of steps gain < 1 point of hold-out mIoU;
of the converged candidates the best final mIoU wins, and any within 1 point of it with fewer
steps (then a lower lr) wins instead. When the winner has the grid's most steps and doubling its
steps gained >= 1 point (or nothing converged), the winner's steps are doubled once more and the
rule applied again. The val-chosen settings (the configs' constant SGD, Table 1 v1's Adam) are
trained on the same hold-out as references: shown, never chosen. Every run is a runs.Run with a
runs.Schedule of its own (resumable, one summary per run under <out>/runs/), so an interrupted
search resumes and makes the same choices.
"""
import dataclasses

from absl import flags

from pointseg_jax import cli
from pointseg_jax import config_lib
from pointseg_jax import files
from pointseg_jax.experiments import runs

FLAGS = flags.FLAGS

CONVERGED_GAIN = 0.01    # the last 20 % of steps gain less than 1 point of hold-out mIoU
TIE = 0.01               # candidates within 1 point of the best tie (one seed cannot split them)
EVALS = 5                # hold-out evaluations at 20, 40, 60, 80, 100 % of the steps
IMAGE_SIZE = 96          # Table 1's inputs (runs.SCHEDULES["full"]), what the schedule is for
# Warmup and clipping per optimiser, as the val-chosen settings had them (docs/training.md).
WARMUP_CLIP = {"sgd": (200, 20.0), "adam": (100, 0.0)}
CHOSEN_FILE = "chosen_schedule.json"   # table1_v2's schedule.json format (its SCHEDULE_KEYS)


@dataclasses.dataclass(frozen=True, order=True)
class Candidate:
  num_steps: int
  learning_rate: float
  optimizer: str = "sgd"
  schedule: str = "cosine"

  @property
  def name(self) -> str:
    return f"{self.optimizer}_{self.schedule}_lr{self.learning_rate:g}_{self.num_steps}"

  def optimizer_overrides(self) -> tuple:
    warmup, clip = WARMUP_CLIP[self.optimizer]
    decaying = self.schedule != "constant"
    # Adam as Table 1 v1 ran it: plain conv1_1 (input_rms rescales SGD's gradient only; the
    # pretrained variant's r would be refused with Adam). 1 is every config's default.
    plain_conv1_1 = (("input_rms", 1.0),) if self.optimizer == "adam" else ()
    return (("name", self.optimizer), ("learning_rate", self.learning_rate),
            ("warmup_steps", min(warmup, self.num_steps // 10)), ("clip_grad_norm", clip),
            ("schedule", self.schedule), ("decay_steps", self.num_steps if decaying else 0)
            ) + plain_conv1_1

  def longer(self) -> "Candidate":
    return dataclasses.replace(self, num_steps=2 * self.num_steps)


# What this search replaces, on the same hold-out: the configs' optimiser (SGD 1e-3, constant,
# 2,000 steps) and Table 1 v1's (Adam 3e-4, constant, 1,600 steps), both chosen on val.
REFERENCES = (Candidate(2000, 1e-3, "sgd", "constant"), Candidate(1600, 3e-4, "adam", "constant"))


# The search's result from scratch (experiments_results/schedule/search.md, done: grid, doubling
# and references scored): what the objectness ablation trains with. PROVISIONAL was the leader
# while the search ran; a test ties both to the committed runs.
CHOSEN: Candidate | None = Candidate(4000, 1e-3)
PROVISIONAL = Candidate(4000, 1e-3)
# The same search from the pretrained backbone (experiments_results/schedule_pretrained, done: lr
# grid 1e-3 / 3e-3 / 1e-2, the doubling, references): what Table 1 v2 trains with (its
# chosen_schedule.json). Its doubling still paid 7.9 points: more steps may pay more.
CHOSEN_PRETRAINED: Candidate | None = Candidate(8000, 3e-3)
# The same rule on the pretrained search's runs, restricted to those that fit the demo's budget of
# DEMO_STEPS steps: `make demo` of session 7, now demo_stability's reference arm (the demo trains
# demo_stability.CHOSEN; docs/training.md, "The demo's schedule").
DEMO_STEPS = 2000
DEMO_PRETRAINED = Candidate(2000, 1e-2)


def schedule_of(candidate: Candidate, variant: str) -> runs.Schedule:
  return runs.Schedule(f"holdout_{candidate.name}", variant, candidate.num_steps, seeds=1,
                       image_size=None if variant == "tiny" else IMAGE_SIZE,
                       optimizer=candidate.optimizer_overrides(), evals=EVALS)


def as_run(candidate: Candidate, num_train: int) -> runs.Run:
  return runs.Run(candidate.name, "point", overrides=runs.holdout_overrides(num_train))


def fifths(curve, num_steps) -> list:
  """A run's hold-out mIoU at 20, 40, ..., 100 % of its steps (None where not measured)."""
  curve = curve or {}
  return [curve.get(str(num_steps * k // EVALS)) for k in range(1, EVALS + 1)]


def last_fifth_gain(row) -> float | None:
  """Hold-out mIoU at 100 % minus at 80 % of the steps (None: diverged or not measured)."""
  at80 = fifths(row["eval_miou_by_step"], row["num_steps"])[-2]
  return None if row["miou"] is None or at80 is None else row["miou"] - at80


def select(rows, max_steps: int | None = None) -> Candidate | None:
  """The rule: the converged candidates (references excluded); the best final mIoU; among those
  within TIE of it the fewest steps, then the lowest lr. max_steps: only candidates that fit
  that budget (the demo's choice, DEMO_STEPS)."""
  converged = [r for r in rows if r["stage"] != "reference" and r["converged"]
               and (max_steps is None or r["candidate"].num_steps <= max_steps)]
  if not converged:
    return None
  best = max(r["miou"] for r in converged)
  tied = [r for r in converged if best - r["miou"] < TIE]
  return min((r["candidate"] for r in tied),
             key=lambda c: (c.num_steps, c.learning_rate, c.optimizer, c.schedule))


def next_longer(rows, chosen: Candidate | None) -> Candidate | None:
  """The candidate the rule still needs: the winner at twice its steps when its own half-steps run
  is >= TIE below it (doubling still paid); when nothing converged, the best run doubled. None
  when that run is scored already."""
  scored = {r["candidate"]: r for r in rows if r["stage"] != "reference"}
  if chosen is None:
    finished = [r for r in scored.values() if r["miou"] is not None]
    if not finished:
      return None
    longer = max(finished, key=lambda r: r["miou"])["candidate"].longer()
  else:
    half = scored.get(dataclasses.replace(chosen, num_steps=chosen.num_steps // 2))
    if half is None or half["miou"] is None or scored[chosen]["miou"] - half["miou"] < TIE:
      return None
    longer = chosen.longer()
  return None if longer in scored else longer


def grid_candidates(lrs, steps, optimizer="sgd", kinds=("cosine",)) -> list[Candidate]:
  """The grid in training order: fewer steps first, then ascending lr."""
  return sorted(Candidate(s, lr, optimizer, k) for s in steps for lr in lrs for k in kinds)


def search(out, variant, candidates, num_train, *, seed=0, doublings=1, references=REFERENCES,
           train_missing=True, data_dir=None, after_each=None):
  """(one row per candidate scored, in order; the chosen candidate or None; whether every run
  the rule asks for is scored). Without train_missing it stops at the first run not trained."""
  rows = []

  def score(candidate, stage):
    summary, trained = runs.kept_or_trained(
        out, as_run(candidate, num_train), schedule_of(candidate, variant), seed, num_train,
        data_dir, train_missing, f"{stage}: {candidate.name}", tag="schedule_search")
    if summary is None:
      return False
    row = {"stage": stage, "candidate": candidate, "run": candidate.name,
           "num_steps": candidate.num_steps, "miou": summary["miou"],
           "eval_miou_by_step": summary["eval_miou_by_step"],
           "wall_time_s": summary["wall_time_s"],
           "loadavg": (summary.get("loadavg_1min_start"), summary.get("loadavg_1min_end"))}
    gain = last_fifth_gain(row)
    rows.append(dict(row, last_fifth_gain=gain, converged=gain is not None
                     and gain < CONVERGED_GAIN))
    if trained and after_each is not None:
      after_each(rows)
    return True

  for candidate in candidates:
    if not score(candidate, "grid"):
      return rows, None, False
  chosen = select(rows)
  for _ in range(doublings):
    longer = next_longer(rows, chosen)
    if longer is None:
      break
    if not score(longer, "longer"):
      return rows, None, False
    chosen = select(rows)
  for candidate in references:
    if not score(candidate, "reference"):
      return rows, chosen, False
  return rows, chosen, True


def report(rows, chosen, variant, num_train, command, done=False) -> tuple[dict, str]:
  fraction, split = runs.holdout(num_train)
  plain = [{k: (dataclasses.asdict(v) if k == "candidate" else v) for k, v in r.items()}
           for r in rows]
  result = {"command": command, "variant": variant, "train_images": round(fraction * num_train),
            "holdout_split": split, "image_size": None if variant == "tiny" else IMAGE_SIZE,
            "converged_gain": CONVERGED_GAIN, "tie": TIE, "rows": plain, "done": done,
            "chosen": dataclasses.asdict(chosen) if chosen else None}
  pct = lambda v: "diverged" if v is None else f"{100 * v:.1f}"
  lines = [
      "# Schedule: hold-out search (never val)", "",
      f"`{command}`", "",
      f"`point` (Img + Obj + 1Point), `{variant}` init, trained on {result['train_images']} train "
      f"images, scored on `{split}` (dense masks), one seed; mIoU (%) at 20/40/60/80/100 % of the "
      "steps. Converged: the last 20 % of steps gain < 1 point. Rule: docs/training.md, \"The "
      "schedule chosen on a train hold-out\".", "",
      "| stage | optimiser | schedule | lr | steps | 20 % | 40 % | 60 % | 80 % | 100 % "
      "| last 20 % gain | converged | wall min | load |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    c = r["candidate"]
    points = fifths(r["eval_miou_by_step"], c.num_steps)
    gain = r["last_fifth_gain"]
    load = "–".join(f"{v:.1f}" for v in r["loadavg"] if v is not None)
    lines.append(f"| {r['stage']} | {c.optimizer} | {c.schedule} | {c.learning_rate:g} "
                 f"| {c.num_steps} | " + " | ".join(pct(p) if p is not None or r["miou"] is None
                                                      else "–" for p in points)
                 + f" | {'–' if gain is None else f'{100 * gain:+.1f}'} "
                 f"| {'yes' if r['converged'] else 'no'} | {r['wall_time_s'] / 60:.1f} | {load} |")
  lines.append("")
  if chosen is not None:
    settings = dict(chosen.optimizer_overrides())
    lines.append(f"**Chosen: {chosen.optimizer.upper()} {chosen.schedule}, lr "
                 f"{chosen.learning_rate:g}, {chosen.num_steps} steps** (warmup "
                 f"{settings['warmup_steps']}, gradient clipped at {settings['clip_grad_norm']:g})"
                 + ("" if done else "; the reference runs are still pending") + ".")
    if next_longer(rows, chosen) is not None:
      lines.append("Doubling its steps still gained >= 1 point and the doublings allowed are "
                   "spent: more steps may gain more (not measured).")
  elif done:
    lines.append("Chosen: none; no candidate converged by the criterion.")
  else:
    lines.append("Chosen: pending (the search has not finished).")
  lines.append("")
  return result, "\n".join(lines)


def chosen_schedule(rows, chosen: Candidate, command: str) -> dict:
  """The choice as Table 1 v2 reads it (table1_v2.SCHEDULE_KEYS: copy it to <v2 out>/schedule.json):
  steps, the optimiser's config fields, the measured last-20 % gain in points, the command."""
  row = next(r for r in rows if r["candidate"] == chosen and r["stage"] != "reference")
  return {"num_steps": chosen.num_steps,
          "config": {f"optimizer.{k}": v for k, v in chosen.optimizer_overrides()},
          "holdout_miou_gain_last_20pct": round(100 * row["last_fifth_gain"], 2),
          "chosen_by": command}


def result_files(out, commit=False) -> runs.ResultFiles:
  return runs.ResultFiles(out, "search", what="schedule search", commit=commit,
                          extra=(CHOSEN_FILE,))


def write(out, rows, chosen, variant, num_train, command, done=False) -> dict:
  result = result_files(out).write(*report(rows, chosen, variant, num_train, command, done))
  if chosen is not None:
    files.write_json(out / CHOSEN_FILE, chosen_schedule(rows, chosen, command), indent=1)
  return result


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  fv = {"flag_values": flag_values}
  runs.define_result_flags(flag_values, "search.md / search.json")
  flags.DEFINE_enum("variant", "synthetic", ["synthetic", "pretrained", "tiny"],
                    "synthetic: from scratch; pretrained: from the committed synthetic_classes "
                    "backbone (configs/point.py:pretrained); tiny: seconds (tests).", **fv)
  flags.DEFINE_integer("seed", 0, "The one seed of the search.", **fv)
  flags.DEFINE_list("lrs", ["1e-3", "3e-3"], "Peak learning rates of the grid.", **fv)
  flags.DEFINE_list("steps", ["2000", "4000"], "Step counts of the grid (multiples of 5).", **fv)
  flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "The grid's optimiser (sgd: the "
                    "paper's).", **fv)
  flags.DEFINE_list("kinds", ["cosine"], "Decaying schedules of the grid (cosine, poly).", **fv)
  flags.DEFINE_integer("doublings", 1, "At most this many step doublings of the winner.", **fv)
  flags.DEFINE_bool("references", True, "Also train the val-chosen settings on the hold-out "
                    "(shown, never chosen).", **fv)


def parse_grid() -> list[Candidate]:
  try:
    lrs = [float(v) for v in FLAGS.lrs]
    steps = [int(v) for v in FLAGS.steps]
  except ValueError:
    cli.fail(f"--lrs={','.join(FLAGS.lrs)} --steps={','.join(FLAGS.steps)}: numbers separated by "
             "commas (steps: integers)")
  if not lrs or min(lrs) <= 0:
    cli.fail("--lrs: at least one learning rate, every one > 0")
  if not steps or any(s < 5 or s % 5 for s in steps):
    cli.fail(f"--steps={','.join(FLAGS.steps)}: multiples of 5 (the criterion evaluates at 80 %)")
  bad = [k for k in FLAGS.kinds if k not in config_lib.LR_SCHEDULES]
  if bad or not FLAGS.kinds:
    cli.fail(f"--kinds={','.join(FLAGS.kinds)}: from {', '.join(config_lib.LR_SCHEDULES)}")
  return grid_candidates(lrs, steps, FLAGS.optimizer, tuple(FLAGS.kinds))


def main(argv):
  out = runs.results_dir(argv, FLAGS.out)
  candidates = parse_grid()
  num_train = runs.num_train_examples(FLAGS.variant, FLAGS.data_dir)
  command = runs.command_line("schedule_search")
  results = result_files(out, commit=FLAGS.git_commit)
  references = REFERENCES if FLAGS.references and FLAGS.variant != "tiny" else ()

  def after_each(rows):
    write(out, rows, None, FLAGS.variant, num_train, command)
    results.commit_if_asked(rows[-1]["run"])

  rows, chosen, done = search(out, FLAGS.variant, candidates, num_train, seed=FLAGS.seed,
                        doublings=FLAGS.doublings, references=references,
                        train_missing=not FLAGS.table_only, data_dir=FLAGS.data_dir,
                        after_each=after_each)
  write(out, rows, chosen, FLAGS.variant, num_train, command, done)
  results.commit_if_asked("chosen" if chosen else "table")
  print(f"[schedule_search] {len(rows)} runs scored -> {results.markdown}; chosen: "
        f"{chosen.name if chosen else 'none yet'}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
