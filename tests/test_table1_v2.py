"""experiments/table1_v2.py: every pre-registered row builds its config, the equal-budget subsets
have the stated sizes, the schedule file is checked, the seeds are the committed plan's."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import evaluate
from pointseg_jax import metrics
from pointseg_jax import state
from pointseg_jax.experiments import runs
from pointseg_jax.experiments import full_gap
from pointseg_jax.experiments import seed_plan
from pointseg_jax.experiments import table1_v2 as v2
from helpers import REPO

CHOSEN = {"num_steps": 6000,
          "config": {"optimizer.name": "adam", "optimizer.learning_rate": 3e-4,
                     "optimizer.warmup_steps": 100, "optimizer.clip_grad_norm": 0.0},
          "holdout_miou_gain_last_20pct": 0.6, "chosen_by": "a test"}


def write_schedule(tmp_path, **changes):
  path = tmp_path / v2.SCHEDULE_FILE
  path.write_text(json.dumps({**CHOSEN, **changes}))
  return path


def test_every_row_builds_its_config(tmp_path):
  schedule = v2.load_schedule(write_schedule(tmp_path))
  assert (schedule.num_steps, schedule.image_size, schedule.evals) == (6000, 96, 4)
  for run in v2.ALL_RUNS:
    config = runs.run_config(run, schedule, 4, 2000)
    config_lib.validate(config)
    assert (config.regime, config.seed, config.train.num_steps) == (run.regime, 4, 6000)
    assert config.optimizer.name == "adam" and config.train.eval_every == 1500
    assert config.data.dataset == "synthetic_points/default:2.0.0"
    # Pretrained unless a scratch_* row; nothing else differs between the two.
    scratch = run.name.startswith("scratch_")
    assert config.model.init_from == (None if scratch else config_lib.PRETRAINED_INIT_FROM)
    if scratch:
      twin = runs.run_config(v2.RUNS_BY_NAME[run.name.removeprefix("scratch_")], schedule, 4,
                             2000)
      twin.model.init_from = None
      assert twin.to_dict() == config.to_dict()
  by = lambda name: runs.run_config(v2.RUNS_BY_NAME[name], schedule, 0, 2000)  # noqa: E731
  assert [by(f"grown_r{r}").data.point_radius for r in ("0.5", "1.3", "6.4", "2", "5", "25")] == [
      0.5, 1.3, 6.4, 2.0, 5.0, 25.0]
  assert by("grown_r1.3").data.label_kind == "grown_points"
  crf = by("point_crf_tuned")
  assert (crf.loss.weights.pairwise, crf.loss.pairwise.sigma_rgb, crf.loss.pairwise.sigma_xy) == (
      0.3, 3.0, 24.0)
  assert by("squiggle_r25").data.squiggle_radius == 25
  fps = {runs.fingerprint(runs.run_config(r, schedule, s, 2000))
         for r in v2.ALL_RUNS for s in range(2)}
  assert len(fps) == 2 * len(v2.ALL_RUNS)


def test_equal_budget_subsets_have_the_stated_sizes():
  """1, 2, 4 x 1Point's 22.1 s per image on 2,000 images: floor(2000 k 22.1 / 239.7) full masks
  = 184, 368, 737; floor(2000 k 22.1 / 102.5) boxes = 431, 862, 1724."""
  sizes = {r.name: round(r.train_fraction(2000) * 2000) for r in v2.BUDGET_RUNS}
  assert sizes == {"full_budget1x": 184, "full_budget2x": 368, "full_budget4x": 737,
                   "box_budget1x": 431, "box_budget2x": 862, "box_budget4x": 1724}
  config = runs.run_config(v2.RUNS_BY_NAME["box_budget4x"], v2.QUICK, 0, 2000)
  assert config.data.train_fraction == 1724 / 2000 and config.regime == "box"


def test_schedule_file_is_checked(tmp_path):
  with pytest.raises(errors.MissingInputError, match="schedule.json not found.*hold-out"):
    v2.load_schedule(tmp_path / v2.SCHEDULE_FILE)
  with pytest.raises(errors.ConfigError, match="not converged by the pre-registered criterion"):
    v2.load_schedule(write_schedule(tmp_path, holdout_miou_gain_last_20pct=1.4))
  with pytest.raises(errors.ConfigError, match="'optimizer.decay' names no config field"):
    v2.load_schedule(write_schedule(tmp_path, config={"optimizer.decay": "cosine"}))
  with pytest.raises(errors.ConfigError, match="num_steps = 5"):
    v2.load_schedule(write_schedule(tmp_path, num_steps=5))
  path = write_schedule(tmp_path)
  path.write_text(json.dumps({"num_steps": 100}))
  with pytest.raises(errors.ConfigError, match="needs exactly the keys"):
    v2.load_schedule(path)
  path.write_text("{")
  with pytest.raises(errors.ConfigError, match="not JSON"):
    v2.load_schedule(path)


def test_quick_and_tiny_need_no_schedule_file(tmp_path):
  schedule, seeds = v2.schedule_and_seeds(tmp_path, quick=True, variant="synthetic")
  assert schedule is v2.QUICK and schedule.num_steps == 100 and set(seeds.values()) == {1}
  assert v2.schedule_and_seeds(tmp_path, quick=False, variant="tiny")[0].variant == "tiny"
  # --quick covers every kind of row: each regime, a grown radius, a budget, a scratch row.
  quick = [v2.RUNS_BY_NAME[n] for n in v2.QUICK_RUNS]
  assert {r.regime for r in quick} == {r.regime for r in v2.ALL_RUNS}
  assert any(r.budget_seconds for r in quick) and any(r.overrides == v2.SCRATCH for r in quick)


def test_every_row_builds_a_valid_optimizer_under_quick_and_the_committed_schedule():
  """--quick once ran Adam on the pretrained rows, whose V = r W conv1_1 needs SGD: every run
  failed at start. Both schedules must build each row's optimiser, and quick mirror the chosen."""
  chosen = v2.load_schedule(REPO / "experiments_results" / "v2" / v2.SCHEDULE_FILE)
  for schedule in (v2.QUICK, chosen):
    for run in v2.ALL_RUNS:
      config = runs.run_config(run, schedule, 0, 2000)
      state.OptimizerSpec.from_config(config.optimizer)   # ConfigError on a bad combination
  quick, full = dict(v2.QUICK.fields), dict(chosen.fields)
  for field in ("optimizer.name", "optimizer.learning_rate", "optimizer.schedule",
                "optimizer.clip_grad_norm", "data.dataset"):
    assert quick[field] == full[field], field
  assert quick["optimizer.decay_steps"] == v2.QUICK.num_steps


def test_findings_name_rows_of_the_table_and_seeds_are_the_plan():
  assert len({f.what for f in v2.FINDINGS}) == len(v2.FINDINGS) == 33
  assert [sum(f.family == k for f in v2.FINDINGS) for k in ("paper", "beyond", "pretraining")] == [
      13, 10, 10]
  for f in v2.FINDINGS:
    assert set(f.rows()) <= set(v2.RUNS_BY_NAME), f.what
    assert (f.relation == "~") == (f.margin is not None)
  assert set(v2.SEEDS) == set(v2.RUNS_BY_NAME)
  # The committed seeds are what the power calculation on the committed v1 summaries gives.
  items, seeds = seed_plan.plan(v2.FINDINGS, seed_plan.load_v1(REPO, v2.V1_SOURCES), v2.v1_name,
                                v2.group, list(v2.RUNS_BY_NAME))
  assert seeds == v2.SEEDS
  assert v2.PLANNED_POWER == {i["finding"]: round(i["power"], 2) for i in items}
  assert min(v2.SEEDS[r] for f in v2.FINDINGS if abs(f.planned_effect) <= 2 for r in f.rows()) == 5
  own = {i["finding"]: i["sd_own_v1"] for i in items}
  # v1, per seed (RESULTS.md): all_points - point = -0.59 +- 1.09 at 1,600 steps only.
  assert own["AllPoints ~ 1Point"] == pytest.approx(1.09, abs=0.005)
  assert own["pretrained > scratch: point"] is None       # v1 ran no pretrained rows


def test_parts_cover_every_row_once_as_docs_and_the_launcher_say():
  """PARTS (--part) are the rows of docs/experiments.md's "Parts" table, every row in exactly
  one; launch/table1_v2_parts.sh runs a process's parts in order, full_gap's arms after part 1."""
  rows = [n for part in v2.PARTS.values() for n in part]
  assert sorted(rows) == sorted(v2.RUNS_BY_NAME) and len(rows) == len(set(rows))
  doc = (REPO / "docs" / "experiments.md").read_text()
  for k in (1, 2, 3):
    a, b = v2.PARTS[f"{k}A"], v2.PARTS[f"{k}B"]
    runs_a, runs_b = (sum(v2.SEEDS[n] for n in part) for part in (a, b))
    assert (f"| {k} | {('paper', 'beyond', 'pretraining')[k - 1]} | `{','.join(a)}` | "
            f"`{','.join(b)}` | {runs_a} + {runs_b} |") in doc
  gap_arms, val_arms = [], []
  for process, core in (("A", "1"), ("B", "0")):
    done = subprocess.run(["bash", str(REPO / "launch" / "table1_v2_parts.sh"), "--dry-run",
                           process], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    commands = [shlex.split(line[2:]) for line in done.stdout.splitlines()]
    assert all(c[c.index("taskset"):c.index("taskset") + 3] == ["taskset", "-c", core]
               for c in commands)
    modules = [c[c.index("-m") + 1].rsplit(".", 1)[1] for c in commands]
    assert modules == ["table1_v2", "full_gap", "table1_v2", "table1_v2", "full_gap"]
    assert [commands[i][-1] for i in (0, 2, 3)] == [f"--part={k}{process}" for k in (1, 2, 3)]
    gap_arms += commands[1][-1].removeprefix("--arms=").split(",")
    assert "--stage=val" in commands[4]
    val_arms += commands[4][-1].removeprefix("--arms=").split(",")
  assert sorted(gap_arms) == sorted(a.name for a in full_gap.ARMS)
  # The val stage's arms as the committed hold-out chooses them (rule 7), one per process.
  holdout = full_gap.measure(REPO / "experiments_results" / "full_gap",
                             v2.load_schedule(REPO / "experiments_results" / "v2" /
                                              v2.SCHEDULE_FILE), 2000, train_missing=False)
  assert sorted(val_arms) == sorted(a.name for a in full_gap.val_arms(holdout))


def test_fingerprint_follows_the_init_files_content_not_its_path(tmp_path):
  """Two worktrees of one sweep (the two-process method) must give the same fingerprints."""
  config = runs.run_config(v2.RUNS_BY_NAME["point"], v2.QUICK, 0, 2000)
  here = runs.fingerprint(config)
  for name in ("a", "b"):
    (tmp_path / name).mkdir()
    shutil.copy(config.model.init_from, tmp_path / name / "w.npz")
  fps = []
  for name in ("a", "b"):
    other = config.copy_and_resolve_references()
    other.model.init_from = str(tmp_path / name / "w.npz")
    fps.append(runs.fingerprint(other))
  assert fps[0] == fps[1] == here
  (tmp_path / "b" / "w.npz").write_bytes(b"other weights")
  other.model.init_from = str(tmp_path / "b" / "w.npz")
  assert runs.fingerprint(other) != here


def test_results_of_a_partial_sweep(tmp_path):
  """Two seeds of two rows: the table, strict JSON (no nan) and every verdict still pending."""
  summaries = [{"run": run, "regime": run, "seed": k, "miou": m / 100,
                "eval_miou_by_step": {"50": m / 200, "100": m / 100}, "train_images": 2000,
                "wall_time_s": 60.0, "train_steps_per_sec": 8.0}
               for run, values in (("point", (40.0, 44.0)), ("image", (30.0, 33.0)))
               for k, m in enumerate(values)]
  results_md = tmp_path / "RESULTS.md"
  results_md.write_text(f"# Results\n\nabove\n{v2.BEGIN}\nstale\n{v2.END}\nbelow\n")
  results = v2.write_results(tmp_path, summaries, v2.QUICK, v2.SEEDS, 2000, "cmd", results_md)
  assert json.loads((tmp_path / "results.json").read_text()) == results
  assert {f["verdict"].split(" ")[0] for f in results["findings"]} == {"pending"}
  table = (tmp_path / "table.md").read_text()
  assert "| `point` | Img + Obj + 1Point | 2 | 42.0 ± 2.8 | 21.0 |" in table
  assert ("| Img < Img + Obj | paper | 32.2 vs 29.8 | `image_obj` | `image` | > | 0 | – | – | – | "
          "– | 0.43 | pending") in table
  # Every seed beside its row; · = planned (5 seeds), not finished.
  assert "| `point` | 5 | 40.0 | 44.0 | · | · | · |" in table
  assert "| `random_points` | 3 |  |  |  |  |  |" not in table   # rows with no run: not listed
  # RESULTS.md: the same text between the markers, the rest kept as it was.
  assert v2.embedded(results_md) == table and "stale" not in results_md.read_text()
  assert results_md.read_text().startswith("# Results\n\nabove\n")
  assert results_md.read_text().endswith(f"{v2.END}\nbelow\n")
  for figure in v2.FIGURES:
    assert (tmp_path / figure).stat().st_size > 0, figure


# A plausible sweep for the rehearsal below: a row's mean mIoU (%), its scratch_ row's 0.7 times
# that; every seed adds one shift shared by all rows (the paired design) and a small own part.
REHEARSAL_MEANS = {
    "image": 8, "image_obj": 16, "point_noobj": 24, "point": 45, "all_points": 45.5,
    "all_points_weighted": 47, "three_annotators": 48, "random_points": 48, "grown_r1.3": 45,
    "grown_r6.4": 44, "grown_r2": 45, "grown_r5": 44, "grown_r25": 30, "box": 29, "full": 37,
    "squiggle_r2": 46, "squiggle_r5": 46, "squiggle_r25": 40, "all_points_bg": 47,
    "point_crf_tuned": 45, "full_budget1x": 20, "full_budget2x": 25, "full_budget4x": 30,
    "box_budget1x": 18, "box_budget2x": 22, "box_budget4x": 26}


def test_results_of_the_whole_planned_sweep(tmp_path):
  """A dress rehearsal of the last --table_only: every row at every planned seed (150 runs, the
  equal-budget rows on their subsets, grown_r0.5 equal to point seed by seed, as the sweep finds:
  tests/test_grown_points.py). Every family is decided, every verdict is one the rule can give,
  the clear cases come out as they must, and the tables and figures are written."""
  rng = np.random.default_rng(0)
  shift = rng.normal(0.0, 1.5, size=max(v2.SEEDS.values()))
  means = dict(REHEARSAL_MEANS, **{f"scratch_{n}": 0.7 * REHEARSAL_MEANS[n] for n in v2.SCRATCH_OF})
  summaries, point = [], {}
  for run in v2.ALL_RUNS:
    for k in range(v2.SEEDS[run.name]):
      if run.name == "grown_r0.5":
        m = point[k]
      else:
        m = means[run.name] + shift[k] + rng.normal(0.0, 0.7)
      point.update({k: m} if run.name == "point" else {})
      summaries.append({"run": run.name, "regime": run.regime, "seed": k, "miou": m / 100,
                        "eval_miou_by_step": {"4000": m / 150, "8000": m / 100},
                        "train_images": round((run.train_fraction(2000) or 1.0) * 2000),
                        "wall_time_s": 900.0, "train_steps_per_sec": 9.0})
  assert len(summaries) == sum(v2.SEEDS.values()) == 150
  results_md = tmp_path / "RESULTS.md"
  results_md.write_text(f"{v2.BEGIN}\n{v2.END}\n")
  results = v2.write_results(tmp_path, summaries, v2.QUICK, v2.SEEDS, 2000, "cmd", results_md)
  found = {f["finding"]: f for f in results["findings"]}
  assert len(found) == len(v2.FINDINGS) and all(f["complete"] for f in found.values())
  allowed = re.compile(r"(reproduced|reproduced \(equivalent within ±2\)|inconclusive|"
                       r"contradicted \(opposite direction\)|contradicted \(differs by more "
                       r"than 2\)|no difference shown|point (above|below) \w+)(; family-wise)?$")
  for f in found.values():
    assert allowed.match(f["verdict"]), f
  # 29 (20 from scratch) points over 5 seeds whose own noise is 0.7: shown, and survives Holm.
  for clear in ("Img + Obj < Img + Obj + 1Point", "from scratch: Img + Obj < Img + Obj + 1Point"):
    assert found[clear]["verdict"] == "reproduced; family-wise"
  # full (37) sits 8 points below 1Point (45): the paper's 'full above all' is contradicted.
  assert found["full above every other paper row"]["verdict"].startswith("contradicted")
  # grown_r0.5 = point at every seed: the differences are all 0, equivalence holds exactly.
  r05 = found["grown points r = 0.5 px ~ 1Point"]
  assert r05["differences"] == [0.0] * 5 and r05["verdict"].startswith("reproduced (equivalent")
  assert found["1Point vs full at 1Point's hours"]["verdict"].startswith("point above full_")
  table = (tmp_path / "table.md").read_text()
  assert "pending" not in table and "| · |" not in table
  assert v2.embedded(results_md) == table
  for figure in v2.FIGURES:
    assert (tmp_path / figure).stat().st_size > 0, figure


def test_results_md_needs_its_markers(tmp_path):
  with pytest.raises(errors.MissingInputError, match="no such file"):
    v2.embed(tmp_path / "RESULTS.md", "x")
  for text in ("no markers", f"{v2.END}\n{v2.BEGIN}\n", f"{v2.BEGIN}\n{v2.BEGIN}\n{v2.END}\n"):
    (tmp_path / "RESULTS.md").write_text(text)
    with pytest.raises(errors.ConfigError, match="needs one line"):
      v2.embed(tmp_path / "RESULTS.md", "x")
    assert (tmp_path / "RESULTS.md").read_text() == text    # untouched


def test_committed_results_md_carries_the_committed_tables():
  """RESULTS.md's tables are table.md's, rebuilt from the summaries (the --table_only
  --results_md command in RESULTS.md); a merge that updates one without the other fails here."""
  table = (REPO / "experiments_results" / "v2" / "table.md").read_text()
  assert v2.embedded(REPO / "RESULTS.md") == table


def test_holdout_curves_are_the_committed_search_and_its_choice():
  arms, chosen = v2.holdout_curves(REPO / "experiments_results" / v2.HOLDOUT_SEARCH)
  schedule = json.loads((REPO / "experiments_results" / "v2" / v2.SCHEDULE_FILE).read_text())
  assert chosen == "sgd_cosine_lr0.003_{}".format(schedule["num_steps"])
  assert max(int(k) for a in arms if a["run"] == chosen for k in a["eval_miou_by_step"]) == 8000
  assert v2.holdout_curves(REPO / "no_such_search.json") == ([], None)


@pytest.mark.slow
def test_the_command_on_tiny(tiny_data_dir, tmp_path):
  """The v2 CLI end to end on the tiny set: a row and its scratch twin, 1 seed, the table written
  with every finding pending (one seed is no test)."""
  out = tmp_path / "v2"
  done = subprocess.run(
      [sys.executable, "-m", "pointseg_jax.experiments.table1_v2", f"--out={out}",
       "--variant=tiny", "--runs=point,scratch_point", f"--data_dir={tiny_data_dir}"],
      cwd=REPO, capture_output=True, text=True, env=dict(os.environ), timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  results = json.loads((out / "results.json").read_text())
  assert set(results["rows"]) == {"point", "scratch_point"} and results["runs_finished"] == 2
  assert all(f["verdict"].startswith("pending") for f in results["findings"])
  assert "pretrained > scratch: point" in (out / "table.md").read_text()
  # Each run keeps its val confusion beside its summary (mIoU the same); confusion.md pools them.
  for row in ("point", "scratch_point"):
    run_dir = out / "runs" / row / "seed0"
    counts = evaluate.read_confusion(run_dir / "confusion.json")["counts"]
    assert metrics.mean_iou(counts)[0] == json.loads((run_dir / "summary.json").read_text())["miou"]
  assert "| `point` | 1 |" in (out / "confusion.md").read_text()


# RESULTS.md's "In one paragraph": every sentence cites the verdict it rests on as
# [<finding>: <verdict>], the verdict text exactly as results.json has it. A finding's name may
# hold a colon ("pretrained > scratch: image"); a verdict never does, so the last one splits.
CITATION = re.compile(r"\[([^\[\]]+): ([^\[\]:]+)\]")
PLACEHOLDER = "Not written yet."


def headline(results_md: str) -> str:
  """The section's first paragraph (what follows it explains the citations)."""
  return results_md.split("## In one paragraph\n", 1)[1].strip().split("\n\n", 1)[0]


def headline_problems(paragraph: str, findings: dict) -> list[str]:
  """What in the paragraph no verdict backs: a sentence citing none, a citation whose verdict
  is not the finding's, a sentence about several findings on a verdict that is not
  family-wise (docs/experiments.md: only those back a statement about several at once)."""
  problems = []
  for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z*])", " ".join(paragraph.split())):
    cited = CITATION.findall(sentence)
    if not cited:
      problems.append(f"cites no verdict: {sentence!r}")
    for name, verdict in cited:
      if name not in findings:
        problems.append(f"no finding {name!r}")
      elif findings[name]["verdict"] != verdict:
        problems.append(f"{name!r} is {findings[name]['verdict']!r}, cited as {verdict!r}")
    if len(cited) > 1 and not all(v.endswith("; family-wise") for _, v in cited):
      problems.append(f"several findings on a verdict that is not family-wise: {sentence!r}")
  return problems


def test_headline_check_catches_what_no_verdict_backs():
  found = {"A < B": {"verdict": "reproduced; family-wise"}, "C ~ D": {"verdict": "inconclusive"},
           "E > F": {"verdict": "reproduced; family-wise"},
           "from G: H > I": {"verdict": "contradicted (opposite direction)"}}
  good = ("Objectness helps, by 7.8 points [A < B: reproduced; family-wise]. Whether C equals "
          "D the seeds cannot say [C ~ D: inconclusive]. Both A and E hold at once "
          "[A < B: reproduced; family-wise] [E > F: reproduced; family-wise].")
  assert headline_problems(good, found) == []
  assert headline_problems("H is below I [from G: H > I: contradicted (opposite direction)].",
                           found) == []
  assert len(headline_problems("H is above I [from G: H > I: reproduced].", found)) == 1
  assert len(headline_problems(good + " Points are all you need.", found)) == 1
  assert len(headline_problems("C equals D [C ~ D: reproduced].", found)) == 1
  assert len(headline_problems("X holds [X > Y: reproduced].", found)) == 1
  assert len(headline_problems("A and C [A < B: reproduced; family-wise] [C ~ D: inconclusive].",
                               found)) == 1


def test_committed_headline_rests_on_the_committed_verdicts():
  """Until a family is decided the paragraph says so; once it is, every sentence cites a verdict
  of results.json as it is (a merge that changes a verdict under a sentence fails here)."""
  results = json.loads((REPO / "experiments_results" / "v2" / "results.json").read_text())
  findings = {f["finding"]: f for f in results["findings"]}
  paragraph = headline((REPO / "RESULTS.md").read_text())
  if paragraph.startswith(PLACEHOLDER):
    assert all(f["verdict"].startswith("pending") for f in findings.values()), (
        "a family is decided: write RESULTS.md's 'In one paragraph' from its verdicts")
  else:
    assert headline_problems(paragraph, findings) == []
