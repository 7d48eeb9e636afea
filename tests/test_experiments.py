"""experiments/: the cost model, the shared regime configs, the Table-1 runner (smoke + resume)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import supervision
from pointseg_jax import train
from pointseg_jax.experiments import annotation_cost
from pointseg_jax.experiments import report
from pointseg_jax.experiments import runs
from pointseg_jax.experiments import statistics
from pointseg_jax.experiments import table1
from helpers import REPO
import reference_rasterize


def test_cost_model_is_the_papers_arithmetic():
  """Paper §3: 18.5 s for the absent classes of an image with 1.5 present ones, 2.4 s per first
  click, 0.9 s per further instance (0.8 of them per class), 30 s per box, 79 s per mask."""
  absent = 20 - 1.5
  assert annotation_cost.seconds_per_image("point") == pytest.approx(absent + 1.5 * 2.4)
  assert annotation_cost.seconds_per_image("all_points") == pytest.approx(
      absent + 1.5 * (2.4 + 0.9 * 0.8), abs=0.03)   # 23.18, the paper rounds to 23.2
  assert annotation_cost.seconds_per_image("box") == pytest.approx(absent + 2.8 * 30)
  assert annotation_cost.seconds_per_image("full") == pytest.approx(absent + 2.8 * 79)
  assert annotation_cost.hours("image", 3600) == 20.0
  assert annotation_cost.hours("squiggle", 100) is None      # the paper gives no cost
  # 1Point's hours for 2000 images buy floor(2000 * 22.1 / 239.7) = 184 full masks.
  assert annotation_cost.images_for_budget("full", 22.1, 2000) == 184
  assert annotation_cost.images_for_budget("box", 22.1, 2000) == 431
  assert annotation_cost.images_for_budget("box", 500.0, 2000) == 2000    # never more than all
  assert set(annotation_cost.SECONDS_PER_IMAGE) == set(supervision.REGIMES)
  with pytest.raises(KeyError, match="annotation_cost.py"):
    annotation_cost.seconds_per_image("pointz")


@pytest.mark.parametrize("regime", sorted(supervision.REGIMES))
def test_regime_config_is_the_regimes_config_file(regime):
  """What the experiments train is configs/<regime>.py: swapping the row into the point config
  gives exactly the regime's own config (synthetic and tiny variants)."""
  for variant in ("synthetic", "tiny"):
    swapped = config_lib.with_regime(config_lib.get_config("point", variant), regime)
    assert swapped.to_dict() == config_lib.get_config(regime, variant).to_dict()
  r25 = config_lib.with_regime(config_lib.get_config("point"), "squiggle", squiggle_radius=25,
                              train_fraction=0.5)
  assert r25.to_dict() == config_lib.get_config("squiggle", "25").to_dict() | {
      "data": {**config_lib.get_config("squiggle", "25").data.to_dict(), "train_fraction": 0.5}}


def test_run_configs_and_fingerprints():
  schedule = runs.SCHEDULES["full"]
  by_name = table1.RUNS_BY_NAME
  config = runs.run_config(by_name["squiggle_r2"], schedule, 1, 2000)
  assert (config.regime, config.seed, config.data.squiggle_radius) == ("squiggle", 1, 2.0)
  assert config.train.num_steps == schedule.num_steps
  assert config.train.eval_every * 2 == schedule.num_steps      # the half-way eval
  assert config.optimizer.name == "adam"
  quick = runs.run_config(by_name["point"], runs.schedule_for(True, "synthetic", None), 0, 2000)
  assert quick.train.eval_every == quick.train.num_steps < config.train.num_steps
  budget = runs.run_config(by_name["full_budget22s"], schedule, 0, 2000)
  assert budget.data.train_fraction == 184 / 2000 and budget.regime == "full"
  assert runs.run_config(by_name["full"], schedule, 0, 2000).data.train_fraction == 1.0
  fps = {runs.fingerprint(runs.run_config(r, schedule, s, 2000))
         for r in table1.ALL_RUNS for s in range(3)}
  assert len(fps) == 3 * len(table1.ALL_RUNS)                  # every run and seed its own
  moved = runs.run_config(by_name["point"], schedule, 0, 2000, data_dir="/elsewhere")
  assert runs.fingerprint(moved) == runs.fingerprint(
      runs.run_config(by_name["point"], schedule, 0, 2000))     # where the data lives: no matter
  every_table_regime = {r.regime for r in table1.TABLE_RUNS}
  assert every_table_regime == set(supervision.REGIMES)
  with pytest.raises(errors.ConfigError, match="--num_steps=1"):
    runs.schedule_for(False, "synthetic", 1)


def _summary(run, seed, miou, half=None, regime=None):
  curve = {"10": miou} if half is None else {"5": half, "10": miou}
  return {"run": run, "regime": regime or run, "seed": seed, "miou": miou,
          "eval_miou_by_step": curve, "train_images": 100, "wall_time_s": 60.0,
          "train_steps_per_sec": 5.0}


def test_collect_and_findings_by_hand():
  """point 0.40/0.44 (mean 42, std 2.83), image 0.30/0.32 (31, 1.41): point - image = +11
  > 2 * sqrt((8 + 2) / 2) = 4.47 -> reproduced; all_points 0.41/0.45 (43, 2.83): +1 within 2 sigma
  of point -> '~' reproduced."""
  summaries = [_summary("point", 0, 0.40, half=0.30), _summary("point", 1, 0.44, half=0.34),
               _summary("image", 0, 0.30), _summary("image", 1, 0.32),
               _summary("all_points", 0, 0.41), _summary("all_points", 1, 0.45),
               _summary("full_budget22s", 0, 0.2, regime="full")]
  rows = statistics.collect(summaries, table1.ALL_RUNS)
  assert rows["point"]["miou_mean"] == pytest.approx(42.0)
  assert rows["point"]["miou_std"] == pytest.approx(2.8284, abs=1e-3)
  assert rows["point"]["miou_half_steps_mean"] == pytest.approx(32.0)
  assert rows["point"]["paper_miou"] == 42.7 and rows["point"]["annotation_hours"] == 0.61
  assert rows["full_budget22s"]["paper_miou"] is None          # not a paper row
  assert rows["full_budget22s"]["miou_std"] is None            # one seed: no spread
  found = {f["finding"]: f for f in statistics.findings(rows, table1.FINDINGS)}
  best = found["Img + Obj + 1Point best of the one-click regimes"]
  assert best["verdict"].startswith("pending")                 # image_obj, point_noobj missing
  allp = found["AllPoints ~ 1Point"]
  assert allp["difference"] == pytest.approx(1.0)
  assert allp["sigma"] == pytest.approx(2.8284, abs=1e-3)
  assert allp["verdict"] == "consistent (within 2 sigma)"
  assert allp["paired_differences"] == pytest.approx([1.0, 1.0])   # seed by seed: +1, +1
  assert (allp["paired_mean"], allp["paired_sd"]) == (pytest.approx(1.0), pytest.approx(0.0))
  rows["image_obj"] = dict(rows["image"], miou_mean=50.0)      # Img + Obj above point by 8
  rows["point_noobj"] = dict(rows["image"])
  best = {f["finding"]: f for f in statistics.findings(rows, table1.FINDINGS)}[
      "Img + Obj + 1Point best of the one-click regimes"]
  assert best["compared_with"] == "image_obj" and best["difference"] == pytest.approx(-8.0)
  assert best["verdict"] == "not reproduced: reversed by > 2 sigma"
  text = report.table_markdown(rows, statistics.findings(rows, table1.FINDINGS), "full", 2)
  assert ("| `point` | Img + Obj + 1Point | 2 | 42.0 ± 2.8 | 32.0 | 42.7 | 22.1 | 100 | 0.61 | 1.0 |"
          in text)


def test_wall_time_per_run_counts_only_runs_in_one_piece():
  """A resumed run's wall_time_s is its last process only (43 s for 302 of 8,000 steps): the
  table's wall min/run leaves it out, and says '–' when every seed was resumed."""
  whole, resumed = _summary("full", 0, 0.3), _summary("full", 1, 0.3)
  whole["wall_time_s"], resumed["wall_time_s"], resumed["resumed_from_step"] = 840.0, 43.0, 7698
  assert statistics.collect([whole, resumed])["full"]["wall_time_s_mean"] == 840.0
  rows = statistics.collect([resumed])
  assert rows["full"]["wall_time_s_mean"] is None
  assert report.rows_markdown(rows, "v2", 1)[-1].endswith("| – |")


@pytest.mark.e2e
def test_runner_smoke_and_resume(tiny_data_dir, tmp_path, monkeypatch):
  """The CLI on the tiny configs (one regime + one equal-budget run, 1 seed); then the same sweep
  again trains nothing and writes the same table, and a changed schedule is refused."""
  out = tmp_path / "t1"
  names = "point,full_budget22s"
  cmd = [sys.executable, "-m", "pointseg_jax.experiments.table1", f"--out={out}",
         "--variant=tiny", f"--runs={names}", f"--data_dir={tiny_data_dir}"]
  first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ),
                         timeout=600)
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  assert first.stdout.count("[table1] ") == 5          # 2 x (start, done) + the final line
  table = (out / "table.md").read_text()
  results = json.loads((out / "results.json").read_text())
  assert set(results["rows"]) == {"point", "full_budget22s"}
  budget = json.loads((out / "runs" / "full_budget22s" / "seed0" / "summary.json").read_text())
  assert budget["train_images"] == 4                   # floor(48 * 22.1 / 239.7) of 48 tiny images
  assert set(budget["eval_miou_by_step"]) == {"2", "4"}   # half-way and final evals
  assert (out / "fig6a.png").stat().st_size > 0
  assert (out / ".gitignore").read_text().splitlines()[1:] == ["work/", "!runs/"]

  # Second invocation (in-process: no second JAX start-up): nothing may train.
  def no_training(*args, **kwargs):
    raise AssertionError(f"a finished run was trained again: {args} {kwargs}")
  monkeypatch.setattr(train, "train_and_evaluate", no_training)
  schedule = runs.schedule_for(False, "tiny", None)
  selected = [table1.RUNS_BY_NAME[n] for n in names.split(",")]
  summaries = runs.sweep(out, schedule, 1, selected, data_dir=tiny_data_dir)
  table1.write_results(out, summaries, schedule, 1, 48, results["command"])
  assert (out / "table.md").read_text() == table
  assert json.loads((out / "results.json").read_text()) == results

  # A changed schedule never mixes with the kept runs: one clear error, nothing trained.
  longer = runs.schedule_for(False, "tiny", 6)
  with pytest.raises(errors.WorkdirError, match="from another config"):
    runs.sweep(out, longer, 1, selected, data_dir=tiny_data_dir)


def test_label_precision_counts_by_hand():
  """A 2x3 batch: a click right, a click on background, a background label on an object pixel,
  an object label on another object, a void pixel and an unlabelled one."""
  from pointseg_jax.experiments import label_precision as lp
  labels = np.array([[[3, 0, 5], [5, 255, 0]]])
  sparse = np.array([[[3, 3, 0], [7, 3, 255]]])
  weights = np.array([[[1.0, 0.5, 1.0], [1.0, 1.0, 0.0]]])
  c = dict(zip(lp.FIELDS, lp.counts(labels, sparse, weights).tolist()))
  assert c == {"valid": 5, "object": 3, "labelled": 4, "labelled_object": 3, "right": 1,
               "object_on_background": 1, "background_on_object": 1,
               "object_on_other_object": 1}
  s = lp.shares({"images": 1, **c})
  assert s["right"] == 25.0 and s["object labels right"] == pytest.approx(100 / 3)
  assert s["object share: masks"] == 60.0 and s["labelled of all pixels"] == 80.0


def test_label_precision_scores_the_pipelines_labels(tiny_data_dir, tmp_path, run_cli, capsys):
  """The command on the tiny set, through the real pipeline: full's labels are the masks (all
  right); box's match the numpy reference filling of the stored boxes; 1Point labels about one
  pixel per present class, nearly all right. A typo'd row is one clear error (table1_v2's --runs
  check)."""
  import tensorflow_datasets as tfds
  from pointseg_jax.experiments import label_precision as lp
  from pointseg_jax.experiments import table1_v2
  with pytest.raises(SystemExit):
    table1_v2.check_rows("rows", ["point", "pointz"])
  assert "error: --rows: unknown row(s) ['pointz']; known: image," in capsys.readouterr().err
  proc = run_cli("pointseg_jax.experiments.label_precision", f"--out={tmp_path}", "--variant=tiny",
                 "--rows=full,box,point", f"--data_dir={tiny_data_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.loads((tmp_path / "label_precision.json").read_text())["rows"]
  assert "| `box` |" in (tmp_path / "label_precision.md").read_text()

  full, box, point = rows["full"], rows["box"], rows["point"]
  assert full["right"] == full["labelled"] == full["valid"] > 0
  assert full["labelled_object"] == full["object"] > 0
  expected = np.zeros(4, np.int64)   # box-labelled pixels, of them right, valid, mask object
  for ex in tfds.as_numpy(tfds.load("synthetic_points/tiny", split="train",
                                    data_dir=tiny_data_dir)):
    mask = ex["mask"][..., 0].astype(np.int64)
    filled, valid = reference_rasterize.rasterize_boxes(ex["boxes"], mask.shape), mask != 255
    on = (filled > 0) & valid
    expected += [on.sum(), (on & (filled == mask)).sum(), valid.sum(), (valid & (mask > 0)).sum()]
  right_objects = box["labelled_object"] - box["object_on_background"] - box[
      "object_on_other_object"]
  assert [box["labelled_object"], right_objects, box["valid"], box["object"]] == expected.tolist()
  num_train = tfds.builder("synthetic_points/tiny", data_dir=tiny_data_dir).info.splits[
      "train"].num_examples
  assert box["images"] == full["images"] == point["images"] == num_train
  assert point["labelled_object"] == point["labelled"]
  assert 1 <= point["labelled"] / point["images"] <= 4
  assert point["right"] >= 0.8 * point["labelled"]
  assert lp.shares(full)["right"] == 100.0


def test_the_committed_sweep_summaries_keep_their_fingerprints():
  """A new config field at its old behaviour (e.g. model.compute_dtype float32) must not turn the
  committed Table 1 summaries into 'another config' (table1 --table_only would refuse them)."""
  schedule = runs.schedule_for(False, "synthetic", None)
  checked = 0
  for path in sorted((REPO / "experiments_results" / "runs").glob("*/seed*/summary.json")):
    kept = json.loads(path.read_text())
    run = table1.RUNS_BY_NAME.get(kept["run"])
    if run is None:
      continue
    config = runs.run_config(run, schedule, kept["seed"], 2000)   # the default set's 2,000 images
    assert runs.fingerprint(config) == kept["fingerprint"], path
    checked += 1
  assert checked >= 60, checked


def test_chosen_arms_keeps_the_commands_order_and_refuses_a_typo(capsys):
  names = ["point", "full", "full_lr0.01"]
  assert runs.chosen_arms(["full_lr0.01", "point"], names) == ["point", "full_lr0.01"]
  for bad in (["ful"], []):
    with pytest.raises(SystemExit) as e:
      runs.chosen_arms(bad, names)
    assert e.value.code == 2
    assert "from point, full, full_lr0.01" in capsys.readouterr().err


def test_result_files_write_and_commit_only_what_the_command_keeps(tmp_path, monkeypatch):
  def git(*args):
    return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                          text=True).stdout
  git("init", "-q")
  git("config", "user.email", "t@t"), git("config", "user.name", "t")
  monkeypatch.chdir(tmp_path)
  out = tmp_path / "res"
  (out / "runs" / "a").mkdir(parents=True)
  (out / "runs" / "a" / "summary.json").write_text("{}")
  (out / "chosen.json").write_text("{}")
  (out / "work").mkdir()
  (out / "work" / "big.bin").write_text("checkpoint")
  quiet = runs.ResultFiles(out, "gap", what="full gap", commit=False, extra=("chosen.json",))
  assert quiet.write({"rows": [1]}, "# table\n") == {"rows": [1]}
  assert json.loads((out / "gap.json").read_text()) == {"rows": [1]}
  assert quiet.markdown.read_text() == "# table\n"
  quiet.commit_if_asked("arm a")
  assert git("log", "--oneline", "--all") == ""      # not asked: nothing committed
  runs.ResultFiles(out, "gap", what="full gap", commit=True,
                   extra=("chosen.json",)).commit_if_asked("arm a")
  assert git("log", "--format=%s") == "full gap: arm a\n"
  assert sorted(git("ls-files").split()) == ["res/chosen.json", "res/gap.json", "res/gap.md",
                                             "res/runs/a/summary.json"]
