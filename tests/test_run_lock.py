"""One training run per workdir (pointseg_jax/run_lock.py): refused while live, taken over when stale.

In-process cases here (flock treats two opens of one file as two holders, so one process can play
both runs); real processes (a training run, a second one refused, a SIGKILLed one taken over) are
in tests/test_run_lock_e2e.py.
"""
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from pointseg_jax import errors
from pointseg_jax import run_lock

HOST = socket.gethostname()


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def _write_lock(workdir, **info):
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / run_lock.LOCK_FILE).write_text(json.dumps(info))


def test_a_second_run_is_refused_with_one_line_naming_the_holder(tmp_path):
  workdir = tmp_path / "run"
  with run_lock.WorkdirLock(workdir) as held:
    info = json.loads(held.path.read_text())
    assert (info["host"], info["pid"]) == (HOST, os.getpid())
    with pytest.raises(errors.WorkdirError) as e:
      with run_lock.WorkdirLock(workdir):
        pytest.fail("two holders")
    message = str(e.value)
    assert "\n" not in message
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info["started"]))
    assert message == (
        f"--workdir={workdir} is in use by another training run: pid {os.getpid()} on host {HOST}, "
        f"started {started} (its lock is held); wait for it to finish, stop it "
        f"(kill {os.getpid()}), or train into another --workdir")
    assert json.loads(held.path.read_text())["pid"] == os.getpid()   # the holder's file untouched
  # Released: the file is gone and the next run gets the workdir.
  assert not (workdir / run_lock.LOCK_FILE).exists()
  with run_lock.WorkdirLock(workdir):
    pass


def test_a_killed_runs_lock_on_this_host_is_taken_over_and_logged(tmp_path, caplog):
  """What SIGKILL leaves: the file, with nobody holding its flock and the pid gone."""
  workdir = tmp_path / "run"
  pid = _dead_pid()
  _write_lock(workdir, host=HOST, pid=pid, started=time.time() - 60, heartbeat=time.time())
  with caplog.at_level(logging.WARNING):
    with run_lock.WorkdirLock(workdir) as held:
      assert json.loads(held.path.read_text())["pid"] == os.getpid()
  assert f"taking over a stale lock (process {pid} on this host is gone)" in caplog.text


def test_another_hosts_lock_counts_until_its_heartbeat_is_stale(tmp_path, caplog):
  """flock says nothing across hosts (gcsfuse, NFS): the heartbeat's age decides."""
  workdir = tmp_path / "run"
  now = time.time()
  _write_lock(workdir, host="tpu-vm-w-0", pid=4242, started=now - 3600, heartbeat=now - 20)
  with pytest.raises(errors.WorkdirError) as e:
    with run_lock.WorkdirLock(workdir, stale_after_s=300):
      pytest.fail("took a live lock of another host")
  stale_at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now - 20 + 300))
  assert re.fullmatch(
      rf"--workdir=.* is in use by another training run: pid 4242 on host tpu-vm-w-0, started "
      rf".* UTC \(heartbeat 2\d s ago\); wait for it to finish or train into another --workdir; if "
      rf"that process is gone, the lock is taken over after {stale_at} \(300 s without a "
      rf"heartbeat\), or delete {workdir}/run.lock", str(e.value)), str(e.value)
  assert json.loads((workdir / run_lock.LOCK_FILE).read_text())["pid"] == 4242   # untouched

  _write_lock(workdir, host="tpu-vm-w-0", pid=4242, started=now - 3600, heartbeat=now - 301)
  with caplog.at_level(logging.WARNING):
    with run_lock.WorkdirLock(workdir, stale_after_s=300):
      pass
  assert "no heartbeat from host tpu-vm-w-0 for 301 s" in caplog.text


def test_an_unreadable_lock_file_nobody_holds_is_taken_over(tmp_path, caplog):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / run_lock.LOCK_FILE).write_text('{"host": "x", "pi')   # a crash mid-write
  with caplog.at_level(logging.WARNING):
    with run_lock.WorkdirLock(workdir) as held:
      assert json.loads(held.path.read_text())["pid"] == os.getpid()
  assert "unreadable" in caplog.text


def test_without_flock_this_hosts_live_pid_still_refuses(tmp_path, monkeypatch):
  """File systems without flock (ENOLCK): this host's holder is judged by its pid."""
  workdir = tmp_path / "run"

  def no_flock(fd, op):
    raise OSError(37, "No locks available")   # errno.ENOLCK

  monkeypatch.setattr(run_lock.fcntl, "flock", no_flock)
  _write_lock(workdir, host=HOST, pid=os.getpid(), started=time.time(), heartbeat=time.time())
  with pytest.raises(errors.WorkdirError, match="its process is alive"):
    with run_lock.WorkdirLock(workdir):
      pass
  _write_lock(workdir, host=HOST, pid=_dead_pid(), started=time.time(), heartbeat=time.time())
  with run_lock.WorkdirLock(workdir):
    pass


def test_the_holder_refreshes_its_heartbeat(tmp_path):
  with run_lock.WorkdirLock(tmp_path / "run", heartbeat_s=0.05) as held:
    first = json.loads(held.path.read_text())
    deadline = time.time() + 30
    while json.loads(held.path.read_text())["heartbeat"] == first["heartbeat"]:
      assert time.time() < deadline, "no heartbeat in 30 s"
      time.sleep(0.02)
    assert json.loads(held.path.read_text())["started"] == first["started"]


def test_a_refused_or_failed_run_leaves_no_trace_but_keeps_what_was_written(tmp_path):
  """The lock creates the workdir (and missing parents) to hold its file; when the run wrote
  nothing (its config was refused), both go again. Anything written stays."""
  with pytest.raises(ValueError):
    with run_lock.WorkdirLock(tmp_path / "runs" / "a"):
      raise ValueError("config refused")
  assert not (tmp_path / "runs").exists()
  with run_lock.WorkdirLock(tmp_path / "runs" / "b"):
    (tmp_path / "runs" / "b" / "config.json").write_text("{}")
  assert sorted(p.name for p in (tmp_path / "runs" / "b").iterdir()) == ["config.json"]


def test_disabled_lock_does_nothing(tmp_path):
  """Processes other than 0 of a multi-process run: process 0 holds the run's lock."""
  with run_lock.WorkdirLock(tmp_path / "run"):
    with run_lock.WorkdirLock(tmp_path / "run", enabled=False):
      pass
    assert (tmp_path / "run" / run_lock.LOCK_FILE).exists()
