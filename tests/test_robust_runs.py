"""Runs that protect the user's work: Ctrl-C saves and resumes bit-exactly, TensorBoard shows each
step once after resumes, eval / predict read the run's own config.json, old prediction panels go,
progress bars that log lines do not cut, paths with `~` and remote URLs.

One module fixture trains the tiny config four times (an uninterrupted reference; a run stopped by
Ctrl-C at step 3; its resume to step 6; a crash simulated by deleting the last checkpoint, and the
resume from step 4). The bad-input cases (one line each) are tests/test_bad_inputs.py; SIGTERM
through a real subprocess is tests/test_train.py.
"""
import io
import json
import logging as std_logging
import os
import shutil
import signal

from absl import logging
from flax import traverse_util
import jax
import numpy as np
import pytest
import tensorflow as tf

from pointseg_jax import config_lib
from pointseg_jax import errors
from pointseg_jax import evaluate
from pointseg_jax import metrics
from pointseg_jax import interrupt
from pointseg_jax import metric_writer
from pointseg_jax import predict
from pointseg_jax import progress as progress_lib
from pointseg_jax import state as state_lib
from pointseg_jax import train
from pointseg_jax import workdir as workdir_lib
from helpers import SIGINT
from helpers import matches_stop_line
from helpers import tiny_config

# Guarded fields differ from configs/point.py:tiny (seed, lr), so eval without --config must read
# config.json; the lr is a traced input, so the compiled step is shared with test_train.py.
RUN = dict(seed=1, optimizer__learning_rate=2e-3, train__num_steps=6, train__checkpoint_every=4,
           train__eval_every=100)


def _ctrl_c_at(step):
  """check_finite wrapper that sends this process SIGINT when the metrics of `step` arrive (the
  real handler runs: the signal lands mid-loop, at a step chosen exactly)."""
  real = train.check_finite

  def check(s, *args):
    real(s, *args)
    if s == step:
      os.kill(os.getpid(), signal.SIGINT)
  return check


@pytest.fixture(scope="module")
def runs(tiny_data_dir, tmp_path_factory):
  config = tiny_config(tiny_data_dir, **RUN)
  # What SIGINT does outside a run (Python's KeyboardInterrupt, or ignored in a background job or
  # a test worker): a run must leave it as it found it.
  sigint_before = signal.getsignal(signal.SIGINT)
  reference = train.train_and_evaluate(config, tmp_path_factory.mktemp("reference"))
  workdir = tmp_path_factory.mktemp("interrupted") / "run"
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(train, "check_finite", _ctrl_c_at(3))
    with pytest.raises(errors.Interrupted) as stopped:
      train.train_and_evaluate(config, workdir)
  after_ctrl_c = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())
  train.train_and_evaluate(config, workdir)          # resumes at 3, ends at 6
  shutil.rmtree(workdir / "checkpoints" / "6")       # a crash after logging 5, 6 and eval@6
  final = train.train_and_evaluate(config, workdir)  # resumes at 4: repeats 5, 6
  return dict(config=config, reference=reference, stopped=stopped.value, workdir=workdir,
              after_ctrl_c=after_ctrl_c, final=final, sigint_before=sigint_before)


def test_ctrl_c_saves_the_current_step_and_the_resume_is_bit_exact(runs):
  stopped = runs["stopped"]
  assert stopped.signum == signal.SIGINT and stopped.exit_status == 130
  assert matches_stop_line(SIGINT, str(stopped), runs["workdir"].parent) == 3
  assert 3 in runs["after_ctrl_c"]
  final, reference = runs["final"], runs["reference"]
  assert final["resumed_from_step"] == 4 and final["step"] == 6
  assert final["params_sha256"] == reference["params_sha256"]
  assert final["eval/miou"] == reference["eval/miou"]
  assert final["config_sha256"] == reference["config_sha256"]
  assert signal.getsignal(signal.SIGINT) is runs["sigint_before"]   # handlers restored


def test_tensorboard_and_metrics_have_each_step_once_after_resumes(runs):
  files = sorted(runs["workdir"].glob(metric_writer.EVENTS_GLOB))
  steps = {}   # tag -> steps in the order TensorBoard reads them (files by name, then in file)
  for path in files:
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        steps.setdefault(value.tag, []).append(event.step)
  assert steps["train/loss"] == [1, 2, 3, 4, 5, 6]
  assert steps["eval/miou"] == [6]
  for tag, seen in steps.items():
    assert seen == sorted(set(seen)), (tag, seen)   # strictly increasing: no step twice
  rows = [json.loads(line) for line in (runs["workdir"] / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
  assert not (runs["workdir"] / ".events_rewrite").exists()


def test_truncate_events_is_idempotent_and_keeps_the_last_copy(tmp_path):
  """A rewrite cut short leaves two copies of steps <= the checkpoint; the next one keeps one."""
  for value in (1.0, 2.0):     # two event files, both with steps 1..3
    writer = metric_writer.tb_summary.Writer(str(tmp_path))
    for step in (1, 2, 3):
      writer.add_scalar("x", value, step)
    writer.close()
  metric_writer.truncate_events(tmp_path, 2)
  (path,) = tmp_path.glob(metric_writer.EVENTS_GLOB)
  events = [e for e in metric_writer.read_events(path) if e.HasField("summary")]
  assert [(e.step, e.summary.value[0].tensor.float_val[0]) for e in events] == [(1, 2.0), (2, 2.0)]
  metric_writer.truncate_events(tmp_path, 2)          # nothing to drop: left as it is
  assert list(tmp_path.glob(metric_writer.EVENTS_GLOB)) == [path]


def test_eval_without_config_reads_the_runs_config_json(runs, capsys):
  workdir = runs["workdir"]
  result = evaluate.evaluate_checkpoint(None, workdir)
  assert result["step"] == 6 and result["regime"] == "point" and result["split"] == "val"
  assert result["eval/miou"] == runs["final"]["eval/miou"]
  assert result["config_sha256"] == runs["final"]["config_sha256"]
  assert json.loads((workdir / "eval.json").read_text()) == result
  counts = evaluate.read_confusion(workdir / "confusion.json")["counts"]
  assert metrics.mean_iou(counts)[0] == result["eval/miou"]
  assert metrics.pixel_accuracy(counts) == result["eval/pixel_accuracy"]
  # Fields that do not change the model may differ: another batch size, a progress bar.
  config = workdir_lib.load_config(workdir)
  config.eval.batch_size, config.train.progress_bar = 16, True
  capsys.readouterr()
  assert evaluate.evaluate_checkpoint(config, workdir)["eval/miou"] == result["eval/miou"]
  assert "eval val" in capsys.readouterr().err      # eval has a progress bar


def test_predict_replaces_the_panels_of_an_older_checkpoint(runs):
  workdir = runs["workdir"]
  out = workdir / "predictions"
  out.mkdir(exist_ok=True)
  (out / "000_id99.png").write_bytes(b"an older checkpoint's panel")
  (out / "notes.txt").write_text("the user's own file stays")
  paths = predict.write_predictions(None, workdir, num_images=2)
  assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in paths)
  assert len(paths) == 2 and (out / "notes.txt").exists()
  info = json.loads((out / "predictions.json").read_text())
  assert info["step"] == 6 and info["split"] == "val" and info["regime"] == "point"
  assert len(predict.write_predictions(None, workdir, num_images=1)) == 1
  assert len(list(out.glob("*.png"))) == 1


# ----------------------------------------------------------------------------------------------
# Pieces, without training.

def test_stop_signals_turn_sigterm_and_sigint_into_a_request():
  before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
  with interrupt.StopSignals() as stop:
    assert not stop.requested(1) and not stop.stopping()
    os.kill(os.getpid(), signal.SIGTERM)      # would end the test process without the handler
    assert stop.requested(2) and stop.signum == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):    # a second Ctrl-C: stop now, without saving
      os.kill(os.getpid(), signal.SIGINT)
  assert {s: signal.getsignal(s) for s in before} == before


def test_training_bar_starts_its_clock_after_the_first_step():
  buf = io.StringIO()
  with progress_lib.Progress(10, start_after_first=True, file=buf) as bar:
    assert bar._bar is None and buf.getvalue() == ""   # nothing shown while step 1 compiles
    bar.advance_to(4)                                  # resumed at 3; step 4 done (compiled)
    assert bar._bar.n == bar._bar.initial == 4         # the rate counts steps after this one
    bar.advance_to(6)
    assert bar._bar.n == 6
  assert "6/10" in buf.getvalue()


def test_log_lines_print_above_the_bar(monkeypatch):
  monkeypatch.setattr(progress_lib, "_logs_to_terminal", lambda: True)
  buf = io.StringIO()
  handler = logging.get_absl_handler()
  std_logging.root.addHandler(handler)    # what absl.app.run sets up; pytest has its own
  try:
    with progress_lib.Progress(3, file=buf) as bar:
      bar.advance_to(1)
      logging.warning("a log line while the bar shows")
  finally:
    std_logging.root.removeHandler(handler)
  lines = buf.getvalue().replace("\r", "\n").splitlines()
  assert any(line.endswith("a log line while the bar shows") and "it/s" not in line
             and "step/s" not in line for line in lines)
  assert not [f for f in handler.filters if isinstance(f, progress_lib._LogAboveBar)]


def test_workdir_paths_expand_home_and_variables(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.setenv("RUNS", str(tmp_path / "runs"))
  assert workdir_lib.resolve("~/runs/x") == tmp_path / "runs" / "x"
  assert workdir_lib.resolve("$RUNS/y") == tmp_path / "runs" / "y"


def test_init_from_reads_remote_urls_through_tensorflow_file_systems(tmp_path):
  """gs://... on Cloud TPU; TensorFlow's in-memory ram:// file system stands in for it here."""
  url = "ram://robust_runs/fcn.npz"
  tf.io.gfile.makedirs("ram://robust_runs")
  model = state_lib.make_model(tiny_config(str(tmp_path)).model)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3),
                                                                         np.float32),
                                             train=False)["params"])
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
  flat = {"/".join(k): v for k, v in traverse_util.flatten_dict(params).items()}
  data = io.BytesIO()
  np.savez(data, **flat)
  with tf.io.gfile.GFile(url, "wb") as f:
    f.write(data.getvalue())
  assert state_lib.check_init_from(url) == url
  loaded = state_lib.load_init_params(url, params)
  assert state_lib.params_sha256(loaded) == state_lib.params_sha256(params)
  with pytest.raises(errors.MissingInputError, match="ram://robust_runs/absent.npz"):
    state_lib.check_init_from("ram://robust_runs/absent.npz")


def test_an_inactive_loss_term_does_not_change_what_a_run_is():
  """A config written before the pairwise term existed (no loss.pairwise block, no weight) is the
  same run as today's, whose pairwise weight is 0; with the term on, it is another run."""
  config = config_lib.get_config("point", "tiny")
  before = json.loads(config.to_json_best_effort())
  del before["loss"]["pairwise"], before["loss"]["weights"]["pairwise"]
  assert workdir_lib.identity(before) == workdir_lib.identity(config)
  assert workdir_lib.config_sha256(before) == workdir_lib.config_sha256(config)
  assert workdir_lib.differences(before, config) == []
  config.loss.weights.pairwise = 0.1
  assert "loss.pairwise.radius" in workdir_lib.identity(config)
  assert workdir_lib.differences(before, config)[0].startswith("loss.pairwise.radius: '<absent>'")
