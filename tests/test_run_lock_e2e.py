"""One training run per workdir, with real processes (pointseg_jax/run_lock.py, docs/training.md).

A live training run A; the same command again (B) is refused at once with one line naming A, and
A goes on; A is SIGKILLed (its lock file stays behind); the same command (C) takes the stale lock
over, resumes and finishes, and metrics.jsonl holds every step once.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import REPO
from pointseg_jax import checkpointing
from pointseg_jax import run_lock


def _steps(workdir, kind="train/loss"):
  """The steps of metrics.jsonl's rows holding `kind` (train rows; the last step also has an eval
  row)."""
  path = workdir / "metrics.jsonl"
  rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
  return [row["step"] for row in rows if kind in row]


def _wait_for(condition, proc, log, what, timeout=600):
  deadline = time.time() + timeout
  while not condition():
    assert proc.poll() is None, f"run A exited ({proc.returncode}) before {what}:\n" + (
        log.read_text()[-3000:])
    assert time.time() < deadline, f"no {what} after {timeout} s"
    time.sleep(0.1)


@pytest.mark.e2e
@pytest.mark.slow     # ~85 s idle; the lock's logic is tests/test_run_lock.py (make test)
@pytest.mark.timeout(1200)   # three CLI starts and a training run; ~15 min at load 19
def test_second_run_refused_then_killed_runs_lock_taken_over(tiny_data_dir, tmp_path, run_cli):
  workdir = tmp_path / "run"
  args = ["--config=configs/point.py:tiny", f"--workdir={workdir}",
          f"--config.data.data_dir={tiny_data_dir}", "--config.train.progress_bar=False",
          "--config.train.checkpoint_every=5", "--config.train.eval_every=100000"]
  log = tmp_path / "a.log"
  with open(log, "wb") as out:
    a = subprocess.Popen([sys.executable, "-m", "pointseg_jax.main", *args,
                          "--config.train.num_steps=100000"], cwd=REPO, stdout=out,
                         stderr=subprocess.STDOUT, env=dict(os.environ))
  try:
    _wait_for(lambda: len(_steps(workdir)) >= 2, a, log, "training steps")
    holder = json.loads((workdir / run_lock.LOCK_FILE).read_text())
    assert (holder["pid"], holder["host"]) == (a.pid, socket.gethostname())

    b = run_cli("pointseg_jax.main", *args, "--config.train.num_steps=100000", timeout=600)
    line = run_cli.error(b)
    assert line.startswith(f"error: --workdir={workdir} is in use by another training run: pid "
                           f"{a.pid} on host {socket.gethostname()}, started "), line
    assert "compiling the train step" not in b.stderr   # refused before any work
    # A is unaffected: still training, still the holder, its steps logged once each.
    seen = len(_steps(workdir))
    _wait_for(lambda: len(_steps(workdir)) > seen + 2, a, log, "steps after B's refusal")
    assert json.loads((workdir / run_lock.LOCK_FILE).read_text())["pid"] == a.pid

    a.send_signal(signal.SIGKILL)
    a.wait(timeout=60)
  finally:
    if a.poll() is None:
      a.kill()
      a.wait()
  assert (workdir / run_lock.LOCK_FILE).exists()   # what SIGKILL leaves behind
  last = checkpointing.latest_step(workdir / "checkpoints")
  assert last is not None and last >= 5, log.read_text()[-3000:]

  c = run_cli("pointseg_jax.main", *args, f"--config.train.num_steps={last + 2}", timeout=600)
  assert c.returncode == 0, c.stderr[-3000:]
  assert f"taking over a stale lock (process {a.pid} on this host is gone)" in c.stderr
  assert _steps(workdir) == list(range(1, last + 3))   # every step once, none twice
  assert _steps(workdir, "eval/miou") == [last + 2]
  assert json.loads((workdir / "summary.json").read_text())["resumed_from_step"] == last
  assert not (workdir / run_lock.LOCK_FILE).exists()   # released at the end
