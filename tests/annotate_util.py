"""Shared by the annotation-tool tests: a fabricated image folder with gold boxes, a server in a
thread, and a small HTTP client that speaks the page's API."""
import http.client
import json
import os

import numpy as np
from PIL import Image

from pointseg_jax.annotate import db
from pointseg_jax.annotate import runner

DOG, PERSON = 12, 15
H, W = 40, 48
# Gold image -> boxes [xmin, ymin, xmax, ymax] per class (classes not listed are absent).
GOLD = {
    "gold_0": {DOG: [[4, 4, 20, 20]]},
    "gold_1": {DOG: [[4, 4, 14, 14], [30, 20, 44, 36]], PERSON: [[20, 2, 28, 30]]},
    "gold_2": {PERSON: [[10, 10, 30, 30]]},
    "gold_3": {},
}


def make_images(root, n_work: int = 8, seed: int = 0, gold_boxes=None) -> tuple[str, str]:
  """(images dir, gold file): `n_work` images to annotate + the gold images (`gold_boxes`, default
  GOLD), small JPEGs/PNGs."""
  rng = np.random.default_rng(seed)
  images = os.path.join(root, "images")
  os.makedirs(images, exist_ok=True)
  for i in range(n_work):
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
        os.path.join(images, f"work_{i:02d}.jpg"), quality=90)
  gold = {}
  for name, boxes in (GOLD if gold_boxes is None else gold_boxes).items():
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
        os.path.join(images, name + ".png"))
    gold[name] = [{"cls": int(c), "box": b} for c, bs in boxes.items() for b in bs]
  gold_path = os.path.join(root, "gold.json")
  with open(gold_path, "w") as f:
    json.dump(gold, f)
  return images, gold_path


def make_store(root, **config) -> db.Store:
  images, gold = make_images(root, n_work=config.pop("n_work", 8))
  # 4 gold images, 2 per task: too few for a meaningful check (qc.gold_split), allowed explicitly.
  defaults = dict(classes=(DOG, PERSON), kinds=("1point", "allpoints"), task_size=6,
                  gold_per_task=2, min_gold_right=2, allow_weak_gold=True)
  return db.create(os.path.join(root, "project.db"),
                   db.Config(images_dir=images, **{**defaults, **config}), gold)


def serving(store: db.Store):
  """The server on a free localhost port, in a thread; a context manager yielding its port."""
  return runner.in_thread(store)


class Client:
  """One annotator's HTTP connection (keep-alive, reconnects when the server dropped it)."""

  def __init__(self, port: int, token: str | None, timeout: float = 10):
    self.port, self.token, self.timeout = port, token, timeout
    self.conn = None

  def request(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
    """(status, parsed JSON or bytes, headers)."""
    hdrs = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
    data = raw
    if body is not None:
      data = json.dumps(body).encode()
      hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    for attempt in range(2):
      if self.conn is None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
      try:
        self.conn.request(method, path, body=data, headers=hdrs)
        r = self.conn.getresponse()
        payload = r.read()
        if r.getheader("Connection", "").lower() == "close":
          self.close()
        break
      except (ConnectionError, http.client.HTTPException, OSError):
        self.close()
        if attempt:
          raise
    ctype = r.getheader("Content-Type", "")
    return r.status, (json.loads(payload) if ctype.startswith("application/json") else payload), r

  def close(self):
    if self.conn is not None:
      self.conn.close()
      self.conn = None

  def task(self):
    status, body, _ = self.request("GET", "/api/task")
    assert status == 200, body
    return body

  def answer(self, assignment, pos, clicks=(), absent=None, seq=1, key=None, duration_ms=None):
    clicks = [{"x": float(x), "y": float(y), "t": int(t)} for x, y, t in clicks]
    if duration_ms is None:
      duration_ms = max([1000] + [c["t"] for c in clicks])
    body = {"key": key or os.urandom(16).hex(), "assignment": assignment, "pos": pos,
            "absent": (not clicks) if absent is None else absent, "clicks": clicks,
            "duration_ms": duration_ms, "seq": seq}
    return self.request("POST", "/api/answer", body)

  def finish(self, assignment):
    return self.request("POST", "/api/finish", {"assignment": assignment})


def task_images(store: db.Store, assignment: int) -> list[str]:
  """Image file names of an assignment by position (what the test 'sees' on each image)."""
  with store.transaction(write=False) as conn:
    return [r[0] for r in conn.execute(
        "SELECT i.name FROM assignments a JOIN task_images ti ON ti.task = a.task JOIN images i "
        "ON i.id = ti.image WHERE a.id = ? ORDER BY ti.pos", (assignment,))]


def right_answer(name: str, kind: str, cls: int) -> list[tuple[float, float, int]]:
  """Clicks that pass the gold check on a gold image (box centres), [] when the class is absent;
  on other images one click at the centre."""
  boxes = GOLD.get(os.path.splitext(name)[0], {}).get(cls, [])
  if os.path.splitext(name)[0] not in GOLD:
    return [(W / 2, H / 2, 900)]
  centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes]
  if kind == "1point":
    centres = centres[:1]
  return [(x, y, 800 + 500 * i) for i, (x, y) in enumerate(centres)]


def wrong_answer(name: str, kind: str, cls: int) -> list[tuple[float, float, int]]:
  """Clicks that fail the gold check: 'not present' on a present class, a click on an absent one."""
  if right_answer(name, kind, cls):
    return []
  return [(1.0, 1.0, 700)]


def do_task(store, client, right=True):
  """Answer every image of the client's current task (right or wrong on gold) and finish it."""
  t = client.task()
  names = task_images(store, t["assignment"])
  for pos, name in enumerate(names):
    fn = right_answer if right else wrong_answer
    status, body, _ = client.answer(t["assignment"], pos, fn(name, t["kind"], t["cls"]), seq=pos + 1)
    assert status == 200, body
  status, body, _ = client.finish(t["assignment"])
  assert status == 200, body
  return t, body
