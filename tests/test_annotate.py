"""The annotation tool without a browser: task planning, the paper's gold check, the HTTP API and its
security rules, idempotent storage, export to click JSON, the timing report, and the CLI."""
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from pointseg_jax import errors
from pointseg_jax.annotate import db
from pointseg_jax.annotate import export
from pointseg_jax.annotate import qc
from pointseg_jax.annotate import report
from pointseg_jax.data import click_json

from annotate_util import DOG, GOLD, PERSON, Client, do_task, make_images, make_store
from annotate_util import right_answer
from annotate_util import serving, task_images, wrong_answer


@pytest.fixture
def store(tmp_path):
  s = make_store(str(tmp_path))
  yield s
  s.close()


@pytest.fixture
def api(store):
  """(store, port, client of alice, client of bob)."""
  alice, bob = store.add_annotator("alice"), store.add_annotator("bob")
  with serving(store) as port:
    a, b = Client(port, alice), Client(port, bob)
    yield store, port, a, b
    a.close()
    b.close()


# ----------------------------------------------------------------------------------------------
# The paper's quality control, by hand.

BOX = qc.Box(DOG, 10, 20, 30, 40)


@pytest.mark.parametrize("kind,boxes,absent,clicks,right", [
    ("1point", [BOX], False, [(10.0, 20.0)], True),          # top-left corner is inside
    ("1point", [BOX], False, [(30.0, 25.0)], False),         # xmax is outside (pixel edges)
    ("1point", [BOX], False, [(29.99, 39.99)], True),
    ("1point", [BOX], True, [], False),                      # present but marked absent
    ("1point", [], True, [], True),                          # absent, marked absent
    ("1point", [], False, [(1.0, 1.0)], False),              # absent, clicked
    ("allpoints", [BOX, qc.Box(DOG, 0, 0, 5, 5)], False, [(15.0, 25.0)], False),   # 1 < 2 instances
    ("allpoints", [BOX, qc.Box(DOG, 0, 0, 5, 5)], False, [(15.0, 25.0), (1.0, 1.0)], True),
    ("allpoints", [BOX], False, [(15.0, 25.0), (15.5, 25.0)], True),   # more clicks than instances
    ("allpoints", [BOX], False, [(15.0, 25.0), (50.0, 50.0)], False),  # one click outside every box
])
def test_gold_rule(kind, boxes, absent, clicks, right):
  assert qc.gold_right(kind, boxes, absent, clicks) is right


def test_acceptance_needs_min_right():
  assert qc.accepted([True] * 8 + [False] * 2, 8) == (True, 8, 10)
  assert qc.accepted([True] * 7 + [False] * 3, 8) == (False, 7, 10)


def test_gold_from_masks_gives_tight_boxes():
  mask = np.zeros((10, 12), np.uint8)
  mask[2:5, 3:7] = DOG
  mask[6:9, 8:11] = DOG
  mask[0, 0] = 255
  inst = np.zeros_like(mask)
  inst[2:5, 3:7], inst[6:9, 8:11] = 1, 2
  assert qc.gold_from_masks(mask, inst) == [{"cls": "dog", "box": [3, 2, 7, 5]},
                                            {"cls": "dog", "box": [8, 6, 11, 9]}]


@pytest.mark.parametrize("gold,match", [
    ([], "a gold file is an object"),
    ({"nope": []}, "gold image 'nope' is not an image of the images folder"),
    ({"g": {"cls": 1}}, "value must be a list"),
    ({"g": [{"cls": "unicorn", "box": [0, 0, 1, 1]}]}, "class 'unicorn' is neither"),
    ({"g": [{"cls": 1, "box": [0, 0, 60, 1]}]}, r"0 <= xmin < xmax <= 48"),
    ({"g": [{"cls": 1, "box": [5, 0, 5, 1]}]}, r"0 <= xmin < xmax"),
    ({"g": [{"cls": 1, "box": [0, 0, 1]}]}, "must be 4 finite numbers"),
    ({"g": [{"cls": 1, "bbox": [0, 0, 1, 1]}]}, "each entry must be"),
])
def test_bad_gold_file(gold, match):
  with pytest.raises(errors.DataError, match=match):
    qc.parse_gold(gold, {"g.jpg": (40, 48)}, source="gold.json")


# ----------------------------------------------------------------------------------------------
# Task planning.


def test_tasks_plant_gold_at_random_positions(store):
  with store.transaction(write=False) as conn:
    tasks = conn.execute("SELECT id, kind, cls FROM tasks ORDER BY id").fetchall()
    gold_names = {n + ".png" for n in GOLD}
    seen_work = {}
    positions = []
    for tid, kind, cls in tasks:
      names = [r[0] for r in conn.execute(
          "SELECT i.name FROM task_images ti JOIN images i ON i.id = ti.image WHERE ti.task = ? "
          "ORDER BY ti.pos", (tid,))]
      gold = [n for n in names if n in gold_names]
      assert len(gold) == 2 and len(set(names)) == len(names)
      present = [g for g in gold if GOLD[g[:-4]].get(cls)]
      assert len(present) == 1          # half the gold contains the class (2 of 4 gold images do)
      positions += [names.index(g) for g in gold]
      for n in names:
        if n not in gold_names:
          seen_work.setdefault((kind, cls), []).append(n)
  # 2 kinds x 2 classes, 8 work images in chunks of 4: 8 tasks; every work image once per (kind, class).
  assert len(tasks) == 8
  for names in seen_work.values():
    assert sorted(names) == [f"work_{i:02d}.jpg" for i in range(8)]
  assert len(set(positions)) > 2        # gold is not always at the same position


def test_planning_is_deterministic(tmp_path):
  images, gold = make_images(str(tmp_path))
  sizes = db.scan_images(images)
  g = qc.read_gold(gold, sizes)
  config = db.Config(images_dir=images, classes=(DOG,), task_size=5, gold_per_task=2,
                     min_gold_right=1, allow_weak_gold=True)
  assert db.plan_tasks(list(sizes), g, config) == db.plan_tasks(list(sizes), g, config)
  other = db.plan_tasks(list(sizes), g, db.Config(**{**config.__dict__, "seed": 1}))
  assert other != db.plan_tasks(list(sizes), g, config)


@pytest.mark.parametrize("config,match", [
    (dict(gold_per_task=6, task_size=6), "gold_per_task=6 must be >= 1 and below task_size=6"),
    (dict(min_gold_right=3), "min_gold_right=3 must be in 0..2"),
    (dict(kinds=("3point",)), "task kind '3point'"),
    (dict(gold_per_task=5, task_size=8, min_gold_right=4), "the gold file has 4 images but every task"),
])
def test_bad_project_config(tmp_path, config, match):
  with pytest.raises(errors.UserError, match=match):
    make_store(str(tmp_path), **config)


def test_images_folder_checks(tmp_path):
  images, gold = make_images(str(tmp_path))
  (tmp_path / "images" / "work_00.png").write_bytes(                 # same id as work_00.jpg
      (tmp_path / "images" / "gold_0.png").read_bytes())
  with pytest.raises(errors.DataError, match="have the same image id"):
    db.scan_images(images)
  os.remove(tmp_path / "images" / "work_00.png")
  (tmp_path / "images" / "broken.jpg").write_bytes(b"not a jpeg")
  outside = tmp_path / "secret.jpg"
  outside.write_bytes((tmp_path / "images" / "work_01.jpg").read_bytes())
  os.symlink(outside, tmp_path / "images" / "link.jpg")
  sizes = db.scan_images(images)
  assert "broken.jpg" not in sizes and "link.jpg" not in sizes and "work_01.jpg" in sizes
  with pytest.raises(errors.WorkdirError, match="already exists"):
    db.create(gold, db.Config(images_dir=images), gold)


# ----------------------------------------------------------------------------------------------
# The API.


def test_page_and_security_headers(api):
  _, port, _, _ = api
  anon = Client(port, None)
  for path, ctype in (("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")):
    status, body, r = anon.request("GET", path)
    assert status == 200 and r.getheader("Content-Type").startswith(ctype) and body
    assert "script-src 'self'" in r.getheader("Content-Security-Policy")
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    assert r.getheader("X-Frame-Options") == "DENY"
    assert r.getheader("Server") == "pointseg-annotate"
  html = anon.request("GET", "/")[1].decode()
  assert "http" not in html.replace("http-equiv", "")   # nothing loaded from elsewhere (no CDN)
  for path in ("/../../etc/passwd", "/static/app.js", "/index.html", "/%2e%2e/db.py",
               "/api/nothing"):
    assert anon.request("GET", path)[0] in (401, 404)


def test_every_api_route_needs_a_valid_token(api):
  store, port, alice, _ = api
  for token in (None, "x" * 43, "x" * 500):
    c = Client(port, token)
    for method, path, body in (("GET", "/api/task", None), ("GET", "/api/me", None),
                               ("GET", "/api/image?assignment=1&pos=0", None),
                               ("POST", "/api/answer", {}), ("POST", "/api/finish", {})):
      status, resp, r = c.request(method, path, body)
      assert status == 401, (token, path, resp)
      assert r.getheader("WWW-Authenticate") == "Bearer"
  assert alice.request("GET", "/api/me")[1] == {"name": "alice", "open": 0, "accepted": 0,
                                                "rejected": 0}
  assert store.annotator("x" * 43) is None


def test_nobody_reads_or_writes_anothers_task(api):
  store, _, alice, bob = api
  t = alice.task()
  assert bob.request("GET", f"/api/image?assignment={t['assignment']}&pos=0")[0] == 404
  status, body, _ = bob.answer(t["assignment"], 0, [(1, 1, 10)])
  assert status == 404 and "no assignment" in body["error"]
  assert bob.finish(t["assignment"])[0] == 404
  # The same 404 as for an assignment that does not exist at all.
  assert bob.answer(999, 0, [(1, 1, 10)])[1]["error"] == "no assignment 999 for this annotator"
  # Bob's own task is a different one, and his answers never land in Alice's.
  assert bob.task()["assignment"] != t["assignment"]
  with store.transaction(write=False) as conn:
    assert conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 0


def test_images_are_served_by_position_only(api):
  store, _, alice, _ = api
  t = alice.task()
  names = task_images(store, t["assignment"])
  status, body, r = alice.request("GET", f"/api/image?assignment={t['assignment']}&pos=0")
  assert status == 200 and r.getheader("Content-Type") == "image/jpeg"
  # The file's pixels, re-encoded (blind.py): same size, close values (the fixture's images are
  # uniform noise, JPEG's worst case), never the file's bytes.
  served = np.asarray(Image.open(io.BytesIO(body)), np.float64)
  original = np.asarray(Image.open(os.path.join(store.config.images_dir, names[0])).convert("RGB"))
  assert served.shape == original.shape and np.abs(served - original).mean() < 12
  assert body != open(os.path.join(store.config.images_dir, names[0]), "rb").read()
  for query in ("assignment=1&pos=../../etc/passwd", "assignment=1&pos=-1", "assignment=1",
                "assignment=1&pos=1&pos=2", "pos=0", "assignment=1&pos=0x1",
                "assignment=1&pos=" + "9" * 20):
    assert alice.request("GET", f"/api/image?{query}")[0] == 400, query
  assert alice.request("GET", f"/api/image?assignment={t['assignment']}&pos=6")[0] == 404


@pytest.mark.parametrize("change,match", [
    (dict(clicks=[{"x": 48.0, "y": 1.0, "t": 5}]), r"click x = 48.0 is outside the image"),
    (dict(clicks=[{"x": -0.5, "y": 1.0, "t": 5}]), "is outside the image"),
    (dict(clicks=[{"x": 1.0, "y": 40, "t": 5}]), r"click y = 40(\.0)? is outside"),
    (dict(clicks=[{"x": float("nan"), "y": 1.0, "t": 5}]), "malformed JSON|finite number"),
    (dict(clicks=[{"x": "1", "y": 1.0, "t": 5}]), r"clicks\.0\.x: .*valid number"),
    (dict(clicks=[{"x": 1.0, "y": 1.0, "t": 5, "cls": 3}]), r"fields \['cls'\] are not known"),
    (dict(clicks=[{"x": 1.0, "y": 1.0, "t": 5000}]), "click t = 5000 is outside 0..1000"),
    (dict(clicks=[{"x": 1.0, "y": 1.0, "t": 5}], absent=True), "cannot have clicks"),
    (dict(clicks=[], absent=False), "must be marked 'not present'"),
    (dict(clicks=[{"x": 1.0, "y": 1.0, "t": 5}, {"x": 2.0, "y": 1.0, "t": 6}]),
     "a 1Point task takes one click"),
    (dict(clicks=[{"x": 1.0, "y": 1.0, "t": 5}] * 101), r"clicks: .*at most 100 items"),
    (dict(pos=6), "pos 6 is not an image of assignment"),
    (dict(pos=True), "pos: .*valid integer"),
    (dict(seq=0), "seq: .*greater than or equal to 1"),
    (dict(duration_ms=10**9), "duration_ms: .*less than or equal to 3600000"),
    (dict(key="short"), "key: .*at least 16 characters"),
    (dict(key="g" * 32), "key: .*match pattern"),
    (dict(extra=1), r"fields \['extra'\] are not known"),
])
def test_answers_are_validated(api, change, match):
  store, _, alice, _ = api
  t = alice.task()
  assert t["kind"] == "1point"
  body = {"key": os.urandom(16).hex(), "assignment": t["assignment"], "pos": 0, "absent": False,
          "clicks": [{"x": 1.0, "y": 1.0, "t": 5}], "duration_ms": 1000, "seq": 1, **change}
  status, resp, _ = alice.request("POST", "/api/answer", body)
  assert status == 400, resp
  assert re.search(match, resp["error"]), resp["error"]
  with store.transaction(write=False) as conn:
    assert conn.execute("SELECT COUNT(*) FROM clicks").fetchone()[0] == 0


def test_request_bodies_are_bounded(api):
  _, port, alice, _ = api
  t = alice.task()
  status, body, _ = alice.request("POST", "/api/answer", raw=b"x" * (64 * 1024 + 1),
                                  headers={"Content-Type": "application/json"})
  assert status == 413
  assert alice.request("POST", "/api/answer", raw=b"{}", headers={"Content-Type": "text/plain"}
                       )[0] == 415
  assert alice.request("POST", "/api/answer", raw=b"{not json",
                       headers={"Content-Type": "application/json"})[0] == 400
  assert alice.request("POST", "/api/answer", raw=b"[1, 2]",
                       headers={"Content-Type": "application/json"})[0] == 400
  # No Content-Length at all (a raw socket: http.client always sends one).
  with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
    s.sendall(b"POST /api/finish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
              alice.token.encode() + b"\r\nContent-Type: application/json\r\n\r\n")
    assert s.recv(1000).startswith(b"HTTP/1.1 411")
  # The server still answers normally afterwards.
  assert alice.task()["assignment"] == t["assignment"]


def test_answers_are_idempotent_and_never_go_back_in_time(api):
  store, _, alice, _ = api
  t = alice.task()
  a = t["assignment"]
  key = os.urandom(16).hex()
  first = alice.answer(a, 0, [(5, 6, 100)], seq=2, key=key)
  again = alice.answer(a, 0, [(5, 6, 100)], seq=2, key=key)
  assert first[1] == {"ok": True, "answered": 1}
  assert again[1] == {"ok": True, "answered": 1, "replayed": True}
  stale = alice.answer(a, 0, [(7, 8, 50)], seq=1)           # an older answer arriving late
  assert stale[1]["stale"] is True
  newer = alice.answer(a, 0, [], seq=3)                     # the annotator changed their mind
  assert newer[1] == {"ok": True, "answered": 1}
  view = alice.task()
  assert view["answers"] == {"0": {"absent": True, "seq": 3, "clicks": []}} and view["seq"] == 3
  with store.transaction(write=False) as conn:
    assert conn.execute("SELECT COUNT(*) FROM clicks").fetchone()[0] == 0
  _, bob_key_reuse, _ = Client(alice.port, store.add_annotator("carol")).answer(a, 0, key=key)
  assert bob_key_reuse["error"] == "idempotency key already used"


def test_finish_runs_the_gold_check(api):
  store, _, alice, bob = api
  t = alice.task()
  status, body, _ = alice.finish(t["assignment"])
  assert status == 409 and "6 images are not answered yet" in body["error"]
  t, result = do_task(store, alice, right=True)
  assert result == {"assignment": t["assignment"], "status": "accepted", "gold_right": 2,
                    "gold_total": 2, "min_gold_right": 2}
  assert alice.finish(t["assignment"])[1] == result            # finishing again reports it
  status, body, _ = alice.answer(t["assignment"], 0, [(1, 1, 1)], seq=99)
  assert status == 409 and "already finished (accepted)" in body["error"]
  t2, result2 = do_task(store, bob, right=False)
  assert t2["assignment"] != t["assignment"]
  assert result2["status"] == "rejected" and result2["gold_right"] == 0
  assert alice.request("GET", "/api/me")[1]["accepted"] == 1
  assert bob.request("GET", "/api/me")[1]["rejected"] == 1


def test_rejected_tasks_go_to_someone_else(api):
  store, port, _, bob = api
  t_bob, r = do_task(store, bob, right=False)
  assert r["status"] == "rejected"
  t_bob2 = bob.task()
  dave = Client(port, store.add_annotator("dave"))
  t_dave = dave.task()
  with store.transaction(write=False) as conn:
    task_of = dict(conn.execute("SELECT id, task FROM assignments").fetchall())
  assert task_of[t_bob2["assignment"]] != task_of[t_bob["assignment"]]   # never the same task again
  assert task_of[t_dave["assignment"]] == task_of[t_bob["assignment"]]   # it still needs a pass


def test_no_work_left(tmp_path):
  store = make_store(str(tmp_path), n_work=2, classes=(DOG,), kinds=("1point",), task_size=4)
  with serving(store) as port:
    alice = Client(port, store.add_annotator("alice"))
    do_task(store, alice, right=True)
    assert alice.task() == {"done": True}


# ----------------------------------------------------------------------------------------------
# Export and report.


def test_export_gives_the_builders_click_json(api, tmp_path):
  store, port, alice, bob = api
  tasks = {}
  for client in (alice, bob, alice, bob):
    t, r = do_task(store, client, right=True)
    tasks[t["assignment"]] = t
  _, r = do_task(store, Client(port, store.add_annotator("eve")), right=False)   # rejected
  path = str(tmp_path / "clicks.json")
  counts = export.export(store, path)
  clicks = click_json.load_clicks(path)
  assert counts["images"] == len(clicks)
  assert not any(k.startswith("gold") for k in clicks)
  # Alice and bob did the first 4 tasks: 1Point dog x 2 chunks, 1Point person x 2 chunks.
  assert {t["kind"] for t in tasks.values()} == {"1point"}
  assert sorted(clicks) == [f"work_{i:02d}" for i in range(8)]
  for image, c in clicks.items():
    assert sorted(c["cls"].tolist()) == [DOG, PERSON]     # each image: one dog, one person click
    np.testing.assert_array_equal(c["rank"], [1, 1])
    np.testing.assert_array_equal(c["annotator"], [0, 0])
    np.testing.assert_array_equal(c["time_ms"], [900, 900])
    np.testing.assert_array_equal(c["x"], [24.0, 24.0])
  raw = json.load(open(path))
  # The project served dog and person only: the other 18 classes are unknown, never absent.
  assert all(raw[image]["asked"] == [DOG, PERSON] for image in raw)
  assert raw["work_00"]["clicks"][0] == {"x": 24.0, "y": 20.0, "cls": DOG, "rank": 1,
                                         "annotator": 0, "time_ms": 900}
  export.export(store, path, include_gold=True)
  assert any(k.startswith("gold") for k in click_json.load_clicks(path))


def test_export_orders_annotators_allpoints_first(tmp_path):
  store = make_store(str(tmp_path), n_work=1, classes=(DOG,), task_size=3, redundancy=2)
  with serving(store) as port:
    clients = [Client(port, store.add_annotator(n)) for n in ("a", "b", "c", "d")]
    done = {}
    for c in clients:                     # a, b: the 1Point task (x2); c, d: the AllPoints task (x2)
      t = c.task()
      names = task_images(store, t["assignment"])
      for pos, name in enumerate(names):
        clicks = right_answer(name, t["kind"], t["cls"])
        if name.startswith("work") and t["kind"] == "allpoints":
          clicks = [(10 + len(done), 11, 100), (30, 31, 400)]
        elif name.startswith("work"):
          clicks = [(5 + len(done), 6, 300)]
        assert c.answer(t["assignment"], pos, clicks, seq=1)[0] == 200
      assert c.finish(t["assignment"])[1]["status"] == "accepted"
      done[c.token] = t["kind"]
    assert [done[c.token] for c in clients] == ["1point", "1point", "allpoints", "allpoints"]
  out = export.collect(store)["work_00"]
  # AllPoints annotators c, d -> 0, 1 (ranks 1, 2 each); 1Point annotators a, b -> 2, 3.
  np.testing.assert_array_equal(out["annotator"], [0, 0, 1, 1, 2, 3])
  np.testing.assert_array_equal(out["rank"], [1, 2, 1, 2, 1, 1])
  np.testing.assert_array_equal(out["x"], [12, 30, 13, 30, 5, 6])
  np.testing.assert_array_equal(out["time_ms"], [100, 400, 100, 400, 300, 300])


def test_report_medians_by_hand(tmp_path):
  store = make_store(str(tmp_path), n_work=4, classes=(DOG,), task_size=6, min_gold_right=0)
  with serving(store) as port:
    alice = Client(port, store.add_annotator("alice"))
    for kind in ("1point", "allpoints"):
      t = alice.task()
      assert t["kind"] == kind
      for pos, name in enumerate(task_images(store, t["assignment"])):
        k = int(name[5:7]) if name.startswith("work") else None
        if k is None:                      # gold: absent answers of 1.0 s
          alice.answer(t["assignment"], pos, [], duration_ms=1000)
        elif kind == "1point":             # first clicks 2.0, 2.2, 2.4, 2.6 s
          alice.answer(t["assignment"], pos, [(1, 1, 2000 + 200 * k)], duration_ms=3000)
        else:                              # first click 2.4 s, then +0.8 s and +1.0 s
          alice.answer(t["assignment"], pos, [(1, 1, 2400), (2, 2, 3200), (3, 3, 4200)],
                       duration_ms=5000)
      assert alice.finish(t["assignment"])[1]["status"] == "accepted"
  r = report.compute(store)["kinds"]
  one, allp = r["1point"], r["allpoints"]
  assert one["tasks"] == allp["tasks"] == 1 and one["answers"] == 6
  assert one["first_click_s"] == pytest.approx(2.3)       # median of 2.0, 2.2, 2.4, 2.6
  assert one["absent_s"] == pytest.approx(1.0)
  assert one["further_instance_s"] is None
  assert one["voc_formula_per_image_s"] == pytest.approx(18.5 * 1.0 + 1.5 * 2.3)
  assert allp["first_click_s"] == pytest.approx(2.4)
  assert allp["further_instance_s"] == pytest.approx(0.9)  # median of 0.8, 1.0 (x4 each)
  assert allp["further_instances_per_present"] == pytest.approx(2.0)
  assert allp["voc_formula_per_image_s"] == pytest.approx(18.5 + 1.5 * (2.4 + 0.8 * 0.9))
  # per image: 4 work images of 3.0 s (1Point) / 5.0 s (AllPoints), 2 gold images of 1.0 s each.
  assert one["measured_per_image_s"] == pytest.approx((4 * 3.0 + 2 * 1.0) / 6)
  text = report.format_report(report.compute(store))
  assert "2.30 s" in text and "22.1 s (1Point) / 23.2 s (AllPoints)" in text and "0.9 s" in text


# ----------------------------------------------------------------------------------------------
# The command line.


def _cli(*args, **kwargs):
  return subprocess.run([sys.executable, "-m", "pointseg_jax.annotate", *args], capture_output=True,
                        text=True, timeout=60, **kwargs)


@pytest.mark.e2e
def test_cli_serve_report_export_and_errors(tmp_path):
  images, gold = make_images(str(tmp_path))
  dbf = str(tmp_path / "p.db")
  r = _cli("serve", f"--images={images}", f"--db={dbf}")
  assert r.returncode == 2 and r.stderr.strip() == "error: --gold required"
  r = _cli("serve", f"--images={images}", f"--db={dbf}", f"--gold={gold}", "--classes=dog,horse",
           "--task_size=60")
  assert r.returncode == 2 and "the gold file has 4 images but every task needs gold_per_task=10" in r.stderr
  weak = ("serve", f"--images={images}", f"--db={dbf}", f"--gold={gold}", "--classes=dog",
          "--task_size=5", "--gold_per_task=2", "--min_gold_right=2", "--port=0")
  r = _cli(*weak)     # 2 gold images per task cannot make a meaningful check
  assert r.returncode == 2 and r.stderr.count("\n") == 1 and "pass --allow_weak_gold" in r.stderr
  assert "dog: 2 gold images with it, a blind annotator passes 25% of tasks" in r.stderr
  assert not os.path.exists(dbf)
  proc = subprocess.Popen([sys.executable, "-m", "pointseg_jax.annotate", *weak, "--allow_weak_gold",
                           "--add_annotator=zoe"], stdout=subprocess.PIPE, text=True)
  try:
    serving_line = proc.stdout.readline()
    link = proc.stdout.readline()
    assert serving_line.startswith("serving ") and link.startswith("annotator zoe: http://127.0.0.1:")
    port = int(link.split(":")[3].split("/")[0])
    token = link.strip().split("#token=")[1]
    store = db.Store(dbf)
    t, result = do_task(store, Client(port, token), right=True)
    assert result["status"] == "accepted"
  finally:
    proc.terminate()
    proc.wait(10)
  r = _cli("add-annotator", f"--db={dbf}", "--name=zoe")
  assert r.returncode == 2 and "annotator 'zoe' already exists" in r.stderr
  r = _cli("report", f"--db={dbf}", f"--json={tmp_path / 'r.json'}")
  assert r.returncode == 0 and "median first click" in r.stdout
  assert json.load(open(tmp_path / "r.json"))["kinds"]["1point"]["tasks"] == 1
  r = _cli("export", f"--db={dbf}", f"--output={tmp_path / 'c.json'}")
  assert r.returncode == 0 and "clicks on 3 images" in r.stdout
  assert len(click_json.load_clicks(str(tmp_path / "c.json"))) == 3
  r = _cli("export", f"--db={tmp_path / 'none.db'}", "--output=x.json")
  assert r.returncode == 2 and "not an annotation project" in r.stderr
  r = _cli("frobnicate")
  assert r.returncode == 2 and "usage: python -m pointseg_jax.annotate" in r.stderr
