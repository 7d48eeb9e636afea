"""The annotation server as a public server (docs/annotate.md, "Deploy" and "Security"): any body is a
4xx, never a 5xx; a GET's body is never a second request; a client trickling its header cannot hold
a connection past the header deadline nor starve valid requests; the organiser's dashboard API
(admin token, revoke / rotate, progress and per-annotator numbers by hand, export); a file that is
not a database. Process-level tests (marked e2e): two `serve` processes creating one new database,
a busy port, several workers with a revoked token and slow clients."""
import json
import os
import re
import select
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from pointseg_jax import errors
from pointseg_jax.annotate import dashboard
from pointseg_jax.annotate import db
from pointseg_jax.annotate import export
from pointseg_jax.annotate import runner
from pointseg_jax.annotate import server

from annotate_util import DOG, Client, do_task, make_images, make_store, right_answer, serving
from annotate_util import task_images


@pytest.fixture
def api(tmp_path):
  """(store, port, alice's client, admin client)."""
  store = make_store(str(tmp_path))
  alice, admin = store.add_annotator("alice"), store.ensure_admin_token()
  with serving(store) as port:
    a, b = Client(port, alice), Client(port, admin)
    yield store, port, a, b
    a.close()
    b.close()
  store.close()


def _raw(port: int, data: bytes, wait: float = 2.0) -> bytes:
  """Send raw bytes, read until the server closes or `wait` seconds pass."""
  with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
    s.sendall(data)
    out = b""
    try:
      while chunk := s.recv(65536):
        out += chunk
    except socket.timeout:
      pass
  return out


def _answer(a, **change):
  return {"key": os.urandom(16).hex(), "assignment": a, "pos": 0, "absent": False,
          "clicks": [{"x": 1.0, "y": 1.0, "t": 5}], "duration_ms": 1000, "seq": 1, **change}


# ----------------------------------------------------------------------------------------------
# Bodies and the protocol.


def test_any_body_is_a_4xx_never_a_5xx(api):
  store, port, alice, admin = api
  a = alice.task()["assignment"]
  ok = json.dumps(_answer(a))
  bodies = {
      "assignment 2^63": json.dumps(_answer(a, assignment=2**63)),
      "assignment -2^63 - 1": json.dumps(_answer(a, assignment=-2**63 - 1)),
      "pos 2^64": json.dumps(_answer(a, pos=2**64)),
      "seq 400 digits": ok.replace('"seq": 1', '"seq": ' + "9" * 400),
      "x 400 digits": ok.replace('"x": 1.0', '"x": ' + "9" * 400),
      "x 1e400 (inf)": ok.replace('"x": 1.0', '"x": 1e400'),
      "x NaN": ok.replace('"x": 1.0', '"x": NaN'),
      "t 2^63": ok.replace('"t": 5', f'"t": {2**63}'),
      "duration 2^63": json.dumps(_answer(a, duration_ms=2**63)),
      "nested lists 30,000 deep": "[" * 30000 + "]" * 30000,
      "nested objects 10,000 deep": '{"a":' * 10000 + "1" + "}" * 10000,
      "clicks nested": ok.replace('"clicks": [', '"clicks": [[[[[[[[[[]]]]]]]]]], "c": ['),
      "not JSON": "hello",
      "empty": "",
      "null": "null",
      "a list": "[1, 2]",
      "a string": '"x"',
      "key an object": json.dumps(_answer(a, key={"a": 1})),
      "absent a number": json.dumps(_answer(a, absent=1)),
      "pos a float": json.dumps(_answer(a, pos=0.0)),
      "clicks a dict": json.dumps(_answer(a, clicks={"x": 1})),
  }
  for name, body in bodies.items():
    for path in ("/api/answer", "/api/finish"):
      status, resp, _ = alice.request("POST", path, raw=body.encode(),
                                      headers={"Content-Type": "application/json"})
      assert 400 <= status < 500, (name, path, status, resp)
      assert isinstance(resp, dict) and resp["error"], (name, resp)
  for raw in (b"\xff\xfe{}", b'{"key": "\xc3"}', b"{\"key\": \"\\ud800\"}"):
    status, resp, _ = alice.request("POST", "/api/answer", raw=raw,
                                    headers={"Content-Type": "application/json"})
    assert status == 400, (raw, resp)
  status, resp, _ = admin.request("POST", "/api/admin/revoke", {"name": "x" * 65})
  assert status == 400 and "name" in resp["error"]
  with store.transaction(write=False) as conn:   # nothing was written
    assert conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 0
  assert alice.request("POST", "/api/answer", raw=ok.encode(),
                       headers={"Content-Type": "application/json"})[0] == 200


@pytest.mark.parametrize("head", [
    b"Content-Length: \xc2\xb2",             # a superscript two: str.isdigit() says yes
    b"Content-Length: -1",
    b"Content-Length: 1e3",
    b"Content-Length: 2\r\nContent-Length: 3",
    b"Content-Length: " + b"9" * 40,
    b"X-Big: " + b"a" * 20000,
    b"Bad Header Line",
])
def test_malformed_requests_are_4xx(api, head):
  _, port, alice, _ = api
  out = _raw(port, b"POST /api/finish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
             head + b"\r\n\r\n{}")
  status = int(out.split(b" ", 2)[1])
  assert 400 <= status < 500, out[:200]
  assert alice.request("GET", "/api/me")[0] == 200


def test_a_gets_body_is_never_parsed_as_a_second_request(api):
  store, port, alice, _ = api
  auth = b"Authorization: Bearer " + alice.token.encode() + b"\r\n"
  hidden = b"GET /api/task HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"   # would create a task
  out = _raw(port, b"GET /api/me HTTP/1.1\r\nHost: x\r\n" + auth +
             b"Content-Length: %d\r\n\r\n" % len(hidden) + hidden)
  assert out.count(b"HTTP/1.1 ") == 1 and b'"name":"alice"' in out
  with store.transaction(write=False) as conn:
    assert conn.execute("SELECT COUNT(*) FROM assignments").fetchone()[0] == 0


def _trickle(port: int, n: int, seconds: float, valid) -> tuple[list[float], list[float]]:
  """n sockets trickling a header one byte per 0.2 s for up to `seconds`, while `valid()` runs
  requests; (seconds each socket lived before the server closed it, valid request latencies)."""
  socks, opened, lived, latencies = [], {}, {}, []
  for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /api/me HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    s.setblocking(False)
    socks.append(s)
    opened[s] = time.monotonic()
  t_end = time.monotonic() + seconds
  try:
    while len(lived) < n and time.monotonic() < t_end:
      for s in socks:
        if s not in lived:
          try:
            s.send(b"a")
          except OSError:
            lived[s] = time.monotonic() - opened[s]
      readable, _, _ = select.select([s for s in socks if s not in lived], [], [], 0)
      for s in readable:
        try:
          data = s.recv(4096)
        except OSError:
          data = b""
        if not data:
          lived[s] = time.monotonic() - opened[s]
      t0 = time.monotonic()
      valid()
      latencies.append(time.monotonic() - t0)
      time.sleep(0.2)
  finally:
    for s in socks:
      s.close()
  return [lived.get(s, float("inf")) for s in socks], latencies


def test_slow_loris_is_cut_at_the_header_deadline_and_starves_nobody(api, monkeypatch):
  _, port, alice, _ = api
  monkeypatch.setattr(runner, "HEADER_TIMEOUT_S", 1.5)

  def valid():
    c = Client(port, alice.token, timeout=5)   # a new connection each time: the accept path
    assert c.request("GET", "/api/me")[0] == 200
    c.close()

  lived, latencies = _trickle(port, 150, seconds=8, valid=valid)
  assert max(lived) < 1.5 + 1.5, sorted(lived)[-5:]     # closed at the deadline, not for ever
  assert min(lived) >= 1.4
  assert len(latencies) >= 5 and max(latencies) < 1.0, latencies


def test_a_gets_trickled_body_is_cut_after_the_answer(api, monkeypatch):
  _, port, alice, _ = api
  monkeypatch.setattr(runner, "HEADER_TIMEOUT_S", 1.0)
  with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
    s.sendall(b"GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + alice.token.encode() +
              b"\r\nContent-Length: 100000\r\n\r\n")
    t0, out = time.monotonic(), b""
    while time.monotonic() - t0 < 6:
      try:
        s.sendall(b"a")
        time.sleep(0.1)
        s.setblocking(False)
        chunk = s.recv(65536)
        s.setblocking(True)
      except BlockingIOError:
        s.setblocking(True)
        continue
      except OSError:
        break
      if not chunk:
        break
      out += chunk
  assert out.startswith(b"HTTP/1.1 200") and b'"name":"alice"' in out
  assert time.monotonic() - t0 < 1.0 + 1.5       # cut at the deadline, not after the 100 KB


def test_a_slow_body_is_cut(api, monkeypatch):
  _, port, alice, _ = api
  monkeypatch.setattr(server, "BODY_TIMEOUT_S", 1.0)
  t0 = time.monotonic()
  out = _raw(port, b"POST /api/finish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
             alice.token.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 50"
             b"\r\n\r\n{", wait=5)
  assert out.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 3


def test_connection_limit_answers_503_and_recovers(tmp_path, monkeypatch):
  monkeypatch.setattr(runner, "MAX_CONNECTIONS", 20)
  monkeypatch.setattr(runner, "HEADER_TIMEOUT_S", 1.0)
  store = make_store(str(tmp_path))
  token = store.add_annotator("alice")
  with serving(store) as port:
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(25)]
    try:
      time.sleep(0.2)
      status, body, r = Client(port, token).request("GET", "/api/me")
      assert status == 503, body                       # over the limit: refused, not queued
      time.sleep(1.5)                                  # the idle sockets pass the header deadline
      assert Client(port, token).request("GET", "/api/me")[0] == 200
    finally:
      for s in idle:
        s.close()
  store.close()


# ----------------------------------------------------------------------------------------------
# The organiser: admin token, tokens, dashboard numbers, export.


def test_admin_and_annotator_tokens_are_separate(api):
  store, port, alice, admin = api
  for client in (alice, Client(port, None), Client(port, "x" * 43)):
    for method, path, body in (("GET", "/api/admin/campaign", None),
                               ("GET", "/api/admin/export", None),
                               ("POST", "/api/admin/revoke", {"name": "alice"}),
                               ("POST", "/api/admin/rotate", {"name": "alice"}),
                               ("POST", "/api/admin/add", {"name": "mallory"})):
      status, resp, r = client.request(method, path, body)
      assert status == 401 and r.getheader("WWW-Authenticate") == "Bearer", (path, resp)
  assert admin.request("GET", "/api/task")[0] == 401
  assert set(store.annotator_names().values()) == {"alice"}
  assert store.ensure_admin_token() is None           # made once
  new = store.rotate_admin_token()
  assert admin.request("GET", "/api/admin/campaign")[0] == 401
  assert Client(port, new).request("GET", "/api/admin/campaign")[0] == 200


def test_revoke_and_rotate_take_effect_at_once(api):
  store, port, alice, admin = api
  do_task(store, alice, right=True)
  assert admin.request("POST", "/api/admin/revoke", {"name": "alice"})[1] == {
      "name": "alice", "revoked": True}
  assert alice.request("GET", "/api/me")[0] == 401     # the very next request
  assert alice.request("GET", "/api/task")[0] == 401
  status, resp, _ = admin.request("POST", "/api/admin/rotate", {"name": "alice"})
  assert status == 200
  alice2 = Client(port, resp["token"])
  assert alice2.request("GET", "/api/me")[1]["accepted"] == 1   # same annotator, work kept
  assert alice.request("GET", "/api/me")[0] == 401
  status, resp, _ = admin.request("POST", "/api/admin/rotate", {"name": "alice"})
  assert alice2.request("GET", "/api/me")[0] == 401 and Client(port, resp["token"]).request(
      "GET", "/api/me")[0] == 200
  assert admin.request("POST", "/api/admin/revoke", {"name": "nobody"})[0] == 404
  status, resp, _ = admin.request("POST", "/api/admin/add", {"name": "bob"})
  assert status == 200 and Client(port, resp["token"]).request("GET", "/api/me")[1]["name"] == "bob"
  assert admin.request("POST", "/api/admin/add", {"name": "bob"})[0] == 409
  assert store.revoked() == set()
  admin.request("POST", "/api/admin/revoke", {"name": "bob"})
  assert store.revoked() == {k for k, v in store.annotator_names().items() if v == "bob"}


def test_dashboard_numbers_by_hand(api):
  store, port, alice, admin = api
  bob = Client(port, store.add_annotator("bob"))
  carol = Client(port, store.add_annotator("carol"))
  do_task(store, alice, right=True)         # 1Point dog, task 1: gold 2 of 2
  do_task(store, bob, right=False)          # 1Point dog, task 2: gold 0 of 2
  for _ in range(2):                        # carol: right but 0.2 s per image (12 answers)
    t = carol.task()
    for pos, name in enumerate(task_images(store, t["assignment"])):
      clicks = [(x, y, 100 + k) for k, (x, y, _) in enumerate(right_answer(name, t["kind"],
                                                                           t["cls"]))]
      assert carol.answer(t["assignment"], pos, clicks, seq=1, duration_ms=200)[0] == 200
    assert carol.finish(t["assignment"])[1]["status"] == "accepted"
  c = admin.request("GET", "/api/admin/campaign")[1]
  assert c == json.loads(json.dumps(dashboard.campaign(store)))
  rows = {(p["kind"], p["class_name"]): p for p in c["progress"]}
  assert len(rows) == 4 and all(p["tasks"] == 2 for p in rows.values())
  assert rows[("1point", "dog")] == {"kind": "1point", "cls": DOG, "class_name": "dog", "tasks": 2,
                                     "complete": 2, "open": 0, "accepted": 2, "rejected": 1,
                                     "answers": 18}
  assert rows[("1point", "person")]["accepted"] == 1 and rows[("1point", "person")]["open"] == 0
  assert rows[("allpoints", "dog")]["answers"] == 0
  people = {a["name"]: a for a in c["annotators"]}
  a, b, k = people["alice"], people["bob"], people["carol"]
  assert (a["accepted"], a["gold_right"], a["gold_total"], a["flags"]) == (1, 2, 2, [])
  # alice: 'not present' answers 1.0 s; first clicks 0.9 s (4 work images) and 0.8 s (gold):
  # the paper's formula 18.5 x 1.0 + 1.5 x 0.9 = 19.85 s per image.
  assert a["per_image_s"]["1point"]["voc_formula"] == pytest.approx(19.85)
  assert a["per_image_s"]["allpoints"]["voc_formula"] is None
  assert c["paper_per_image_s"] == {"1point": 22.1, "allpoints": 23.2}
  assert (b["rejected"], b["gold_right"], b["gold_total"]) == (1, 0, 2)
  assert b["flags"] == ["1 of 1 finished tasks rejected",
                        "gold accuracy 0% is below the 100% a task needs"]
  assert k["answers"] == 12 and k["median_answer_s"] == pytest.approx(0.2)
  assert k["flags"] == ["median answer 0.20 s (under 0.5 s: not looking?)"]


def test_export_route_gives_the_export_commands_file(api, tmp_path):
  store, _, alice, admin = api
  do_task(store, alice, right=True)
  status, body, r = admin.request("GET", "/api/admin/export")
  assert status == 200 and "attachment" in r.getheader("Content-Disposition")
  export.export(store, str(tmp_path / "c.json"))
  assert body == json.load(open(tmp_path / "c.json"))   # the Client parsed the JSON download
  assert len(body) == 4          # the task's 4 work images


def test_a_file_that_is_not_a_database(tmp_path):
  notes = tmp_path / "notes.txt"
  notes.write_text("shopping list: eggs, milk, flour, more eggs\n" * 20)
  with pytest.raises(errors.MissingInputError, match="notes.txt: not an SQLite database"):
    db.Store(str(notes))
  assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


# ----------------------------------------------------------------------------------------------
# Processes.

SERVE = [sys.executable, "-m", "pointseg_jax.annotate", "serve"]


def _start(*args, stderr=subprocess.PIPE):
  return subprocess.Popen([*SERVE, *args], stdout=subprocess.PIPE, stderr=stderr, text=True,
                          start_new_session=True)


def _links(proc) -> dict:
  """What serve printed up to its dashboard line: {port, annotators {name: token}, admin}."""
  out = {"annotators": {}, "admin": None, "port": None, "lines": []}
  while True:
    line = proc.stdout.readline()
    assert line, f"serve ended early: {proc.stderr.read() if proc.stderr else ''}"
    out["lines"].append(line.strip())
    if m := re.match(r"serving .* on http://127\.0\.0\.1:(\d+)/", line):
      out["port"] = int(m.group(1))
    elif m := re.match(r"annotator (\S+): .*#token=(\S+)", line):
      out["annotators"][m.group(1)] = m.group(2)
    elif line.startswith("dashboard:"):
      out["admin"] = line.split("#token=")[1].strip() if "#token=" in line else None
      return out


def _workers(pgid: int) -> list[int]:
  """The spawned worker processes in process group `pgid` (uvicorn's workers are `spawn`ed)."""
  pids = []
  for name in os.listdir("/proc"):
    try:
      with open(f"/proc/{name}/cmdline", "rb") as f:
        spawned = b"spawn_main" in f.read()
      if spawned and os.getpgid(int(name)) == pgid:
        pids.append(int(name))
    except (OSError, ValueError):   # not a process, or gone
      pass
  return pids


def _stop(proc) -> str:
  os.killpg(proc.pid, 15)
  try:
    _, err = proc.communicate(timeout=15)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, 9)
    _, err = proc.communicate()
  return err or ""


@pytest.mark.e2e
@pytest.mark.parametrize("gap_s", [0.0, 0.2])
def test_two_servers_creating_one_new_database(tmp_path, gap_s):
  images, gold = make_images(str(tmp_path), n_work=40)
  dbf = str(tmp_path / "new.db")
  args = (f"--images={images}", f"--gold={gold}", f"--db={dbf}", "--classes=dog,person",
          "--task_size=6", "--gold_per_task=2", "--min_gold_right=2", "--port=0", "--allow_weak_gold")
  first = _start(*args)
  time.sleep(gap_s)
  second = _start(*args)
  try:
    links = [_links(first), _links(second)]
    tokens = {**links[0]["annotators"], **links[1]["annotators"]}
    assert list(tokens) == ["annotator-1"]                 # made once, by one of them
    admins = [l["admin"] for l in links if l["admin"]]
    assert len(admins) == 1
    store = db.Store(dbf)
    for link in links:                                     # each server knows the same people
      alice = Client(link["port"], tokens["annotator-1"])
      assert alice.request("GET", "/api/me")[0] == 200
      assert Client(link["port"], admins[0]).request("GET", "/api/admin/campaign")[0] == 200
    for link in links:                                     # and both write to the one file
      do_task(store, Client(link["port"], tokens["annotator-1"]))
  finally:
    errs = [_stop(first), _stop(second)]
  assert not any("Traceback" in e for e in errs), errs
  with sqlite3.connect(dbf) as conn:
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM assignments WHERE status = 'accepted'"
                        ).fetchone()[0] == 2
  assert not [n for n in os.listdir(tmp_path) if n.endswith(".creating")]


@pytest.mark.e2e
def test_workers_busy_port_revocation_and_slow_clients(tmp_path):
  """`serve --workers 2 --public_url ...`: the printed links use the public URL; a second serve on
  its port and a --db that is not a database each exit 2 with one line; a revoked token is refused
  from the next request on; 120 sockets trickling headers are cut at the deadline while valid
  requests keep succeeding; `admin-token` replaces the dashboard's token while the server runs."""
  store = make_store(str(tmp_path))
  token = store.add_annotator("alice")
  proc = _start(f"--db={store.path}", "--port=0", "--workers=2",
                "--public_url=https://annotate.example.org")
  try:
    link = _links(proc)
    port, admin = link["port"], link["admin"]
    assert link["lines"][-1] == f"dashboard: https://annotate.example.org/admin#token={admin}"
    busy = subprocess.run([*SERVE, f"--db={store.path}", f"--port={port}"], capture_output=True,
                          text=True, timeout=60)
    assert busy.returncode == 2 and busy.stderr.strip().splitlines() == [
        f"error: --port {port}: address 127.0.0.1:{port} is already in use (another server, "
        "perhaps another `annotate serve`?); stop it or choose another --port (0 picks a free one)"]
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 100)
    bad = subprocess.run([*SERVE, f"--db={notes}", "--port=0"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith(f"error: {notes}: not an SQLite database")

    assert len(_workers(proc.pid)) == 2
    fresh = lambda t: Client(port, t, timeout=5)   # a new connection: any worker may take it
    assert all(fresh(token).request("GET", "/api/me")[0] == 200 for _ in range(10))
    assert fresh(admin).request("POST", "/api/admin/revoke", {"name": "alice"})[0] == 200
    assert [fresh(token).request("GET", "/api/me")[0] for _ in range(20)] == [401] * 20
    new = fresh(admin).request("POST", "/api/admin/rotate", {"name": "alice"})[1]["token"]

    def valid():
      assert fresh(new).request("GET", "/api/me")[0] == 200

    lived, latencies = _trickle(port, 120, seconds=runner.HEADER_TIMEOUT_S + 6, valid=valid)
    assert max(lived) < runner.HEADER_TIMEOUT_S + 2, sorted(lived)[-5:]
    assert max(latencies) < 1.0, latencies

    rotated = subprocess.run([*SERVE[:-1], "admin-token", f"--db={store.path}"],
                             capture_output=True, text=True, timeout=60)
    assert rotated.returncode == 0, rotated.stderr
    new_admin = re.search(r"#token=(\S+)", rotated.stdout).group(1)
    assert fresh(admin).request("GET", "/api/admin/campaign")[0] == 401
    assert fresh(new_admin).request("GET", "/api/admin/campaign")[0] == 200
  finally:
    err = _stop(proc)
  assert "Traceback" not in err, err
