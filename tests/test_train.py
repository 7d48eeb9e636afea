"""train.py: Caffe SGD semantics, accumulation, and the tiny end-to-end run (train -> checkpoint ->
resume -> eval -> predict), NaN stop, and the clear errors for bad configs."""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest
from PIL import Image

from pointseg_jax import checkpointing
from pointseg_jax import evaluate
from pointseg_jax import metrics
from pointseg_jax import parallel
from pointseg_jax import predict
from pointseg_jax import state as state_lib
from pointseg_jax import train
from helpers import REPO, load_config, tiny_config  # noqa: F401

CONFIG_DIR = REPO / "configs"


# ----------------------------------------------------------------------------------------------
# Optimiser: the authors' Caffe SGD, written out by hand.

def test_optimizer_is_caffe_sgd_with_2x_bias_lr_and_decay_on_weights_only():
  lr, m, wd = 0.1, 0.9, 0.01
  spec = state_lib.OptimizerSpec(momentum=m, weight_decay=wd, bias_lr_mult=2.0, accum_steps=1)
  tx = state_lib.make_optimizer(lr, spec)
  params = {"fc": {"kernel": np.array([1.0, -2.0], np.float32),
                   "bias": np.array([0.5], np.float32)}}
  g1 = {"fc": {"kernel": np.array([0.3, 0.1], np.float32), "bias": np.array([0.2], np.float32)}}
  g2 = {"fc": {"kernel": np.array([-0.1, 0.4], np.float32), "bias": np.array([0.1], np.float32)}}
  state = tx.init(params)
  updates, state = tx.update(g1, state, params)
  p1 = optax.apply_updates(params, updates)
  # Caffe: v = m v + lr (g + wd w); w -= v. Biases: lr x 2, no decay.
  # kernel: v1 = 0.1 * ([0.3, 0.1] + 0.01 * [1, -2]) = [0.031, 0.008]; w1 = [0.969, -2.008]
  # bias:   v1 = 0.2 * 0.2 = 0.04;                                     b1 = 0.46
  np.testing.assert_allclose(p1["fc"]["kernel"], [0.969, -2.008], rtol=1e-6)
  np.testing.assert_allclose(p1["fc"]["bias"], [0.46], rtol=1e-6)
  updates, state = tx.update(g2, state, p1)
  p2 = optax.apply_updates(p1, updates)
  # kernel: v2 = 0.9 * [0.031, 0.008] + 0.1 * ([-0.1, 0.4] + 0.01 * [0.969, -2.008])
  #            = [0.0279 - 0.009031, 0.0072 + 0.037992] = [0.018869, 0.045192]
  # bias:   v2 = 0.9 * 0.04 + 0.2 * 0.1 = 0.056
  np.testing.assert_allclose(p2["fc"]["kernel"], [0.969 - 0.018869, -2.008 - 0.045192],
                             rtol=1e-6)
  np.testing.assert_allclose(p2["fc"]["bias"], [0.404], rtol=1e-6)


def test_accumulation_equals_one_step_on_the_mean_gradient():
  spec = state_lib.OptimizerSpec(accum_steps=2)
  params = {"kernel": np.array([1.0, 2.0], np.float32), "bias": np.array([0.0], np.float32)}
  g1 = {"kernel": np.array([0.2, -0.4], np.float32), "bias": np.array([1.0], np.float32)}
  g2 = {"kernel": np.array([0.6, 0.0], np.float32), "bias": np.array([3.0], np.float32)}
  tx = state_lib.make_optimizer(0.5, spec)
  state = tx.init(params)
  u1, state = tx.update(g1, state, params)
  np.testing.assert_array_equal(u1["kernel"], [0.0, 0.0])   # first micro-step: no update yet
  u2, _ = tx.update(g2, state, params)
  one = state_lib.make_optimizer(0.5, spec._replace(accum_steps=1))
  want, _ = one.update(jax.tree.map(lambda a, b: (a + b) / 2, g1, g2), one.init(params), params)
  jax.tree.map(np.testing.assert_allclose, u2, want)


def test_input_rms_trains_conv1_1_as_pretraining_did():
  """optimizer.input_rms = r equals SGD on V = r W (pretrain.trained_params / stored_params), the
  clip binding, momentum and weight decay included; every other layer trains as with r = 1."""
  from pointseg_jax import pretrain
  r, lr = 50.0, 0.1
  spec = state_lib.OptimizerSpec(clip_grad_norm=0.5)
  rng = np.random.default_rng(0)
  params = {name: {"kernel": rng.normal(size=(3, 4)).astype(np.float32),
                   "bias": rng.normal(size=4).astype(np.float32)} for name in ("conv1_1", "fc7")}
  x = rng.normal(size=(5, 3)).astype(np.float32) * r
  def loss(p):   # conv1_1 reads the unnormalised input (RMS ~ r), fc7 a unit-scale one
    h = jax.numpy.tanh(x @ p["conv1_1"]["kernel"] + p["conv1_1"]["bias"])
    return jax.numpy.sum((h @ p["fc7"]["kernel"].T + p["fc7"]["bias"][:3]) ** 2)

  tx = state_lib.make_optimizer(lr, spec._replace(input_rms=r))
  w, state = params, tx.init(params)
  plain = state_lib.make_optimizer(lr, spec)
  v, vstate = pretrain.trained_params(params, r), plain.init(params)
  for _ in range(3):
    updates, state = tx.update(jax.grad(loss)(w), state, w)
    w = optax.apply_updates(w, updates)
    vgrad = jax.grad(lambda q: loss(pretrain.stored_params(q, r)))(v)
    assert optax.global_norm(vgrad) > spec.clip_grad_norm   # the clip binds in both
    updates, vstate = plain.update(vgrad, vstate, v)
    v = optax.apply_updates(v, updates)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), w,
               pretrain.stored_params(v, r))
  g = jax.grad(loss)(params)   # one step without the clip: conv1_1 by 1 / r^2, fc7 as plain SGD
  step = lambda rms: state_lib.make_optimizer(lr, state_lib.OptimizerSpec(weight_decay=0.0,
                                                                          input_rms=rms))
  (u, _), (u1, _) = [step(rms).update(g, step(rms).init(params), params) for rms in (r, 1.0)]
  np.testing.assert_allclose(u["conv1_1"]["kernel"], u1["conv1_1"]["kernel"] / r**2, rtol=1e-5)
  np.testing.assert_array_equal(u["fc7"]["kernel"], u1["fc7"]["kernel"])


def test_input_rms_is_refused_with_adam():
  config = load_config("point", "tiny", optimizer__name="adam", optimizer__input_rms=55.0)
  with pytest.raises(Exception, match=r"config.optimizer.input_rms = 55 needs name='sgd'"):
    state_lib.OptimizerSpec.from_config(config.optimizer)


def test_params_sha256_is_over_the_leaf_bytes_in_path_order():
  tree = {"b": np.array([1.5, 2.0], np.float32), "a": {"kernel": np.array([[3]], np.int32)}}
  want = hashlib.sha256(np.array([[3]], np.int32).tobytes()
                        + np.array([1.5, 2.0], np.float32).tobytes()).hexdigest()
  assert state_lib.params_sha256(tree) == want


def test_missing_init_weights_say_how_to_convert(tmp_path):
  config = load_config("point", "tiny", model__init_from=str(tmp_path / "vgg.npz"))
  with pytest.raises(FileNotFoundError, match=r"python -m pointseg_jax.models.weights convert"):
    state_lib.create_train_state(state_lib.make_model(config.model),
                                 state_lib.OptimizerSpec.from_config(config.optimizer), 0,
                                 parallel.make_mesh(jax.devices()[:1]),
                                 init_from=config.model.init_from)


# ----------------------------------------------------------------------------------------------
# Bad configs fail before any compilation, naming the field.

def test_batch_not_divisible_by_devices(tmp_path, tiny_data_dir):
  config = tiny_config(tiny_data_dir, train__batch_size=12)
  with pytest.raises(ValueError, match=r"config.train.batch_size=12 must be a positive multiple"):
    train.train_and_evaluate(config, tmp_path)


def test_unknown_regime(tmp_path, tiny_data_dir):
  config = tiny_config(tiny_data_dir, regime="points")
  with pytest.raises(ValueError, match="unknown supervision regime 'points'"):
    train.train_and_evaluate(config, tmp_path)


def test_missing_dataset(tmp_path):
  config = load_config("point", "tiny", data__dataset="voc2012_points",
                       data__data_dir=str(tmp_path / "tfds"))
  with pytest.raises(FileNotFoundError,
                     match=r"config.data.dataset='voc2012_points'.*manual data.*VOCdevkit"):
    train.train_and_evaluate(config, tmp_path / "run")
  config.data.dataset = "synthetic_points/huge"
  with pytest.raises(ValueError, match="config.data.dataset='synthetic_points/huge'"):
    train.train_and_evaluate(config, tmp_path / "run")


# ----------------------------------------------------------------------------------------------
# End to end on the tiny config.

NUM_STEPS = 6


@pytest.fixture(scope="module")
def reference_run(tiny_data_dir, tmp_path_factory):
  """An uninterrupted tiny Img+Obj+1Point run (also the reference of test_train_kill.py)."""
  workdir = tmp_path_factory.mktemp("reference")
  config = tiny_config(tiny_data_dir, train__num_steps=NUM_STEPS, train__eval_every=3)
  return config, workdir, train.train_and_evaluate(config, workdir)


def test_end_to_end_run_writes_everything(reference_run):
  config, workdir, summary = reference_run
  on_disk = json.loads((workdir / "summary.json").read_text())
  assert on_disk == summary
  assert summary["step"] == NUM_STEPS and summary["resumed_from_step"] == 0
  assert len(summary["params_sha256"]) == 64
  assert 0.0 <= summary["eval/miou"] <= 1.0
  assert summary["eval/iou_per_class"]["background"] is not None
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [4, 6]  # keep 2
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if "train/loss" in r]
  assert [r["step"] for r in train_rows] == list(range(1, NUM_STEPS + 1))
  assert all(np.isfinite(r["train/loss"]) and r["train/loss"] > 0 for r in train_rows)
  assert {"train/image", "train/point", "train/objectness"} <= set(train_rows[0])
  eval_rows = [r for r in rows if "eval/miou" in r]
  assert [r["step"] for r in eval_rows] == [3, 6]
  assert eval_rows[-1]["eval/miou"] == pytest.approx(summary["eval/miou"])
  assert list(workdir.glob("events.out.tfevents.*"))
  assert json.loads((workdir / "config.json").read_text())["regime"] == "point"
  # The final eval's pixel counts, rows = true class: its mIoU and IoUs are the summary's.
  confusion = evaluate.read_confusion(workdir / "confusion.json")
  assert (confusion["step"], confusion["split"]) == (NUM_STEPS, config.eval.split)
  miou, iou = metrics.mean_iou(confusion["counts"])
  assert miou == summary["eval/miou"] and confusion["counts"].shape == (21, 21)
  assert iou[0] == summary["eval/iou_per_class"]["background"]


def test_resume_continues_exactly(reference_run, tmp_path):
  config, _, reference = reference_run
  first = config.copy_and_resolve_references()
  first.train.num_steps = 4
  train.train_and_evaluate(first, tmp_path)
  resumed = train.train_and_evaluate(config, tmp_path)     # same workdir: resumes at step 4
  assert resumed["resumed_from_step"] == 4 and resumed["step"] == NUM_STEPS
  assert resumed["params_sha256"] == reference["params_sha256"]
  assert resumed["eval/miou"] == reference["eval/miou"]
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  steps = [json.loads(line)["step"] for line in lines if "train/loss" in line]
  assert steps == list(range(1, NUM_STEPS + 1))   # no duplicated rows after the resume
  again = train.train_and_evaluate(config, tmp_path)   # finished run: nothing left to train
  assert again["resumed_from_step"] == NUM_STEPS
  assert again["params_sha256"] == reference["params_sha256"]


def test_eval_mode_and_predict_mode(reference_run):
  config, workdir, summary = reference_run
  result = evaluate.evaluate_checkpoint(config, workdir)
  assert result["step"] == NUM_STEPS
  assert result["eval/miou"] == pytest.approx(summary["eval/miou"])
  assert json.loads((workdir / "eval.json").read_text())["step"] == NUM_STEPS
  paths = predict.write_predictions(config, workdir, num_images=3)
  assert len(paths) == 3 and all(p.parent.name == "predictions" for p in paths)
  picture = np.asarray(Image.open(paths[0]))
  assert picture.ndim == 3 and picture.shape[2] == 3
  assert (picture.shape[1] - 3 * 4) % 4 == 0   # four equal tiles with three 4-pixel gaps
  # The notebook API agrees with the eval step.
  model = predict.load_model(workdir)
  assert model.step == NUM_STEPS
  labels = model.predict(np.zeros((2, 64, 64, 3), np.float32))
  assert labels.shape == (2, 64, 64) and labels.dtype == np.int32


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_data_dir, tmp_path):
  config = tiny_config(tiny_data_dir, train__num_steps=NUM_STEPS, train__checkpoint_every=1,
                       optimizer__learning_rate=1e6)
  with pytest.raises(train.NonFiniteLossError, match=r"at step (\d+).*last good checkpoint is "
                                                     r"step") as err:
    train.train_and_evaluate(config, tmp_path)
  bad_step = int(err.value.args[0].split("at step ")[1].split(":")[0])
  with checkpointing.Checkpointer(tmp_path / "checkpoints") as ckpt:
    assert ckpt.latest_step() == bad_step - 1
  params, _ = state_lib.restore_params(tmp_path, state_lib.make_model(config.model),
                                       state_lib.OptimizerSpec.from_config(config.optimizer),
                                       parallel.make_mesh())
  assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params))


def _main(workdir, data_dir, log):
  """The real CLI in a subprocess, with the reference run's config (8 CPU devices via env)."""
  cmd = [sys.executable, "-m", "pointseg_jax.main", "--config=configs/point.py:tiny",
         f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
         f"--config.train.num_steps={NUM_STEPS}", "--config.train.eval_every=3",
         "--config.train.progress_bar=False"]
  return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                          env=dict(os.environ))


def _signal_when(proc, ready, log_path, signum):
  """Send `signum` to `proc` once ready() holds (polled every 50 ms), then wait for the exit."""
  deadline = time.time() + 600
  while not ready():
    assert proc.poll() is None, log_path.read_text()[-3000:]
    assert time.time() < deadline, "not ready after 600 s: " + log_path.read_text()[-3000:]
    time.sleep(0.05)
  proc.send_signal(signum)
  proc.wait(timeout=600)
  return proc


def _train_steps(workdir):
  """The train steps metrics.jsonl holds so far (one row per step at log_every=1)."""
  path = workdir / "metrics.jsonl"
  lines = (path.read_text() if path.exists() else "").split("\n")[:-1]   # not a half-written one
  return [json.loads(line)["step"] for line in lines if '"train/loss"' in line]


@pytest.mark.e2e
def test_kill_9_then_sigterm_then_rerun_give_the_same_params(reference_run, tiny_data_dir,
                                                             tmp_path):
  """Both ways a real training process stops, one after the other on one workdir, then the same
  command again ends with the uninterrupted run's params (bit-exact resume):
  1. SIGKILL once its first checkpoint exists: killed, no summary.
  2. The same command resumes from that checkpoint (>= 2); SIGTERM once it has trained a step
     (what a preempted spot VM or a batch scheduler sends): it saves the step it is at, says so
     in one line, exits 143, no traceback, no summary.
  3. The same command resumes from exactly that step and ends with the reference's params.
  (One chain of three processes instead of two tests of two: each process costs ~15 s of CPU.)"""
  from helpers import SIGTERM, matches_stop_line  # pylint: disable=g-import-not-at-top
  _, _, reference = reference_run
  workdir = tmp_path / "run"
  with open(tmp_path / "first.log", "wb") as log:
    proc = _signal_when(_main(workdir, tiny_data_dir, log),
                        lambda: (workdir / "checkpoints" / "2").is_dir(), tmp_path / "first.log",
                        signal.SIGKILL)
  assert proc.returncode == -signal.SIGKILL
  assert not (workdir / "summary.json").exists(), "killed too late to test anything"

  second = tmp_path / "second.log"
  with open(second, "wb") as log:
    proc = _main(workdir, tiny_data_dir, log)
    resumed = []

    def trained_a_step_after_resuming():
      # The resumed run drops the killed run's rows after its checkpoint before it logs
      # "compiling", so a row after that step is its own: it is in the loop, where SIGTERM saves.
      found = re.search(r"step (\d+): compiling the train step", second.read_text())
      if found:
        resumed[:] = [int(found.group(1))]
      return bool(resumed) and max(_train_steps(workdir), default=0) > resumed[0]
    _signal_when(proc, trained_a_step_after_resuming, second, signal.SIGTERM)
  text = second.read_text()
  assert resumed and resumed[0] >= 2, text[-3000:]   # the kill's checkpoint, not a fresh start
  assert f"Resuming from the checkpoint of step {resumed[0]} in " in text, text[-3000:]
  assert proc.returncode == SIGTERM.exit_status, text[-3000:]
  assert "Traceback" not in text
  step = matches_stop_line(SIGTERM, text.strip().splitlines()[-1], tmp_path)
  assert resumed[0] < step <= NUM_STEPS and (workdir / "checkpoints" / str(step)).is_dir()
  assert not (workdir / "summary.json").exists()

  with open(tmp_path / "third.log", "wb") as log:
    proc = _main(workdir, tiny_data_dir, log)
    assert proc.wait(timeout=600) == 0, (tmp_path / "third.log").read_text()[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["resumed_from_step"] == step and summary["step"] == NUM_STEPS
  assert summary["params_sha256"] == reference["params_sha256"]
  assert summary["eval/miou"] == reference["eval/miou"]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_rerun_gives_the_same_params(reference_run, tiny_data_dir,
                                                                    tmp_path):
  """'At any moment': kill the same command at seeded random times (start-up, compiling,
  mid-step, mid-save, eval) until one run completes; the params still equal the reference."""
  _, _, reference = reference_run
  workdir = tmp_path / "run"
  rng = np.random.default_rng(0)
  duration = reference["wall_time_s"] + 6.0   # + interpreter, TF and JAX start-up
  kills = 0
  for attempt in range(8):
    with open(tmp_path / f"attempt{attempt}.log", "wb") as log:
      proc = _main(workdir, tiny_data_dir, log)
      timeout = duration * float(rng.uniform(0.2, 0.9)) if attempt < 7 else 600
      try:
        proc.wait(timeout=timeout)
      except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        continue
    assert proc.returncode == 0, (tmp_path / f"attempt{attempt}.log").read_text()[-3000:]
    break
  assert kills >= 1
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["params_sha256"] == reference["params_sha256"]
