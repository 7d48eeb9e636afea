"""What the organiser's dashboard shows of a running campaign (GET /api/admin/campaign).

Progress per (task kind, class); per annotator the tasks, accuracy on gold images and time per image
next to the paper's (Bearman et al. 2016, §3: 22.1 s per image for 1Point, 23.2 s for AllPoints,
all 20 VOC classes; `report.py` explains the formula and applies it to the annotator's medians);
and annotators flagged for a look, each with its reasons. The flags are our rules of thumb, not the
paper's: any rejected task, gold accuracy under the acceptance rate over all finished tasks, or a
median answer faster than FAST_ANSWER_S (the paper's fastest step, an absent class, takes ~1 s).
"""
from __future__ import annotations

import collections
import statistics

from pointseg_jax import CLASS_NAMES
from pointseg_jax.annotate import db
from pointseg_jax.annotate import report as report_lib

FAST_ANSWER_S = 0.5          # a median answer faster than this is flagged ...
FAST_MIN_ANSWERS = 10        # ... once the annotator has given this many answers


def progress(store: db.Store) -> list[dict]:
  """Per (kind, class): tasks, tasks complete (redundancy reached), assignments by status, answers."""
  with store.transaction(write=False) as conn:
    rows = conn.execute("SELECT t.id, t.kind, t.cls, a.status, COUNT(a.id) FROM tasks t LEFT JOIN "
                        "assignments a ON a.task = t.id GROUP BY t.id, a.status").fetchall()
    answers = dict(conn.execute("SELECT a.task, COUNT(*) FROM answers an JOIN assignments a ON "
                                "a.id = an.assignment GROUP BY a.task").fetchall())
  tasks = {}
  for task, kind, cls, status, n in rows:
    tasks.setdefault(task, (kind, cls, collections.Counter()))[2][status] += n
  out = {}
  for task, (kind, cls, counts) in sorted(tasks.items()):
    row = out.setdefault((kind, cls), {"kind": kind, "cls": cls, "class_name": CLASS_NAMES[cls],
                                       "tasks": 0, "complete": 0, "open": 0, "accepted": 0,
                                       "rejected": 0, "answers": 0})
    row["tasks"] += 1
    row["complete"] += counts["accepted"] >= store.config.redundancy
    for status in ("open", "accepted", "rejected"):
      row[status] += counts[status]
    row["answers"] += answers.get(task, 0)
  return [out[k] for k in sorted(out, key=lambda k: (store.config.kinds.index(k[0]), k[1]))]


def annotators(store: db.Store) -> list[dict]:
  """Per annotator: token state, tasks by status, gold accuracy, time per image, flags."""
  cfg = store.config
  required = cfg.min_gold_right / cfg.gold_per_task
  with store.transaction(write=False) as conn:
    rows = conn.execute(
        "SELECT an.id, an.name, an.token_sha256 LIKE ?, "
        "COUNT(CASE WHEN a.status = 'open' THEN 1 END), "
        "COUNT(CASE WHEN a.status = 'accepted' THEN 1 END), "
        "COUNT(CASE WHEN a.status = 'rejected' THEN 1 END), "
        "COALESCE(SUM(a.gold_right), 0), COALESCE(SUM(a.gold_total), 0) "
        "FROM annotators an LEFT JOIN assignments a ON a.annotator = an.id "
        "GROUP BY an.id ORDER BY an.name", (db.REVOKED + "%",)).fetchall()
    durations: dict[int, list[float]] = {}
    for who, ms in conn.execute("SELECT a.annotator, an.duration_ms FROM answers an JOIN "
                                "assignments a ON a.id = an.assignment"):
      durations.setdefault(who, []).append(ms / 1000)
  out = []
  for who, name, revoked, open_, acc, rej, right, total in rows:
    times = report_lib.compute(store, include_rejected=True, annotator=who)["kinds"]
    answers = durations.get(who, [])
    median = statistics.median(answers) if answers else None
    accuracy = right / total if total else None
    flags = []
    if rej:
      flags.append(f"{rej} of {acc + rej} finished tasks rejected")
    if accuracy is not None and accuracy < required:
      flags.append(f"gold accuracy {100 * accuracy:.0f}% is below the {100 * required:.0f}% "
                   "a task needs")
    if median is not None and len(answers) >= FAST_MIN_ANSWERS and median < FAST_ANSWER_S:
      flags.append(f"median answer {median:.2f} s (under {FAST_ANSWER_S} s: not looking?)")
    out.append({
        "name": name, "revoked": bool(revoked), "open": open_, "accepted": acc, "rejected": rej,
        "gold_right": right, "gold_total": total, "gold_accuracy": accuracy,
        "answers": len(answers), "median_answer_s": median,
        "per_image_s": {k: {"voc_formula": t["voc_formula_per_image_s"],
                            "measured": t["measured_per_image_s"]} for k, t in times.items()},
        "flags": flags})
  return out


def campaign(store: db.Store) -> dict:
  """Everything the dashboard page shows, in one JSON object."""
  cfg = store.config
  return {"config": {"classes": [CLASS_NAMES[c] for c in cfg.classes], "kinds": list(cfg.kinds),
                     "task_size": cfg.task_size, "gold_per_task": cfg.gold_per_task,
                     "min_gold_right": cfg.min_gold_right, "redundancy": cfg.redundancy},
          "paper_per_image_s": report_lib.PAPER["per_image_s"],
          "progress": progress(store), "annotators": annotators(store)}
