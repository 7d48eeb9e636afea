"""The annotation project in one SQLite file: images, gold boxes, tasks, annotators, answers, clicks.

Durability (docs/annotate.md, "Storage"): WAL journal with `synchronous=FULL`, one `BEGIN IMMEDIATE`
transaction per request, and the server answers only after the commit, so a click the browser saw
acknowledged survives a crash of the server or the machine. Every answer carries an idempotency
key (a retry returns the stored response and writes nothing) and a per-assignment sequence number
(an older answer never replaces a newer one), and clicks have the primary key (assignment, image,
rank): a click cannot be stored twice.

Tasks follow the paper (§3): one target class, one kind (1Point or AllPoints), `task_size` images
of which `gold_per_task` are gold images planted at random positions. An annotator gets one task at
a time; a task is handed out until `redundancy` annotators have passed its gold check.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import queue
import secrets
import sqlite3
import tempfile
import time
from typing import Iterator, Mapping, Sequence

from absl import logging
import numpy as np

from pointseg_jax import CLASS_NAMES
from pointseg_jax import errors
from pointseg_jax import files
from pointseg_jax.annotate import blind
from pointseg_jax import image_io
from pointseg_jax.annotate import qc


SCHEMA_VERSION = 1
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
               ".webp": "image/webp"}
# Bounds of one answer (security: every input bounded; docs/annotate.md, "Security").
MAX_CLICKS = 100            # AllPoints clicks on one image
MAX_MS = 3_600_000          # one hour on one image
KEY_CHARS = frozenset("0123456789abcdefABCDEF-")
# A revoked annotator's token_sha256 starts with this (never a hex digest; see Store.revoke_token).
REVOKED = "revoked:"
# An open assignment without an answer for this long no longer holds its task's slot.
ACTIVE_S = 3600.0

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, width INTEGER NOT NULL,
                    height INTEGER NOT NULL, gold INTEGER NOT NULL);
CREATE TABLE gold_boxes(image INTEGER NOT NULL REFERENCES images(id), cls INTEGER NOT NULL,
                        xmin REAL NOT NULL, ymin REAL NOT NULL, xmax REAL NOT NULL,
                        ymax REAL NOT NULL);
CREATE TABLE annotators(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                        token_sha256 TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE tasks(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, cls INTEGER NOT NULL);
CREATE TABLE task_images(task INTEGER NOT NULL REFERENCES tasks(id), pos INTEGER NOT NULL,
                         image INTEGER NOT NULL REFERENCES images(id), PRIMARY KEY(task, pos));
CREATE TABLE assignments(id INTEGER PRIMARY KEY, task INTEGER NOT NULL REFERENCES tasks(id),
                         annotator INTEGER NOT NULL REFERENCES annotators(id),
                         started REAL NOT NULL, active REAL NOT NULL, finished REAL,
                         status TEXT NOT NULL CHECK(status IN ('open', 'accepted', 'rejected')),
                         gold_right INTEGER, gold_total INTEGER, UNIQUE(task, annotator));
CREATE INDEX assignments_by_task ON assignments(task, status);
CREATE INDEX assignments_by_annotator ON assignments(annotator, status);
CREATE TABLE answers(assignment INTEGER NOT NULL REFERENCES assignments(id),
                     pos INTEGER NOT NULL, absent INTEGER NOT NULL, duration_ms INTEGER NOT NULL,
                     seq INTEGER NOT NULL, received REAL NOT NULL, PRIMARY KEY(assignment, pos));
CREATE TABLE clicks(assignment INTEGER NOT NULL, pos INTEGER NOT NULL, rank INTEGER NOT NULL,
                    x REAL NOT NULL, y REAL NOT NULL, time_ms INTEGER NOT NULL,
                    PRIMARY KEY(assignment, pos, rank),
                    FOREIGN KEY(assignment, pos) REFERENCES answers(assignment, pos)
                      ON DELETE CASCADE);
CREATE TABLE requests(key TEXT PRIMARY KEY, annotator INTEGER NOT NULL, response TEXT NOT NULL,
                      created REAL NOT NULL);
"""


class RequestError(Exception):
  """A request the server refuses; `status` is its HTTP status, the message says why."""
  status = 400


class NotFound(RequestError):
  status = 404


class Conflict(RequestError):
  status = 409


@dataclasses.dataclass(frozen=True)
class Config:
  """How tasks are made; fixed when the project is created (stored in the database)."""
  images_dir: str
  classes: tuple[int, ...] = tuple(range(1, len(CLASS_NAMES)))
  kinds: tuple[str, ...] = ("1point",)
  task_size: int = 50           # paper: 50-image tasks ...
  gold_per_task: int = 10       # ... with 10 gold images ...
  min_gold_right: int = 8       # ... of which at least 8 must be right
  redundancy: int = 1           # annotators that must pass each task
  seed: int = 0
  allow_weak_gold: bool = False  # plan even where a blind annotator passes > qc.MAX_FALSE_PASS

  def check(self) -> None:
    if not self.classes:
      raise errors.ConfigError("classes: give at least one VOC class")
    for k in self.kinds:
      if k not in qc.KINDS:
        raise errors.ConfigError(f"task kind {k!r}: expected one of {list(qc.KINDS)}")
    if not 1 <= self.gold_per_task < self.task_size:
      raise errors.ConfigError(f"gold_per_task={self.gold_per_task} must be >= 1 and below "
                               f"task_size={self.task_size} (paper: 10 of 50)")
    if not 0 <= self.min_gold_right <= self.gold_per_task:
      raise errors.ConfigError(f"min_gold_right={self.min_gold_right} must be in 0.."
                               f"{self.gold_per_task} (gold_per_task); paper: 8 of 10")
    if self.redundancy < 1:
      raise errors.ConfigError(f"redundancy={self.redundancy} must be >= 1")

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "Config":
    d = json.loads(text)
    return cls(**{**d, "classes": tuple(d["classes"]), "kinds": tuple(d["kinds"])})


def token_hash(token: str) -> str:
  return hashlib.sha256(token.encode("utf-8")).hexdigest()


def scan_images(images_dir: str) -> dict[str, tuple[int, int]]:
  """{file name: (height, width)} of the images directly in `images_dir`.

  Only regular files whose real path lies inside the folder are served (no symlink leads out);
  unreadable images are logged with their names and left out, never silently.
  """
  if not os.path.isdir(images_dir):
    raise errors.MissingInputError(f"{images_dir}: images folder not found")
  root = os.path.realpath(images_dir)
  sizes, bad, outside, stems = {}, [], [], {}
  for entry in sorted(os.scandir(images_dir), key=lambda e: e.name):
    ext = os.path.splitext(entry.name)[1].lower()
    if ext not in IMAGE_TYPES or not entry.is_file():
      continue
    if os.path.dirname(os.path.realpath(entry.path)) != root:
      outside.append(entry.name)
      continue
    try:   # every pixel decoded: a truncated file would be served as a thin strip
      h, w = image_io.size(entry.path)
    except errors.DataError:
      bad.append(entry.name)
      continue
    stem = files.image_id(entry.name)
    if stem in stems:
      raise errors.DataError(f"{images_dir}: {stems[stem]!r} and {entry.name!r} have the same image "
                             "id (file name without extension); rename one")
    stems[stem] = entry.name
    sizes[entry.name] = (h, w)
  if bad:
    logging.warning("%s: %d unreadable images left out: %s", images_dir, len(bad), ", ".join(bad[:20]))
  if outside:
    logging.warning("%s: %d links to files outside the folder left out: %s", images_dir, len(outside),
                    ", ".join(outside[:20]))
  if not sizes:
    raise errors.DataError(f"{images_dir}: no images ({', '.join(sorted(IMAGE_TYPES))}) found")
  return sizes


def plan_tasks(names: Sequence[str], gold: Mapping[str, Sequence[qc.Box]], config: Config
               ) -> list[tuple[str, int, list[str]]]:
  """(kind, class, image names in display order) of every task.

  The non-gold images, in name order, are cut into chunks of task_size - gold_per_task. Per (kind,
  class) the gold images are split into disjoint groups of gold_per_task, each with the same number
  of images containing the class (`qc.gold_split`: a blind annotator passes at most
  qc.MAX_FALSE_PASS of the time, or the project must allow weak gold); chunk k gets group
  k mod #groups, shuffled in, all from a seeded rng. An annotator is never given a task whose gold
  group it has already seen for the same (kind, class) (`Store.current_assignment`), so no image
  recurs within one annotator's tasks of a class: gold images recur exactly as the others do.
  """
  work = sorted(n for n in names if n not in gold)
  if not work:
    raise errors.DataError(f"{config.images_dir}: every image is a gold image; nothing to annotate")
  if len(gold) < config.gold_per_task:
    raise errors.ConfigError(f"the gold file has {len(gold)} images but every task needs "
                             f"gold_per_task={config.gold_per_task}; add gold images or lower "
                             "--gold_per_task (and --min_gold_right)")
  per = config.task_size - config.gold_per_task
  gold_names = sorted(gold)
  splits = {}
  for cls in config.classes:
    present = [g for g in gold_names if any(b.cls == cls for b in gold[g])]
    split = qc.gold_split(len(present), len(gold_names) - len(present), config.gold_per_task,
                          config.min_gold_right)
    splits[cls] = (present, split)
  weak = {c: sp for c, (_, sp) in splits.items() if sp.weak}
  if weak:
    need = qc.min_present(config.gold_per_task, config.min_gold_right)
    what = "; ".join(f"{CLASS_NAMES[c]}: {len(splits[c][0])} gold images with it, a blind "
                     f"annotator passes {sp.false_pass:.0%} of tasks" for c, sp in weak.items())
    rule = (f"at least {need} of the {config.gold_per_task} gold images of each task (and so of "
            "the gold set) must contain the class" if need is not None else
            f"no number of present gold images makes a check of {config.min_gold_right} of "
            f"{config.gold_per_task} meaningful: raise --gold_per_task")
    message = (f"the gold check cannot tell a careless annotator for {len(weak)} classes ({what}): "
               f"{rule} (docs/annotate.md, 'How much gold')")
    if not config.allow_weak_gold:
      raise errors.ConfigError(message + "; add gold images, or pass --allow_weak_gold")
    logging.warning("%s; planned anyway (allow_weak_gold)", message)
  tasks = []
  for kind in config.kinds:
    for cls in config.classes:
      present, split = splits[cls]
      absent = [g for g in gold_names if g not in present]
      rng = np.random.default_rng([config.seed, qc.KINDS.index(kind), cls])
      pos, neg = rng.permutation(present), rng.permutation(absent)
      n_neg = config.gold_per_task - split.present
      groups = [[str(g) for g in pos[i * split.present:(i + 1) * split.present]] +
                [str(g) for g in neg[i * n_neg:(i + 1) * n_neg]] for i in range(split.groups)]
      if kind == config.kinds[0]:
        logging.info("class %s: %d gold images with it, %d without: %d gold groups of %d with it "
                     "(an annotator takes at most %d tasks of it per kind)", CLASS_NAMES[cls],
                     len(present), len(absent), split.groups, split.present, split.groups)
      for k in range(0, len(work), per):
        chunk_rng = np.random.default_rng([config.seed, qc.KINDS.index(kind), cls, k])
        images = work[k:k + per] + groups[(k // per) % split.groups]
        tasks.append((kind, cls, [images[i] for i in chunk_rng.permutation(len(images))]))
  return tasks


class Store:
  """The project database, safe to share between the server's threads (a connection pool)."""

  def __init__(self, path: str):
    self.path = path
    self._pool: queue.LifoQueue = queue.LifoQueue()
    not_project = errors.MissingInputError(
        f"{path}: not an annotation project; create one with "
        "`python -m pointseg_jax.annotate serve --images DIR --gold FILE --db FILE`")
    if not os.path.isfile(path):
      raise not_project
    try:
      with self._conn() as conn:
        if not _table_exists(conn, "meta"):
          raise not_project
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as e:   # e.g. "file is not a database": some other file
      self.close()
      raise errors.MissingInputError(f"{path}: not an SQLite database ({e}); --db takes the "
                                     "project file that serve created, or a new path") from e
    if int(meta.get("schema_version", -1)) != SCHEMA_VERSION:
      raise errors.DataError(f"{path}: schema version {meta.get('schema_version')} is not "
                             f"{SCHEMA_VERSION}, the version this code reads")
    self.config = Config.from_json(meta["config"])

  # -- connections ------------------------------------------------------------------------------

  @contextlib.contextmanager
  def _conn(self) -> Iterator[sqlite3.Connection]:
    try:
      conn = self._pool.get_nowait()
    except queue.Empty:
      conn = connect(self.path)
    try:
      yield conn
    finally:
      self._pool.put(conn)

  @contextlib.contextmanager
  def transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
    """One transaction: BEGIN IMMEDIATE (writes: takes the write lock up front) or BEGIN."""
    with self._conn() as conn:
      conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
      try:
        yield conn
        conn.execute("COMMIT")
      except BaseException:
        if conn.in_transaction:   # also when COMMIT itself failed: the pooled connection stays usable
          conn.execute("ROLLBACK")
        raise

  def close(self) -> None:
    while True:
      try:
        self._pool.get_nowait().close()
      except queue.Empty:
        return

  # -- annotators -------------------------------------------------------------------------------

  def add_annotator(self, name: str) -> str:
    """Create annotator `name` and return its secret token (only its SHA-256 is stored)."""
    if not name or len(name) > 64 or not name.isprintable():
      raise errors.ConfigError(f"annotator name {name!r}: use 1..64 printable characters")
    token = secrets.token_urlsafe(32)
    try:
      with self.transaction() as conn:
        conn.execute("INSERT INTO annotators(name, token_sha256, created) VALUES (?, ?, ?)",
                     (name, token_hash(token), time.time()))
    except sqlite3.IntegrityError as e:
      raise errors.ConfigError(f"annotator {name!r} already exists in {self.path}") from e
    return token

  def add_first_annotator(self, name: str) -> str | None:
    """Create annotator `name` if the project has no annotator yet (atomic: two servers started on
    one new project create it once); its token, or None when annotators exist."""
    token = secrets.token_urlsafe(32)
    with self.transaction() as conn:
      if conn.execute("SELECT 1 FROM annotators LIMIT 1").fetchone() is not None:
        return None
      conn.execute("INSERT INTO annotators(name, token_sha256, created) VALUES (?, ?, ?)",
                   (name, token_hash(token), time.time()))
    return token

  def annotator(self, token: str) -> int | None:
    """The annotator id of a token, or None (also for a revoked one: no hash equals its mark)."""
    with self._conn() as conn:
      row = conn.execute("SELECT id FROM annotators WHERE token_sha256 = ?",
                         (token_hash(token),)).fetchone()
    return None if row is None else row[0]

  def annotator_names(self) -> dict[int, str]:
    with self._conn() as conn:
      return dict(conn.execute("SELECT id, name FROM annotators").fetchall())

  def revoked(self) -> set[int]:
    """Ids of the annotators whose token is revoked."""
    with self._conn() as conn:
      return {r[0] for r in conn.execute("SELECT id FROM annotators WHERE token_sha256 LIKE ?",
                                         (REVOKED + "%",))}

  def rotate_token(self, name: str) -> str:
    """A new token for annotator `name` (the old one stops working at once); their work stays."""
    token = secrets.token_urlsafe(32)
    self._set_token_hash(name, token_hash(token))
    return token

  def revoke_token(self, name: str) -> None:
    """Revoke `name`'s token: every request with it gets 401 from now on (rotate to re-admit).

    The stored hash becomes REVOKED + random hex, which no SHA-256 hex digest equals, so the row,
    its assignments and its answers stay as they were."""
    self._set_token_hash(name, REVOKED + secrets.token_hex(16))

  def _set_token_hash(self, name: str, value: str) -> None:
    with self.transaction() as conn:
      if conn.execute("UPDATE annotators SET token_sha256 = ? WHERE name = ?",
                      (value, name)).rowcount != 1:
        raise NotFound(f"no annotator {name!r}")

  # -- the organiser ----------------------------------------------------------------------------

  def ensure_admin_token(self) -> str | None:
    """Create the dashboard's admin token if the project has none; the token, else None."""
    token = secrets.token_urlsafe(32)
    with self.transaction() as conn:
      cur = conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('admin_token_sha256', ?)",
                         (token_hash(token),))
    return token if cur.rowcount == 1 else None

  def rotate_admin_token(self) -> str:
    """A new admin token; the old one stops working at once."""
    token = secrets.token_urlsafe(32)
    with self.transaction() as conn:
      conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('admin_token_sha256', ?)",
                   (token_hash(token),))
    return token

  def is_admin(self, token: str) -> bool:
    with self._conn() as conn:
      row = conn.execute("SELECT value FROM meta WHERE key = 'admin_token_sha256'").fetchone()
    return row is not None and secrets.compare_digest(row[0], token_hash(token))

  # -- tasks ------------------------------------------------------------------------------------

  def current_assignment(self, annotator: int) -> dict | None:
    """The annotator's open task (or a new one), as the page needs it; None when no work is left."""
    now = time.time()
    with self.transaction() as conn:
      row = conn.execute("SELECT id FROM assignments WHERE annotator = ? AND status = 'open' "
                         "ORDER BY id LIMIT 1", (annotator,)).fetchone()
      if row is None:
        task = self._next_task(conn, annotator, now)
        if task is None:
          return None
        cur = conn.execute("INSERT INTO assignments(task, annotator, started, active, status) "
                           "VALUES (?, ?, ?, ?, 'open')", (task, annotator, now, now))
        row = (cur.lastrowid,)
      return self._view(conn, row[0])

  def _next_task(self, conn: sqlite3.Connection, annotator: int, now: float) -> int | None:
    """The first task (by id) that still needs annotators, that `annotator` never had, and whose
    gold images it has not seen in a task of the same kind and class (plan_tasks: gold would
    recur, and be recognisable)."""
    seen = {tuple(r) for r in conn.execute(
        "SELECT t.kind, t.cls, ti.image FROM assignments a JOIN tasks t ON t.id = a.task JOIN "
        "task_images ti ON ti.task = a.task JOIN images i ON i.id = ti.image WHERE a.annotator = ? "
        "AND i.gold = 1", (annotator,))}
    for task, kind, cls in conn.execute(
        "SELECT t.id, t.kind, t.cls FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM assignments a "
        "WHERE a.task = t.id AND a.annotator = ?) AND (SELECT COUNT(*) FROM assignments a WHERE "
        "a.task = t.id AND (a.status = 'accepted' OR (a.status = 'open' AND a.active > ?))) < ? "
        "ORDER BY t.id", (annotator, now - ACTIVE_S, self.config.redundancy)):
      gold = conn.execute("SELECT ti.image FROM task_images ti JOIN images i ON i.id = ti.image "
                          "WHERE ti.task = ? AND i.gold = 1", (task,)).fetchall()
      if not any((kind, cls, g) in seen for (g,) in gold):
        return task
    return None

  def _view(self, conn: sqlite3.Connection, assignment: int) -> dict:
    kind, cls = conn.execute("SELECT t.kind, t.cls FROM assignments a JOIN tasks t ON t.id = a.task "
                             "WHERE a.id = ?", (assignment,)).fetchone()
    images = [{"pos": p, "width": w, "height": h} for p, w, h in conn.execute(
        "SELECT ti.pos, i.width, i.height FROM assignments a JOIN task_images ti ON ti.task = a.task "
        "JOIN images i ON i.id = ti.image WHERE a.id = ? ORDER BY ti.pos", (assignment,))]
    answers = {}
    for pos, absent, seq in conn.execute("SELECT pos, absent, seq FROM answers WHERE assignment = ?",
                                         (assignment,)):
      answers[pos] = {"absent": bool(absent), "seq": seq, "clicks": []}
    for pos, x, y, t in conn.execute("SELECT pos, x, y, time_ms FROM clicks WHERE assignment = ? "
                                     "ORDER BY pos, rank", (assignment,)):
      answers[pos]["clicks"].append({"x": x, "y": y, "t": t})
    return {"assignment": assignment, "kind": kind, "cls": cls, "class_name": CLASS_NAMES[cls],
            "images": images, "answers": answers,
            "seq": max([a["seq"] for a in answers.values()], default=0), "max_clicks": MAX_CLICKS}

  def _open_assignment(self, conn: sqlite3.Connection, annotator: int, assignment) -> sqlite3.Row:
    if not isinstance(assignment, int) or isinstance(assignment, bool):
      raise RequestError("assignment must be an integer")
    row = conn.execute("SELECT a.id, a.status, t.kind, t.cls, a.task FROM assignments a JOIN tasks t "
                       "ON t.id = a.task WHERE a.id = ? AND a.annotator = ?",
                       (assignment, annotator)).fetchone()
    if row is None:   # another annotator's assignment looks exactly like a missing one
      raise NotFound(f"no assignment {assignment} for this annotator")
    return row

  def image_file(self, annotator: int, assignment: int, pos: int) -> str:
    """Path of image `pos` of an open assignment of `annotator` (nobody else's, nothing else)."""
    with self.transaction(write=False) as conn:
      a = self._open_assignment(conn, annotator, assignment)
      if a["status"] != "open":
        raise NotFound(f"assignment {assignment} is finished")
      row = conn.execute("SELECT i.name FROM task_images ti JOIN images i ON i.id = ti.image "
                         "WHERE ti.task = ? AND ti.pos = ?", (a["task"], pos)).fetchone()
    if row is None:
      raise NotFound(f"assignment {assignment} has no image {pos}")
    root = os.path.realpath(self.config.images_dir)
    path = os.path.realpath(os.path.join(root, row[0]))
    if os.path.dirname(path) != root:   # names come from the folder scan; checked again anyway
      raise NotFound("image outside the images folder")
    return path

  def image_bytes(self, annotator: int, assignment: int, pos: int) -> tuple[bytes, str]:
    """(bytes, content type) of image `pos` as the page gets it: every image re-encoded with fresh
    noise (`blind.encode`), so a gold image is never recognisable by its bytes."""
    return blind.encode(self.image_file(annotator, assignment, pos)), blind.CONTENT_TYPE

  # -- answers ----------------------------------------------------------------------------------

  def save_answer(self, annotator: int, body: Mapping) -> dict:
    """Store one image's answer; idempotent in body['key']; returns the response to send."""
    body = _check_fields(body, {"key", "assignment", "pos", "absent", "clicks", "duration_ms",
                                "seq"})
    key = _check_key(body["key"])
    with self.transaction() as conn:
      row = conn.execute("SELECT annotator, response FROM requests WHERE key = ?", (key,)).fetchone()
      if row is not None:
        if row[0] != annotator:
          raise Conflict("idempotency key already used")
        return {**json.loads(row[1]), "replayed": True}
      a = self._open_assignment(conn, annotator, body["assignment"])
      if a["status"] != "open":
        raise Conflict(f"assignment {a['id']} is already finished ({a['status']})")
      pos = _int(body["pos"], "pos", 0, None)
      image = conn.execute("SELECT i.width, i.height FROM task_images ti JOIN images i ON "
                           "i.id = ti.image WHERE ti.task = ? AND ti.pos = ?",
                           (a["task"], pos)).fetchone()
      if image is None:
        raise RequestError(f"pos {pos} is not an image of assignment {a['id']}")
      absent, clicks, duration = _check_answer(a["kind"], image[0], image[1], body)
      seq = _int(body["seq"], "seq", 1, 2**62)
      prev = conn.execute("SELECT seq FROM answers WHERE assignment = ? AND pos = ?",
                          (a["id"], pos)).fetchone()
      now = time.time()
      if prev is not None and prev[0] >= seq:
        response = {"ok": True, "stale": True}
      else:
        conn.execute("DELETE FROM answers WHERE assignment = ? AND pos = ?", (a["id"], pos))
        conn.execute("INSERT INTO answers(assignment, pos, absent, duration_ms, seq, received) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (a["id"], pos, int(absent), duration, seq, now))
        conn.executemany("INSERT INTO clicks(assignment, pos, rank, x, y, time_ms) VALUES "
                         "(?, ?, ?, ?, ?, ?)",
                         [(a["id"], pos, r + 1, x, y, t) for r, (x, y, t) in enumerate(clicks)])
        conn.execute("UPDATE assignments SET active = ? WHERE id = ?", (now, a["id"]))
        response = {"ok": True}
      response["answered"] = conn.execute("SELECT COUNT(*) FROM answers WHERE assignment = ?",
                                          (a["id"],)).fetchone()[0]
      conn.execute("INSERT INTO requests(key, annotator, response, created) VALUES (?, ?, ?, ?)",
                   (key, annotator, json.dumps(response), now))
    return response

  def finish(self, annotator: int, body: Mapping) -> dict:
    """Run the gold check of a fully answered assignment (idempotent: a finished one is reported)."""
    body = _check_fields(body, {"assignment"})
    with self.transaction() as conn:
      a = self._open_assignment(conn, annotator, body["assignment"])
      if a["status"] == "open":
        positions = [r[0] for r in conn.execute(
            "SELECT ti.pos FROM task_images ti LEFT JOIN answers an ON an.assignment = ? AND "
            "an.pos = ti.pos WHERE ti.task = ? AND an.pos IS NULL ORDER BY ti.pos",
            (a["id"], a["task"]))]
        if positions:
          raise Conflict(f"{len(positions)} images are not answered yet (positions {positions[:10]})")
        results = []
        for pos, image, absent in conn.execute(
            "SELECT ti.pos, ti.image, an.absent FROM task_images ti JOIN images i ON i.id = ti.image "
            "JOIN answers an ON an.assignment = ? AND an.pos = ti.pos WHERE ti.task = ? AND i.gold = 1",
            (a["id"], a["task"])).fetchall():
          boxes = [qc.Box(a["cls"], *b) for b in conn.execute(
              "SELECT xmin, ymin, xmax, ymax FROM gold_boxes WHERE image = ? AND cls = ?",
              (image, a["cls"]))]
          clicks = conn.execute("SELECT x, y FROM clicks WHERE assignment = ? AND pos = ? ORDER BY "
                                "rank", (a["id"], pos)).fetchall()
          results.append(qc.gold_right(a["kind"], boxes, bool(absent), [tuple(c) for c in clicks]))
        ok, right, total = qc.accepted(results, self.config.min_gold_right)
        conn.execute("UPDATE assignments SET status = ?, finished = ?, gold_right = ?, "
                     "gold_total = ? WHERE id = ?",
                     ("accepted" if ok else "rejected", time.time(), right, total, a["id"]))
      status, right, total = conn.execute("SELECT status, gold_right, gold_total FROM assignments "
                                          "WHERE id = ?", (a["id"],)).fetchone()
    return {"assignment": a["id"], "status": status, "gold_right": right, "gold_total": total,
            "min_gold_right": self.config.min_gold_right}

  def progress(self, annotator: int) -> dict:
    with self.transaction(write=False) as conn:
      name = conn.execute("SELECT name FROM annotators WHERE id = ?", (annotator,)).fetchone()[0]
      counts = dict(conn.execute("SELECT status, COUNT(*) FROM assignments WHERE annotator = ? "
                                 "GROUP BY status", (annotator,)).fetchall())
    return {"name": name, **{s: counts.get(s, 0) for s in ("open", "accepted", "rejected")}}


# ------------------------------------------------------------------------------------------------
# Creating and opening.


def connect(path: str) -> sqlite3.Connection:
  """A connection in autocommit mode (transactions are explicit) with WAL and full fsync."""
  conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
  conn.row_factory = sqlite3.Row
  conn.execute("PRAGMA journal_mode = WAL")
  conn.execute("PRAGMA synchronous = FULL")
  conn.execute("PRAGMA foreign_keys = ON")
  conn.execute("PRAGMA busy_timeout = 60000")
  return conn


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
  return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (name,)).fetchone() is not None


def create(path: str, config: Config, gold_path: str) -> Store:
  """Create the project database at `path`: scan images, read gold boxes, plan every task.

  Safe between processes: each builds its own temporary file and hard-links it to `path`, which
  fails when `path` exists, so the first one to finish wins and a later one opens the winner's file
  (refusing it if it was made with other settings) and never replaces a database in use.
  """
  config.check()
  if os.path.exists(path):
    raise errors.WorkdirError(f"{path}: already exists; open it with serve --db (or pick a new file)")
  config = dataclasses.replace(config, images_dir=os.path.realpath(config.images_dir))
  sizes = scan_images(config.images_dir)
  gold = qc.read_gold(gold_path, sizes)
  tasks = plan_tasks(list(sizes), gold, config)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".creating")
  os.close(fd)
  try:
    _write_project(tmp, config, gold_path, sizes, gold, tasks)
    try:
      os.link(tmp, path)        # atomic and never overwrites: exactly one creator wins
    except FileExistsError:
      store = Store(path)
      if store.config != config:
        store.close()
        raise errors.WorkdirError(  # pylint: disable=raise-missing-from
            f"{path}: another process created this project meanwhile with other settings "
            f"({store.config}); use its settings or a new --db")
      logging.info("%s: created meanwhile by another process; using it", path)
      return store
  finally:
    os.remove(tmp)
  logging.info("%s: %d images (%d gold), %d tasks of %d images", path, len(sizes), len(gold),
               len(tasks), config.task_size)
  return Store(path)


def _write_project(tmp: str, config: Config, gold_path: str, sizes, gold, tasks) -> None:
  # A rollback journal (not WAL) while creating: the finished file is complete on its own and can
  # be linked into place; Store opens it in WAL mode.
  conn = sqlite3.connect(tmp, isolation_level=None)
  try:
    conn.execute("PRAGMA synchronous = FULL")
    conn.executescript(_SCHEMA)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                     [("schema_version", str(SCHEMA_VERSION)), ("config", config.to_json()),
                      ("gold_file", os.path.abspath(gold_path))])
    ids = {}
    for name, (h, w) in sizes.items():
      ids[name] = conn.execute("INSERT INTO images(name, width, height, gold) VALUES (?, ?, ?, ?)",
                               (name, w, h, int(name in gold))).lastrowid
    conn.executemany("INSERT INTO gold_boxes(image, cls, xmin, ymin, xmax, ymax) VALUES "
                     "(?, ?, ?, ?, ?, ?)",
                     [(ids[n], b.cls, b.xmin, b.ymin, b.xmax, b.ymax) for n, bs in gold.items()
                      for b in bs])
    for kind, cls, names in tasks:
      task = conn.execute("INSERT INTO tasks(kind, cls) VALUES (?, ?)", (kind, cls)).lastrowid
      conn.executemany("INSERT INTO task_images(task, pos, image) VALUES (?, ?, ?)",
                       [(task, p, ids[n]) for p, n in enumerate(names)])
    conn.execute("COMMIT")
  finally:
    conn.close()


# ------------------------------------------------------------------------------------------------
# Request validation (every field typed and bounded; unknown fields refused).


def _check_fields(body, allowed: set[str]) -> Mapping:
  if not isinstance(body, dict):
    raise RequestError("request body must be a JSON object")
  unknown, missing = set(body) - allowed, allowed - set(body)
  if unknown or missing:
    raise RequestError(f"fields {sorted(unknown)} are not known" if unknown
                       else f"fields {sorted(missing)} are missing")
  return body


def _check_key(key) -> str:
  if not isinstance(key, str) or not 16 <= len(key) <= 64 or not set(key) <= KEY_CHARS:
    raise RequestError("key must be 16..64 hex characters (the answer's idempotency key)")
  return key


def _int(value, field: str, lo: int, hi: int | None) -> int:
  if isinstance(value, bool) or not isinstance(value, int):
    raise RequestError(f"{field} must be an integer, got {value!r}")
  if value < lo or (hi is not None and value > hi):
    raise RequestError(f"{field} = {value} is outside {lo}..{hi if hi is not None else ''}")
  return value


def _check_answer(kind: str, width: int, height: int, body: Mapping
                  ) -> tuple[bool, list[tuple[float, float, int]], int]:
  absent = body["absent"]
  if not isinstance(absent, bool):
    raise RequestError("absent must be true or false")
  duration = _int(body["duration_ms"], "duration_ms", 0, MAX_MS)
  raw = body["clicks"]
  if not isinstance(raw, list) or len(raw) > MAX_CLICKS:
    raise RequestError(f"clicks must be a list of at most {MAX_CLICKS} clicks")
  clicks = []
  for c in raw:
    c = _check_fields(c, {"x", "y", "t"})
    x, y = c["x"], c["y"]
    for v, name, hi in ((x, "x", width), (y, "y", height)):
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RequestError(f"click {name} must be a finite number, got {v!r}")
      if not 0 <= v < hi:
        raise RequestError(f"click {name} = {v} is outside the image (0 <= {name} < {hi})")
    t = _int(c["t"], "click t", 0, duration)
    if clicks and t < clicks[-1][2]:
      raise RequestError("click times must not decrease (clicks are sent in click order)")
    clicks.append((float(x), float(y), t))
  if absent and clicks:
    raise RequestError("an image marked 'not present' cannot have clicks")
  if not absent and not clicks:
    raise RequestError("an image without clicks must be marked 'not present'")
  if kind == "1point" and len(clicks) > 1:
    raise RequestError("a 1Point task takes one click per image")
  return absent, clicks, duration
