"""experiments/schedule_search.py: every run trains on train[:90%] and is scored on the hold-out
(never val) at 20..100 % of its steps; the convergence criterion, the selection and tie rules and
the step doubling by hand-made curves; resuming trains nothing and chooses the same."""
import json

import pytest

from pointseg_jax import config_lib
from pointseg_jax import workdir as workdir_lib
from pointseg_jax.experiments import runs
from pointseg_jax.experiments import schedule_search as ss
from helpers import REPO

C = ss.Candidate
GRID = ss.grid_candidates([1e-3, 3e-3], [2000, 4000])


def test_grid_order_and_the_run_config():
  assert GRID == [C(2000, 1e-3), C(2000, 3e-3), C(4000, 1e-3), C(4000, 3e-3)]
  config = runs.run_config(ss.as_run(C(4000, 3e-3), 2000), ss.schedule_of(C(4000, 3e-3),
                                                                           "synthetic"), 0, 2000)
  assert (config.regime, config.eval.split, config.data.train_fraction) == (
      "point", "train[1800:]", 0.9)
  assert (config.train.num_steps, config.train.eval_every) == (4000, 800)   # 20 % .. 100 %
  assert config.data.image_size == (96, 96)
  o = config.optimizer
  assert (o.name, o.learning_rate, o.schedule, o.decay_steps, o.warmup_steps,
          o.clip_grad_norm) == ("sgd", 3e-3, "cosine", 4000, 200, 20.0)
  # The configs' own optimiser as a reference: constant, so its identity has no schedule fields.
  ref = runs.run_config(ss.as_run(ss.REFERENCES[0], 2000),
                        ss.schedule_of(ss.REFERENCES[0], "synthetic"), 0, 2000)
  identity = workdir_lib.identity(ref)
  assert "optimizer.schedule" not in identity and identity["optimizer.learning_rate"] == 1e-3
  pretrained = runs.run_config(ss.as_run(C(2000, 1e-3), 2000),
                               ss.schedule_of(C(2000, 1e-3), "pretrained"), 0, 2000)
  assert pretrained.model.init_from.endswith("vgg16_w8_synthetic_classes.npz")


def curve(steps, final, gain):
  """A hold-out curve rising to `final`, `gain` of it in the last 20 % of the steps."""
  at80 = final - gain
  return {str(steps * k // 5): at80 * k / 4 for k in range(1, 5)} | {str(steps): final}


def fake_training(monkeypatch, scores, trained):
  """runs.train_one replaced: the summary a real run writes, with the hand-made curve of its
  candidate (scores: name -> (final mIoU or None, last-20 % gain))."""
  def train_one(run, schedule, seed, out, num_train, data_dir=None):
    config = runs.run_config(run, schedule, seed, num_train, data_dir)
    assert config.eval.split == "train[1800:]" and config.data.train_fraction == 0.9
    trained.append(run.name)
    final, gain = scores[run.name]
    summary = {"run": run.name, "seed": seed, "fingerprint": runs.fingerprint(config),
               "miou": final, "wall_time_s": 60.0, "loadavg_1min_start": 1.0,
               "loadavg_1min_end": 2.0,
               "eval_miou_by_step": {} if final is None else curve(schedule.num_steps, final, gain)}
    path = runs.run_dirs(out, run, seed)[0]
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return summary
  monkeypatch.setattr(runs, "train_one", train_one)


REFS = {"sgd_constant_lr0.001_2000": (0.30, 0.03), "adam_constant_lr0.0003_1600": (0.33, 0.02)}


def test_converged_best_fewer_steps_on_ties_and_resume(tmp_path, monkeypatch):
  # 3e-3 at 2000 diverges; 1e-3 at 4000 is best (0.360) but 1e-3 at 2000 is within a point
  # (0.352) and converged: fewer steps win. 3e-3 at 4000 is higher still but not converged.
  scores = {"sgd_cosine_lr0.001_2000": (0.352, 0.004), "sgd_cosine_lr0.003_2000": (None, 0),
            "sgd_cosine_lr0.001_4000": (0.360, 0.002), "sgd_cosine_lr0.003_4000": (0.40, 0.012),
            **REFS}
  trained = []
  fake_training(monkeypatch, scores, trained)
  rows, chosen, done = ss.search(tmp_path, "synthetic", GRID, 2000)
  assert chosen == C(2000, 1e-3) and done
  assert trained == [c.name for c in GRID] + list(REFS)            # no doubling: 2000 won
  assert [r["converged"] for r in rows] == [True, False, True, False, False, False]
  assert rows[0]["last_fifth_gain"] == pytest.approx(0.004)

  again = []
  fake_training(monkeypatch, scores, again)
  assert ss.search(tmp_path, "synthetic", GRID, 2000) == (rows, chosen, True) and again == []
  result, markdown = ss.report(rows, chosen, "synthetic", 2000, "cmd", done)
  assert result["chosen"] == {"num_steps": 2000, "learning_rate": 1e-3, "optimizer": "sgd",
                              "schedule": "cosine"}
  assert ("| grid | sgd | cosine | 0.001 | 2000 | 8.7 | 17.4 | 26.1 | 34.8 | 35.2 | +0.4 | yes "
          "| 1.0 | 1.0–2.0 |") in markdown
  assert "| grid | sgd | cosine | 0.003 | 2000 | diverged" in markdown
  assert "**Chosen: SGD cosine, lr 0.001, 2000 steps** (warmup 200" in markdown


def test_doubling_when_more_steps_still_pay(tmp_path, monkeypatch):
  # 4000 beats 2000 by 2 points (both converged): 8000 is trained; it gains only 0.5 more, so
  # the tie rule picks 4000. References are never chosen, however high.
  scores = {"sgd_cosine_lr0.001_2000": (0.33, 0.002), "sgd_cosine_lr0.003_2000": (0.34, 0.004),
            "sgd_cosine_lr0.001_4000": (0.345, 0.003), "sgd_cosine_lr0.003_4000": (0.36, 0.001),
            "sgd_cosine_lr0.003_8000": (0.365, 0.001),
            "sgd_constant_lr0.001_2000": (0.50, 0.0), "adam_constant_lr0.0003_1600": (0.1, 0.0)}
  trained = []
  fake_training(monkeypatch, scores, trained)
  rows, chosen, done = ss.search(tmp_path, "synthetic", GRID, 2000)
  assert trained[4] == "sgd_cosine_lr0.003_8000" and rows[4]["stage"] == "longer"
  assert chosen == C(4000, 3e-3) and done
  assert "more steps may gain more" not in ss.report(rows, chosen, "synthetic", 2000, "c", done)[1]


def test_nothing_converged_doubles_the_best_then_says_so(tmp_path, monkeypatch):
  scores = {c.name: (0.30 + 0.01 * i, 0.02) for i, c in enumerate(GRID)}
  scores["sgd_cosine_lr0.003_8000"] = (0.40, 0.015)
  trained = []
  fake_training(monkeypatch, scores, trained)
  rows, chosen, done = ss.search(tmp_path, "synthetic", GRID, 2000, references=())
  assert trained[-1] == "sgd_cosine_lr0.003_8000" and chosen is None and done
  assert "no candidate converged" in ss.report(rows, chosen, "synthetic", 2000, "c", done)[1]


def test_table_only_stops_at_the_first_missing_run(tmp_path, monkeypatch):
  trained = []
  fake_training(monkeypatch, {}, trained)
  rows, chosen, done = ss.search(tmp_path, "synthetic", GRID, 2000, train_missing=False)
  assert (rows, chosen, done, trained) == ([], None, False, [])
  assert "pending" in ss.report(rows, chosen, "synthetic", 2000, "cmd", done)[1]


@pytest.mark.slow
def test_a_real_tiny_search_scores_the_holdout_at_each_fifth(tiny_data_dir, tmp_path):
  num_train = runs.num_train_examples("tiny", tiny_data_dir)
  rows, chosen, done = ss.search(tmp_path, "tiny", [C(5, 1e-3)], num_train,
                                 data_dir=tiny_data_dir, references=())
  assert done and len(rows) == 1
  assert sorted(rows[0]["eval_miou_by_step"], key=int) == ["1", "2", "3", "4", "5"]
  assert rows[0]["last_fifth_gain"] == pytest.approx(rows[0]["miou"]
                                                     - rows[0]["eval_miou_by_step"]["4"])
  assert chosen == (C(5, 1e-3) if rows[0]["converged"] else None)
  saved = json.loads((runs.run_dirs(tmp_path, ss.as_run(C(5, 1e-3), num_train), 0)[1]
                      / "config.json").read_text())
  assert saved["eval"]["split"] == runs.holdout(num_train)[1] != "val"
  assert (saved["optimizer"]["schedule"], saved["optimizer"]["decay_steps"]) == ("cosine", 5)


@pytest.mark.parametrize("folder", ["schedule", "schedule_pretrained"])
def test_the_committed_search_summaries_keep_their_fingerprints(folder):
  """A config field added later at its old behaviour must not turn the committed hold-out runs
  into 'another config' (the search would refuse to resume or rebuild its table)."""
  out = REPO / "experiments_results" / folder
  result = json.loads((out / "search.json").read_text())
  assert result["rows"], "no committed run"
  for row in result["rows"]:
    candidate = C(**row["candidate"])
    run = ss.as_run(candidate, 2000)
    kept = json.loads((runs.run_dirs(out, run, 0)[0] / "summary.json").read_text())
    config = runs.run_config(run, ss.schedule_of(candidate, result["variant"]), 0, 2000)
    assert runs.fingerprint(config) == kept["fingerprint"], row["run"]
    assert kept["miou"] == row["miou"]
  # The code's named setting is what the committed runs select: CHOSEN once the search is done,
  # its PROVISIONAL leader until then.
  rows = [dict(r, candidate=C(**r["candidate"])) for r in result["rows"]]
  if folder == "schedule":
    assert result["done"] == (ss.CHOSEN is not None)
    assert ss.select(rows) == (ss.CHOSEN or ss.PROVISIONAL)
  else:   # the pretrained search: its choice, and the demo's (the same rule within DEMO_STEPS)
    assert result["variant"] == "pretrained"
    assert result["done"] == (ss.CHOSEN_PRETRAINED is not None)
    if result["done"]:
      assert ss.select(rows) == ss.CHOSEN_PRETRAINED
    assert ss.select(rows, max_steps=ss.DEMO_STEPS) == ss.DEMO_PRETRAINED


def test_the_choice_is_written_as_table1_v2_reads_it(tmp_path):
  from pointseg_jax.experiments import table1_v2   # pylint: disable=g-import-not-at-top
  rows = [{"stage": "grid", "candidate": C(4000, 1e-3), "run": "x", "num_steps": 4000,
           "miou": 0.35, "eval_miou_by_step": curve(4000, 0.35, 0.006), "wall_time_s": 60.0,
           "loadavg": (1.0, 1.0), "last_fifth_gain": 0.006, "converged": True}]
  ss.write(tmp_path, rows, C(4000, 1e-3), "synthetic", 2000, "python -m ... schedule_search")
  chosen = json.loads((tmp_path / ss.CHOSEN_FILE).read_text())
  assert set(chosen) == set(table1_v2.SCHEDULE_KEYS)
  assert chosen["holdout_miou_gain_last_20pct"] == 0.6 and chosen["num_steps"] == 4000
  (tmp_path / table1_v2.SCHEDULE_FILE).write_text(json.dumps(chosen))
  schedule = table1_v2.load_schedule(tmp_path / table1_v2.SCHEDULE_FILE)
  config = schedule.apply(runs.base_config(table1_v2.VARIANT))
  assert (config.train.num_steps, config.optimizer.schedule, config.optimizer.decay_steps,
          config.optimizer.learning_rate, config.optimizer.warmup_steps) == (
              4000, "cosine", 4000, 1e-3, 200)


def test_every_reference_runs_from_the_pretrained_init_too():
  """The pretrained variant fine-tunes conv1_1 as V = r W (SGD only): the Adam reference keeps
  Table 1 v1's plain conv1_1 instead of being refused."""
  from pointseg_jax import state as state_lib   # pylint: disable=g-import-not-at-top
  for candidate in ss.REFERENCES + (C(4000, 1e-3),):
    config = runs.run_config(ss.as_run(candidate, 2000), ss.schedule_of(candidate, "pretrained"),
                             0, 2000)
    spec = state_lib.OptimizerSpec.from_config(config.optimizer)
    assert spec.input_rms == (1.0 if candidate.optimizer == "adam" else config_lib.PRETRAINED_INPUT_RMS)
