"""One training run per workdir: a lock file that names its holder and is taken over when stale.

    with run_lock.WorkdirLock(workdir):     # raises errors.WorkdirError if a live run holds it
      ...train...

`<workdir>/run.lock` holds JSON {host, pid, started, heartbeat} of the run that owns the workdir;
the holder also keeps an exclusive `fcntl.flock` on it and rewrites `heartbeat` every
HEARTBEAT_S seconds from a daemon thread. A newcomer decides (docs/training.md, "One run per
workdir"):

- flock refused: a live process on this host holds the workdir -> refused, one line naming it;
- flock granted and the file names this host: its holder is gone (a live one would hold the
  flock; SIGKILL, OOM, a reboot) -> stale, logged, taken over;
- flock granted and the file names another host: flock says nothing across hosts (NFS without
  lockd, gcsfuse: a pod's workdir, launch/tpu.sh) -> stale only when its heartbeat is older than
  STALE_AFTER_S, else refused with the time it goes stale.

A clean exit (also SIGTERM / Ctrl-C, which training turns into exceptions) deletes the file, and
the workdir itself when the lock created it and nothing else was written (a refused config leaves
no trace). Where flock is not supported at all, this host's holder is judged by its pid.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import pathlib
import socket
import threading
import time

from absl import logging

from pointseg_jax import errors

LOCK_FILE = "run.lock"
HEARTBEAT_S = 30.0       # how often the holder rewrites `heartbeat`
STALE_AFTER_S = 300.0    # another host's lock with no heartbeat for this long is stale (10 beats)
_RETRIES = 5             # the holder deleted the file between our open and our flock: try again


def _utc(t: float) -> str:
  return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # someone else's process: alive
    return True
  return True


def _read(fd: int) -> dict | None:
  """The holder's record, or None when the file is empty or not ours (a crash mid-write)."""
  raw = os.pread(fd, 1 << 16, 0)
  try:
    info = json.loads(raw)
  except ValueError:
    return None
  keys = ("host", "pid", "started", "heartbeat")
  return info if isinstance(info, dict) and all(k in info for k in keys) else None


class WorkdirLock:
  """Context manager: hold `<workdir>/run.lock` while training (see the module docstring).

  enabled=False (the non-zero processes of a multi-process run: process 0 holds the lock for the
  run) does nothing.
  """

  def __init__(self, workdir, *, enabled: bool = True, heartbeat_s: float = HEARTBEAT_S,
               stale_after_s: float = STALE_AFTER_S):
    self.workdir = pathlib.Path(workdir)
    self.path = self.workdir / LOCK_FILE
    self.enabled = enabled
    self.heartbeat_s = heartbeat_s
    self.stale_after_s = stale_after_s
    self.host = socket.gethostname()
    self._fd = None
    self._info = None
    self._created_dirs = []
    self._stop = threading.Event()
    self._thread = None

  # --- acquire -----------------------------------------------------------------------------------

  def __enter__(self) -> "WorkdirLock":
    if not self.enabled:
      return self
    self._make_workdir()
    try:
      self._acquire()
    except BaseException:
      self._remove_created_dirs()
      raise
    self._thread = threading.Thread(target=self._beat, name="run_lock heartbeat", daemon=True)
    self._thread.start()
    return self

  def _make_workdir(self) -> None:
    missing = [p for p in [self.workdir, *self.workdir.parents] if not p.exists()]
    self.workdir.mkdir(parents=True, exist_ok=True)
    self._created_dirs = missing          # deepest first: removed in this order if left empty

  def _acquire(self) -> None:
    for _ in range(_RETRIES):
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        flock_works = self._flock(fd)
        if not self._still_linked(fd):   # the holder released (deleted) it in between: again
          os.close(fd)
          continue
        holder = _read(fd)
        if holder is not None or os.fstat(fd).st_size:
          self._judge(holder, flock_works)
        self._info = {"host": self.host, "pid": os.getpid(), "started": time.time(),
                      "heartbeat": time.time()}
        self._write(fd)
        self._fd = fd
        return
      except BaseException:
        os.close(fd)
        raise
    raise errors.WorkdirError(f"{self.path}: could not take the lock in {_RETRIES} tries (other "
                              "runs keep starting and stopping on this workdir); use one --workdir "
                              "per run")

  def _flock(self, fd: int) -> bool:
    """True: we hold the flock. False: this file system has no flock (judge by pid / heartbeat)."""
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise self._refusal(_read(fd), "its lock is held", held=True) from None
    except OSError as e:
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        raise
      logging.warning("%s: this file system does not support flock (%s); judging the lock by "
                      "its pid and heartbeat only", self.path, e)
      return False
    return True

  def _still_linked(self, fd: int) -> bool:
    try:
      return os.stat(self.path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
      return False

  def _judge(self, holder: dict | None, flock_works: bool) -> None:
    """Raise the refusal if `holder` may be alive; else log why it is stale (we take it over)."""
    if holder is None:
      reason = "unreadable (a run died while writing it)"
    elif holder["host"] == self.host:
      if not flock_works and _pid_alive(int(holder["pid"])):
        raise self._refusal(holder, "its process is alive")
      reason = f"process {holder['pid']} on this host is gone"
    else:
      age = time.time() - float(holder["heartbeat"])
      if age <= self.stale_after_s:
        raise self._refusal(holder, f"heartbeat {age:.0f} s ago")
      reason = f"no heartbeat from host {holder['host']} for {age:.0f} s"
    logging.warning("%s: taking over a stale lock (%s): %s", self.path, reason,
                    json.dumps(holder) if holder else "")

  def _refusal(self, holder: dict | None, why: str, held: bool = False) -> errors.WorkdirError:
    """The one line: who holds the workdir and what to do. held: its flock is held (a live
    process; on NFS with lockd possibly on another host), which never goes stale."""
    where = f"--workdir={self.workdir}"
    if holder is None:
      return errors.WorkdirError(
          f"{where} is in use by another training run ({self.path} is locked, {why}; its details "
          "are being written); wait for it to finish or train into another --workdir")
    pid, host = holder["pid"], holder["host"]
    who = f"pid {pid} on host {host}, started {_utc(float(holder['started']))} ({why})"
    if held or host == self.host:
      on_host = "" if host == self.host else f" on {host}"
      fix = f"wait for it to finish, stop it (kill {pid}{on_host}), or train into another --workdir"
    else:
      stale_at = _utc(float(holder["heartbeat"]) + self.stale_after_s)
      fix = (f"wait for it to finish or train into another --workdir; if that process is gone, "
             f"the lock is taken over after {stale_at} ({self.stale_after_s:.0f} s without a "
             f"heartbeat), or delete {self.path}")
    return errors.WorkdirError(f"{where} is in use by another training run: {who}; {fix}")

  # --- hold --------------------------------------------------------------------------------------

  def _write(self, fd: int) -> None:
    data = json.dumps(self._info).encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
    os.fsync(fd)

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_s):
      try:
        self._info["heartbeat"] = time.time()
        self._write(self._fd)
      except OSError as e:    # a full disk / a dropped mount: keep training, try again later
        logging.warning("%s: heartbeat not written (%s)", self.path, e)

  # --- release -----------------------------------------------------------------------------------

  def __exit__(self, *exc) -> None:
    if self._fd is None:
      return
    self._stop.set()
    self._thread.join()
    try:
      if self._still_linked(self._fd):
        os.unlink(self.path)   # while still holding the flock: nobody takes a half-released lock
    finally:
      os.close(self._fd)
      self._fd = None
    self._remove_created_dirs()

  def _remove_created_dirs(self) -> None:
    for path in self._created_dirs:
      try:
        path.rmdir()
      except OSError:   # not empty: the run wrote something (or another run did): keep it
        break
    self._created_dirs = []
