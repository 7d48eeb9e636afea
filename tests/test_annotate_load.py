"""Load and crash test of the annotation server: 50 simulated annotators for a bounded time against
the real server on localhost (`serve`, and `serve --workers 2`: a supervisor and two worker
processes writing to one database), all of whose processes are killed with SIGKILL and restarted
mid-way. Clients retry (same idempotency key) until acknowledged and sometimes send an answer
twice on purpose.
Afterwards every acknowledged click must be in the database exactly once: lost = 0, duplicated = 0,
and each task's gold check must match what its annotator did."""
import collections
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from pointseg_jax.annotate import db

from annotate_util import Client, make_store, right_answer, task_images, wrong_answer

ANNOTATORS = 50
LOAD_S = 6.0              # seconds of load; the kill comes at KILL_AT_S, or earlier:
KILL_AT_S = 2.5
KILL_AFTER_REQUESTS = 150  # once this many requests were answered (a fast box finishes its tasks
                           # before 2.5 s, and a crash with no request in flight proves nothing)
HARD_LIMIT_S = 40.0       # clients give up retrying after this (the test then fails)


def _start_server(dbf: str, port: int, workers: int) -> tuple[subprocess.Popen, int]:
  proc = subprocess.Popen([sys.executable, "-m", "pointseg_jax.annotate", "serve", f"--db={dbf}",
                           f"--port={port}", f"--workers={workers}"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, start_new_session=True)
  line = proc.stdout.readline()
  m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
  assert m, line
  port = int(m.group(1))
  deadline = time.time() + 60      # the socket is bound before the workers start: wait for them
  while True:
    try:
      if Client(port, None, 2).request("GET", "/")[0] == 200:
        return proc, port
    except OSError:
      pass
    assert time.time() < deadline, "the server's workers did not start within 60 s"
    time.sleep(0.05)


class Annotator(threading.Thread):
  """Does tasks until the load ends: every answer retried until acknowledged."""

  def __init__(self, store, port, token, good, deadline, rng):
    super().__init__(daemon=True)
    self.store, self.client, self.good, self.deadline, self.rng = store, Client(port, token, 10), \
        good, deadline, rng
    self.acked = {}          # (assignment, pos) -> clicks of the latest acknowledged answer
    self.results = {}        # assignment -> status the server gave
    self.requests = self.replayed = self.retries = 0
    self.latencies = []
    self.error = None

  def call(self, method, path, body=None):
    """The request, retried through connection errors and restarts until it gets an answer."""
    while True:
      t0 = time.time()
      try:
        status, resp, _ = self.client.request(method, path, body)
      except OSError:
        self.client.close()
        status = None
      if status is not None and status < 500:
        self.requests += 1
        self.latencies.append((t0, time.time() - t0))
        return status, resp
      if time.time() > self.deadline + HARD_LIMIT_S:
        raise TimeoutError(f"{method} {path}: no answer from the server")
      self.retries += 1
      time.sleep(0.05 + 0.1 * self.rng.random())

  def run(self):
    try:
      while time.time() < self.deadline:
        status, task = self.call("GET", "/api/task")
        assert status == 200, task
        if task.get("done"):
          return
        self.do_task(task)
    except Exception as e:  # pylint: disable=broad-except  (reported by the test)
      self.error = e

  def do_task(self, task):
    a = task["assignment"]
    names = task_images(self.store, a)
    seq = 0
    for pos, name in enumerate(names):
      fn = right_answer if self.good else wrong_answer
      clicks = fn(name, task["kind"], task["cls"])
      if name.startswith("work") and task["kind"] == "allpoints" and clicks:
        clicks = [(self.rng.uniform(0, 47.9), self.rng.uniform(0, 39.9), 300 * (k + 1))
                  for k in range(self.rng.randint(1, 4))]
      for _ in range(2 if self.rng.random() < 0.15 else 1):   # sometimes revise the answer
        seq += 1
        body = {"key": os.urandom(16).hex(), "assignment": a, "pos": pos, "absent": not clicks,
                "clicks": [{"x": x, "y": y, "t": t} for x, y, t in clicks],
                "duration_ms": max([1000] + [t for _, _, t in clicks]), "seq": seq}
        for _ in range(2 if self.rng.random() < 0.2 else 1):  # a retry the server already got
          status, resp = self.call("POST", "/api/answer", body)
          assert status == 200, resp
          self.replayed += bool(resp.get("replayed"))
        self.acked[(a, pos)] = [(x, y) for x, y, _ in clicks]
    status, resp = self.call("POST", "/api/finish", {"assignment": a})
    assert status == 200, resp
    self.results[a] = resp["status"]


@pytest.mark.e2e
@pytest.mark.parametrize("workers", [1, 2])
def test_fifty_annotators_a_crash_and_no_click_lost_or_doubled(tmp_path, workers):
  store = make_store(str(tmp_path), n_work=12, classes=tuple(range(8, 18)))   # 60 tasks of 6 images
  tokens = [store.add_annotator(f"a{i:02d}") for i in range(ANNOTATORS)]
  dbf = store.path
  proc, port = _start_server(dbf, 0, workers)
  t_start = time.time()
  deadline = t_start + LOAD_S
  rng = random.Random(0)
  clients = [Annotator(store, port, tok, good=i % 2 == 0, deadline=deadline,
                       rng=random.Random(rng.random())) for i, tok in enumerate(tokens)]
  for c in clients:
    c.start()
  try:
    while (time.time() - t_start < KILL_AT_S
           and sum(c.requests for c in clients) < KILL_AFTER_REQUESTS):
      time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)       # a crash of every process: no shutdown, no flush
    proc.wait(10)
    killed_at = time.time() - t_start
    t_killed = time.time()
    proc, _ = _start_server(dbf, port, workers)
    t_ready = time.time()
    for c in clients:
      c.join(LOAD_S + HARD_LIMIT_S + 10)
  finally:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(20)
  errors_ = [c.error for c in clients if c.error]
  assert not errors_, errors_[:3]
  assert not any(c.is_alive() for c in clients)

  acked, expected_status = {}, {}
  for c in clients:
    acked.update(c.acked)
    for a, status in c.results.items():
      expected_status[a] = status
      assert status == ("accepted" if c.good else "rejected"), (a, status, c.good)
  with db.Store(dbf).transaction(write=False) as conn:
    stored = {}
    for a, pos, x, y in conn.execute("SELECT assignment, pos, x, y FROM clicks ORDER BY "
                                     "assignment, pos, rank"):
      stored.setdefault((a, pos), []).append((x, y))
    answered = {tuple(r) for r in conn.execute("SELECT assignment, pos FROM answers")}
    statuses = dict(conn.execute("SELECT id, status FROM assignments WHERE status != 'open'"))
  lost = duplicated = 0
  for key in set(acked) | set(stored):
    want, have = collections.Counter(acked.get(key, [])), collections.Counter(stored.get(key, []))
    lost += sum((want - have).values())
    duplicated += sum((have - want).values())
  n_clicks = sum(len(v) for v in acked.values())
  requests = sum(c.requests for c in clients)
  # Latency of the requests sent while a server was up (not those queued during the restart).
  lat = sorted(dt for c in clients for t0, dt in c.latencies if not t_killed <= t0 <= t_ready)
  print(f"\n{ANNOTATORS} annotators, {workers} worker(s), {LOAD_S:.0f} s of load, SIGKILL at {killed_at:.1f} s, "
        f"up again {t_ready - t_killed:.1f} s later: "
        f"{requests} requests ({sum(c.retries for c in clients)} retried through the crash, "
        f"{sum(c.replayed for c in clients)} duplicates answered from the idempotency table), "
        f"{len(acked)} image answers with {n_clicks} clicks acknowledged, "
        f"{len(expected_status)} tasks finished; lost {lost}, duplicated {duplicated}; "
        f"latency p50 {1000 * lat[len(lat) // 2]:.0f} ms, p95 {1000 * lat[int(len(lat) * .95)]:.0f} ms")
  assert lost == 0 and duplicated == 0
  assert answered >= set(acked)
  assert {a: s for a, s in statuses.items() if a in expected_status} == expected_status
  assert len(expected_status) >= ANNOTATORS // 2      # the load did real work
  assert sum(c.retries for c in clients) > 0          # and the crash hit requests in flight
