"""Accepted answers -> the click JSON the data builders read (docs/clicks.md, extended format).

Per (image, class) the accepted assignments become annotators 0, 1, 2, ...: AllPoints ones first,
then 1Point ones, each in the order they were accepted. This is the layout of the authors' release
(annotator 0 clicked every instance, 1 and 2 one point per class), so the regimes select the same
way: 1Point = rank-1 clicks of annotator 0, AllPoints = annotator 0, 3 annotators = rank-1 clicks of
0, 1, 2. `rank` is the click order within the image, `time_ms` the time from the image appearing to
the click. Gold images are left out unless asked for (they are the check, not the data); only
accepted tasks are exported.

Each image's "asked" list is the classes it has an accepted answer for: a class the project never
served, or whose task for this image was not accepted (yet), is *unknown* for the image, never
absent (issue 29: an image whose objects were all of unasked classes used to export as `[]`, "no
object here", and taught the model those classes were absent).
"""
from __future__ import annotations

import collections

from absl import logging
import numpy as np

from pointseg_jax import files
from pointseg_jax.annotate import db
from pointseg_jax.data import click_json


def collect_with_asked(store: db.Store, *, include_gold: bool = False
                       ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[int]]]:
  """({image id: clicks arrays (y, x, cls, rank, annotator, time_ms)}, {image id: classes asked})
  of the accepted answers."""
  with store.transaction(write=False) as conn:
    answers = conn.execute(
        "SELECT a.id, t.kind, t.cls, ti.pos, i.name, an.absent FROM assignments a "
        "JOIN tasks t ON t.id = a.task JOIN task_images ti ON ti.task = a.task "
        "JOIN images i ON i.id = ti.image JOIN answers an ON an.assignment = a.id AND an.pos = ti.pos "
        "WHERE a.status = 'accepted' AND (? OR i.gold = 0) "
        "ORDER BY i.name, t.cls, t.kind = '1point', a.finished, a.id", (int(include_gold),)).fetchall()
    clicks = collections.defaultdict(list)
    for aid, pos, x, y, t in conn.execute(
        "SELECT c.assignment, c.pos, c.x, c.y, c.time_ms FROM clicks c JOIN assignments a ON "
        "a.id = c.assignment WHERE a.status = 'accepted' ORDER BY c.assignment, c.pos, c.rank"):
      clicks[(aid, pos)].append((x, y, t))
  rows = collections.defaultdict(list)
  slots = collections.Counter()
  classes = collections.defaultdict(set)
  for aid, _, cls, pos, name, _ in answers:
    image = files.image_id(name)
    annotator = slots[(image, cls)]
    slots[(image, cls)] += 1
    classes[image].add(cls)
    for rank, (x, y, t) in enumerate(clicks[(aid, pos)], start=1):
      rows[image].append({"x": x, "y": y, "cls": cls, "rank": rank, "annotator": annotator,
                          "time_ms": t})
  served = set(store.config.classes)
  partial = sorted(i for i, c in classes.items() if c != served)
  if partial:
    logging.warning("%d images have accepted answers for only some of the %d classes of the project; "
                    "their other classes are exported as unknown (\"asked\", docs/clicks.md): %s",
                    len(partial), len(served),
                    ", ".join(partial[:20]) + (" ..." if len(partial) > 20 else ""))
  clicks_by_id = {image: click_json.rows_to_arrays(
      sorted(rows[image], key=lambda r: (r["annotator"], r["cls"], r["rank"])))
                  for image in sorted(classes)}
  return clicks_by_id, {image: sorted(classes[image]) for image in sorted(classes)}


def collect(store: db.Store, *, include_gold: bool = False) -> dict[str, dict[str, np.ndarray]]:
  """{image id: clicks arrays (y, x, cls, rank, annotator, time_ms)} of the accepted answers."""
  return collect_with_asked(store, include_gold=include_gold)[0]


def export(store: db.Store, path: str, *, include_gold: bool = False) -> dict[str, int]:
  """Write the accepted clicks to `path` (click JSON); returns counts for the command's output."""
  clicks, asked = collect_with_asked(store, include_gold=include_gold)
  click_json.write_click_json(path, clicks, asked)
  return {"images": len(clicks), "clicks": int(sum(len(c["x"]) for c in clicks.values()))}
