"""Annotation time per task type, next to the paper's numbers (Bearman et al. 2016, §3).

Paper: median 2.4 s to the first click on an image that contains the target class, 0.9 s for every
further instance; ~1 s per absent class (image-level labels, their ref. [23]). With PASCAL VOC's
1.5 present classes per image (18.5 absent of 20) and 0.8 further instances per present class:
  1Point    = 18.5 x 1 s + 1.5 x 2.4 s               = 22.1 s per image
  AllPoints = 18.5 x 1 s + 1.5 x (2.4 s + 0.8 x 0.9 s) = 23.2 s per image
We report the same medians from the page's clock (time from the image being drawn to each click and
to the answer), the paper's formula with our medians, and the measured seconds per image summed
over the classes actually asked.
"""
from __future__ import annotations

import collections
import statistics

from pointseg_jax.annotate import db

PAPER = {"first_click_s": 2.4, "further_instance_s": 0.9, "absent_s": 1.0,
         "per_image_s": {"1point": 22.1, "allpoints": 23.2}}
# PASCAL VOC 2012 statistics the paper's per-image cost uses (§3).
VOC_ABSENT, VOC_PRESENT, VOC_FURTHER = 18.5, 1.5, 0.8
KIND_NAMES = {"1point": "1Point", "allpoints": "AllPoints"}


def _median(values: list[float]) -> float | None:
  return statistics.median(values) if values else None


def compute(store: db.Store, *, include_rejected: bool = False, annotator: int | None = None
            ) -> dict:
  """Timing statistics per task kind (seconds) of the accepted (or all finished) assignments, of
  every annotator or of one (the dashboard's per-annotator times)."""
  statuses = ("accepted", "rejected") if include_rejected else ("accepted",)
  marks = ",".join("?" * len(statuses))
  where = f"a.status IN ({marks})" + ("" if annotator is None else " AND a.annotator = ?")
  params = statuses if annotator is None else (*statuses, annotator)
  with store.transaction(write=False) as conn:
    answers = conn.execute(
        f"SELECT a.id, t.kind, an.pos, ti.image, an.absent, an.duration_ms FROM assignments a "
        f"JOIN tasks t ON t.id = a.task JOIN answers an ON an.assignment = a.id "
        f"JOIN task_images ti ON ti.task = a.task AND ti.pos = an.pos "
        f"WHERE {where}", params).fetchall()
    times = collections.defaultdict(list)
    for aid, pos, t in conn.execute(
        f"SELECT c.assignment, c.pos, c.time_ms FROM clicks c JOIN assignments a ON "
        f"a.id = c.assignment WHERE {where} ORDER BY c.assignment, c.pos, c.rank",
        params):
      times[(aid, pos)].append(t / 1000)
    tasks = dict(conn.execute(f"SELECT t.kind, COUNT(*) FROM assignments a JOIN tasks t ON "
                              f"t.id = a.task WHERE {where} GROUP BY t.kind",
                              params).fetchall())
  out = {"statuses": list(statuses), "kinds": {}}
  for kind in store.config.kinds:
    first, further, absent, extra = [], [], [], []
    per_image = collections.defaultdict(float)
    classes_per_image = collections.Counter()
    rows = [a for a in answers if a[1] == kind]
    for aid, _, pos, image, is_absent, duration in rows:
      per_image[image] += duration / 1000
      classes_per_image[image] += 1
      if is_absent:
        absent.append(duration / 1000)
        continue
      t = times[(aid, pos)]
      first.append(t[0])
      further += [b - a for a, b in zip(t, t[1:])]
      extra.append(len(t) - 1)
    k = {"tasks": tasks.get(kind, 0), "answers": len(rows), "present_answers": len(first),
         "absent_answers": len(absent), "first_click_s": _median(first),
         "further_instance_s": _median(further), "absent_s": _median(absent),
         "further_instances_per_present": (sum(extra) / len(extra)) if extra else None,
         "measured_per_image_s": (sum(per_image.values()) / len(per_image)) if per_image else None,
         "classes_per_image": (sum(classes_per_image.values()) / len(classes_per_image)
                               if classes_per_image else None)}
    if k["first_click_s"] is not None and k["absent_s"] is not None:
      est = VOC_ABSENT * k["absent_s"] + VOC_PRESENT * k["first_click_s"]
      if kind == "allpoints":
        est += VOC_PRESENT * VOC_FURTHER * (k["further_instance_s"] or 0.0)
      k["voc_formula_per_image_s"] = est
    else:
      k["voc_formula_per_image_s"] = None
    out["kinds"][kind] = k
  return out


def _fmt(v: float | None, unit: str = " s") -> str:
  return "—" if v is None else f"{v:.2f}{unit}"


def format_report(r: dict) -> str:
  """The table the `report` command prints."""
  kinds = list(r["kinds"])
  head = ["", *[KIND_NAMES[k] for k in kinds], "paper"]
  paper_per_image = " / ".join(f"{PAPER['per_image_s'][k]} s ({KIND_NAMES[k]})" for k in kinds)
  lines = [
      ("tasks / answers", *[f"{r['kinds'][k]['tasks']} / {r['kinds'][k]['answers']}" for k in kinds],
       ""),
      ("median first click (class present)", *[_fmt(r["kinds"][k]["first_click_s"]) for k in kinds],
       f"{PAPER['first_click_s']} s"),
      ("median each further instance", *[_fmt(r["kinds"][k]["further_instance_s"]) for k in kinds],
       f"{PAPER['further_instance_s']} s"),
      ("median 'not present' answer", *[_fmt(r["kinds"][k]["absent_s"]) for k in kinds],
       f"{PAPER['absent_s']} s (image label)"),
      ("per image, 20 VOC classes (paper's formula)",
       *[_fmt(r["kinds"][k]["voc_formula_per_image_s"]) for k in kinds], paper_per_image),
      ("measured per image, classes asked",
       *[_fmt(r["kinds"][k]["measured_per_image_s"]) +
         (f" ({r['kinds'][k]['classes_per_image']:.1f} classes)"
          if r["kinds"][k]["classes_per_image"] else "") for k in kinds], ""),
  ]
  widths = [max(len(str(row[i])) for row in [head, *lines]) for i in range(len(head))]
  text = [f"Annotation time of {' + '.join(r['statuses'])} tasks (page clock):"]
  for row in [head, *lines]:
    text.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
  text.append(f"paper's formula: {VOC_ABSENT} x 'not present' + {VOC_PRESENT} x (first click"
              f" [+ {VOC_FURTHER} x further instance, AllPoints]), PASCAL VOC 2012 statistics")
  return "\n".join(text)
