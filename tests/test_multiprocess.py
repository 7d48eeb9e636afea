"""A real multi-process run: two `python -m pointseg_jax.main` processes with 4 CPU devices each,
joined by `jax.distributed.initialize` on localhost (CPU collectives: gloo, JAX's default), train the
tiny Img+Obj+1Point config in one shared workdir.

Checked: both processes see 8 global devices; each reads its own disjoint half of the split and
supplies its half of every global batch (the two halves, recomputed here with the pipeline's
process overrides, fed to a 1-process 8-device run give the same parameters and per-step losses,
to the tolerance of the pmap parity test in test_parallel.py); only process 0 writes config.json,
metrics.jsonl, summary.json and TensorBoard events (a Python audit hook records every file each
process opens for writing; orbax's checkpoint files are written by both, as multi-host orbax
requires); and the checkpoint the two processes saved restores in this single process.
"""
import functools
import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from pointseg_jax import parallel
from pointseg_jax import state as state_lib
from pointseg_jax import supervision
from pointseg_jax import train
from pointseg_jax.data import pipeline
from helpers import tiny_config

pytestmark = pytest.mark.e2e   # process-level: two real processes (make test-fast skips)

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_PROCESSES, LOCAL_DEVICES, NUM_STEPS = 2, 4, 4
# The same tolerance as tests/test_parallel.py (shard_map vs pmap vs one device).
TOLERANCE = dict(rtol=2e-5, atol=2e-6)

# Runs `python -m pointseg_jax.main ARGS` under an audit hook that records every path below the
# workdir opened for writing through Python (open, os.open), written to LOG as JSON at exit.
AUDITED_MAIN = r"""
import atexit, json, os, runpy, sys
workdir, log = sys.argv.pop(1), sys.argv.pop(1)
written = set()
def hook(event, args):
  if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
    return
  mode, flags = args[1], args[2] or 0
  writes = any(c in mode for c in "wax+") if mode else bool(
      flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT))
  path = os.path.abspath(os.fsdecode(args[0]))
  if writes and path.startswith(workdir + os.sep):
    written.add(os.path.relpath(path, workdir))
sys.addaudithook(hook)
atexit.register(lambda: open(log, "w").write(json.dumps(sorted(written))))
runpy.run_module("pointseg_jax.main", run_name="__main__", alter_sys=True)
"""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(tiny_data_dir, tmp_path_factory):
  """Both processes run to the end -> (workdir, [pid], [log text], [paths written])."""
  base = tmp_path_factory.mktemp("multiprocess")
  workdir = base / "run"
  env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(LOCAL_DEVICES),
             XLA_FLAGS=f"--xla_force_host_platform_device_count={LOCAL_DEVICES}")
  address = f"localhost:{free_port()}"
  procs = []
  for i in range(NUM_PROCESSES):
    cmd = [sys.executable, "-c", AUDITED_MAIN, str(workdir), str(base / f"written{i}.json"),
           "--config=configs/point.py:tiny", f"--workdir={workdir}",
           f"--config.data.data_dir={tiny_data_dir}", f"--config.train.num_steps={NUM_STEPS}",
           "--config.train.progress_bar=False", "--config.distributed=True",
           f"--coordinator_address={address}", f"--num_processes={NUM_PROCESSES}",
           f"--process_id={i}"]
    log = open(base / f"process{i}.log", "w")  # pylint: disable=consider-using-with
    procs.append((subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT), log))
  try:
    for proc, _ in procs:
      proc.wait(timeout=480)
  finally:
    for proc, log in procs:
      if proc.poll() is None:   # the other one failed: do not leave it waiting for its peer
        proc.kill()
        proc.wait()
      log.close()
  logs = [(base / f"process{i}.log").read_text() for i in range(NUM_PROCESSES)]
  for (proc, _), text in zip(procs, logs):
    assert proc.returncode == 0, text[-4000:]
  written = [json.loads((base / f"written{i}.json").read_text()) for i in range(NUM_PROCESSES)]
  return workdir, [p.pid for p, _ in procs], logs, written


def test_both_processes_see_eight_global_devices(two_process_run):
  _, _, logs, _ = two_process_run
  for i, text in enumerate(logs):
    assert (f"JAX process {i}/{NUM_PROCESSES}, {LOCAL_DEVICES} local / "
            f"{NUM_PROCESSES * LOCAL_DEVICES} global devices (cpu)") in text


def test_only_process_0_writes_logs_and_summary(two_process_run):
  workdir, pids, _, written = two_process_run
  outside_checkpoints = [sorted(p for p in w if not p.startswith("checkpoints" + os.sep))
                         for w in written]
  assert outside_checkpoints[1] == [], outside_checkpoints[1]
  # Small files are written atomically (files.py): opened as .<name>.<pid>.tmp, then renamed.
  names = {re.sub(r"^\.(.+)\.\d+\.tmp$", r"\1", p) for p in outside_checkpoints[0]}
  assert {"config.json", "metrics.jsonl", "summary.json", "run.lock"} <= names, names
  # TensorBoard writes through its own file layer: one event file, named with process 0's pid.
  events = sorted(p.name for p in workdir.glob("events.out.tfevents.*"))
  assert len(events) == 1 and f".{pids[0]}." in events[0], (events, pids)
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train_steps = [r["step"] for r in rows if "train/loss" in r]
  assert train_steps == list(range(1, NUM_STEPS + 1))   # one row per step: one writer
  assert json.loads((workdir / "summary.json").read_text())["step"] == NUM_STEPS


def reference_run(data_dir):
  """NUM_STEPS steps in this process on 8 devices, each global batch = host 0's local batch then
  host 1's, as the pipeline builds them for process 0 and 1 of 2
  -> (config, initial params, final params, per-step losses, example ids per host and step)."""
  config = tiny_config(data_dir, train__num_steps=NUM_STEPS)
  mesh = parallel.make_mesh()
  assert parallel.num_shards(mesh) == NUM_PROCESSES * LOCAL_DEVICES
  model = state_lib.make_model(config.model)
  opt = state_lib.OptimizerSpec.from_config(config.optimizer)
  terms = supervision.active_terms(dict(config.loss.weights))
  step_fn = train.compiled_train_step(model, terms, opt,
                                      supervision.LossOptions.from_config(config.loss), mesh,
                                      bool(config.train.fast_compile))
  state = state_lib.create_train_state(model, opt, config.seed, mesh)
  initial = jax.device_get(state["params"])   # a copy: the step donates the state
  hparams = parallel.replicate(train.hyperparams(config.optimizer, config.loss.weights), mesh)
  local_batch = config.train.batch_size // NUM_PROCESSES
  hosts = [pipeline.make_dataset(config.data, "train", batch_size=local_batch, train=True,
                                 seed=config.seed, process_index=i, process_count=NUM_PROCESSES)
           for i in range(NUM_PROCESSES)]
  fields = supervision.needed_fields(terms)
  losses, ids = [], [[] for _ in hosts]
  for _ in range(NUM_STEPS):
    halves = [next(h) for h in hosts]
    for i, half in enumerate(halves):
      ids[i].append(set(half["example_id"].tolist()))
    batch = {k: np.concatenate([h[k] for h in halves]) for k in fields}
    state, metrics = step_fn(state, parallel.host_to_global(batch, mesh), hparams)
    losses.append(float(metrics["train/loss"]))
  return config, initial, jax.device_get(state["params"]), losses, ids


def test_disjoint_halves_and_the_same_params_as_one_process(two_process_run, tiny_data_dir):
  workdir, _, _, _ = two_process_run
  config, initial, expected, expected_losses, ids = reference_run(tiny_data_dir)
  # Each host's half of every batch comes from its own half of the split.
  for step_ids in zip(*ids):
    assert not set.intersection(*step_ids)
  assert not set.union(*ids[0]) & set.union(*ids[1])

  # The checkpoint the two processes wrote restores here (1 process, 8 devices) ...
  params, step = state_lib.restore_params(
      workdir, state_lib.make_model(config.model),
      state_lib.OptimizerSpec.from_config(config.optimizer), parallel.make_mesh())
  assert step == NUM_STEPS
  params = jax.device_get(params)
  assert max(float(np.abs(a - b).max())
             for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(initial))) > 0
  # ... and equals the 1-process run on the same global batches, as do the per-step losses.
  jax.tree.map(functools.partial(np.testing.assert_allclose, **TOLERANCE), params, expected)
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  np.testing.assert_allclose(losses, expected_losses, **TOLERANCE)


def test_distributed_flags_without_the_distributed_config_are_refused(tmp_path, run_cli):
  proc = run_cli("pointseg_jax.main", "--config=configs/point.py:tiny", f"--workdir={tmp_path}",
                 "--num_processes=2", timeout=120)
  assert "need --config.distributed=True" in run_cli.error(proc)
  assert not any(tmp_path.iterdir())
