"""Issue 29: a gold check that cannot be gamed, and labels that are never silently wrong.

The check's false-pass probability by hand and against the real rule; weak gold sets refused;
"not present" everywhere fails; AllPoints counts instances, not clicks; gold images do not recur
within an annotator's tasks of a class and are never served as the same bytes (the hashing attack
of the issue, measured); a served class subset exports as "asked", which reaches the batch as
`known`.
"""
import collections
import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from pointseg_jax import CLASS_NAMES, errors
from pointseg_jax.annotate import db
from pointseg_jax.annotate import export
from pointseg_jax.annotate import qc

from annotate_util import DOG, PERSON, Client, make_images, serving, task_images

COW = CLASS_NAMES.index("cow")


# ----------------------------------------------------------------------------------------------
# The false-pass probability and the minimum gold.


def test_false_pass_probability_by_hand():
  # 1 of 2 gold images present, both must be right: "not present" w.p. r -> r (1 - r), max 1/4.
  assert qc.false_pass_probability(1, 2, 2) == pytest.approx(0.25)
  # The paper's 8 of 10 with 5 present: at r = 1/2 the right count is Bin(10, 1/2); P(>= 8) = 56/1024.
  assert qc.false_pass_probability(5, 10, 8) == pytest.approx(56 / 1024)
  # <= 2 present: "not present" everywhere gets >= 8 right; >= 8 present: a click everywhere does.
  for p in (0, 1, 2, 8, 9, 10):
    assert qc.false_pass_probability(p, 10, 8) == 1.0
  # 4 of 4 right with 2 present: r^2 (1 - r)^2, max 1/16 at r = 1/2.
  assert qc.false_pass_probability(2, 4, 4) == pytest.approx(1 / 16)
  assert qc.min_present(10, 8) == 4 and qc.min_present(4, 4) == 2 and qc.min_present(2, 2) is None


@pytest.mark.parametrize("n_pos,n_neg,weak", [
    (4, 6, False), (6, 4, False), (5, 5, False), (4, 30, False), (30, 4, False),
    (3, 30, True), (30, 3, True),
])
def test_gold_set_needs_4_with_4_without_10_in_all(n_pos, n_neg, weak):
  """docs/annotate.md's condition for the paper's 8 of 10 (p = 4, 5 or 6 feasible)."""
  assert qc.gold_split(n_pos, n_neg, 10, 8).weak is weak
  assert qc.gold_split(4, 4, 10, 8) is None       # fewer than 10 gold images: no task at all


def test_false_pass_probability_is_the_real_rules():
  """Blind annotators simulated against qc.gold_right / qc.accepted: the pass rate of the best
  blind strategy matches the formula (5 present of 10, 8 needed; clicks always in a box)."""
  rng = np.random.default_rng(0)
  box = qc.Box(DOG, 0, 0, 10, 10)
  passed = 0
  n = 20000
  for _ in range(n):
    results = []
    for k in range(10):
      present = k < 5
      absent = rng.random() < 0.5
      results.append(qc.gold_right("1point", [box] if present else [], absent,
                                   [] if absent else [(5.0, 5.0)]))
    passed += qc.accepted(results, 8)[0]
  assert passed / n == pytest.approx(56 / 1024, abs=0.006)


def _gold(n_gold, with_cls):
  """{gold name: boxes}: `with_cls` {class: gold indices containing it}."""
  gold = {f"gold_{i:02d}.png": [] for i in range(n_gold)}
  for cls, idx in with_cls.items():
    for i in idx:
      gold[f"gold_{i:02d}.png"].append(qc.Box(cls, 0, 0, 10, 10))
  return gold


def test_weak_gold_set_is_refused_cow_in_2_of_20():
  """The issue's case: cow in 2 of 20 gold images; "not present" everywhere passed every cow task."""
  gold = _gold(20, {COW: [0, 1], DOG: range(10)})
  names = [f"work_{i:02d}.jpg" for i in range(80)] + list(gold)
  config = db.Config(images_dir="x", classes=(COW, DOG))
  with pytest.raises(errors.ConfigError) as e:
    db.plan_tasks(names, gold, config)
  message = str(e.value)
  assert "for 1 classes (cow: 2 gold images with it, a blind annotator passes 100% of tasks)" in message
  assert "at least 4 of the 10 gold images of each task" in message and "--allow_weak_gold" in message
  tasks = db.plan_tasks(names, gold, db.Config(images_dir="x", classes=(COW, DOG),
                                               allow_weak_gold=True))
  for kind, cls, images in tasks:
    gold_images = [n for n in images if n in gold]
    assert len(gold_images) == 10
    n_present = sum(any(b.cls == cls for b in gold[n]) for n in gold_images)
    # "Not present" everywhere gets the absent gold right: it passes cow (why it is refused), fails dog.
    all_absent = [qc.gold_right(kind, [b for b in gold[n] if b.cls == cls], True, [])
                  for n in gold_images]
    assert qc.accepted(all_absent, 8)[0] == (cls == COW)
    assert n_present == (1 if cls == COW else 5)


def test_gold_groups_are_disjoint_and_balanced():
  gold = _gold(30, {DOG: range(12)})
  names = [f"work_{i:02d}.jpg" for i in range(200)] + list(gold)
  tasks = db.plan_tasks(names, gold, db.Config(images_dir="x", classes=(DOG,)))
  groups = collections.Counter(frozenset(n for n in images if n in gold) for _, _, images in tasks)
  # 12 with dog, 18 without: 5 present per task (5.5 % false pass) leaves 2 groups; 4 present
  # (6.9 %) leaves 3 groups (12 / 4, 18 / 6): more tasks per annotator, still under 10 %.
  assert len(groups) == 3 and len(tasks) == 5
  seen = set()
  for g in groups:
    assert not g & seen and len(g) == 10
    assert sum(n in {f"gold_{i:02d}.png" for i in range(12)} for n in g) == 4
    seen |= g


# ----------------------------------------------------------------------------------------------
# AllPoints: distinct instances hit, not clicks.

THREE = [qc.Box(DOG, 0, 0, 10, 10), qc.Box(DOG, 5, 5, 15, 15), qc.Box(DOG, 8, 0, 20, 9)]


@pytest.mark.parametrize("clicks,right", [
    ([(9.0, 6.0)] * 3, False),                          # three clicks on one pixel in all 3 boxes
    ([(9.0, 6.0), (9.5, 6.5), (9.2, 6.9)], False),      # the same pixel, sub-pixel apart
    ([(1.0, 1.0), (1.5, 2.5), (3.0, 3.0)], False),      # three pixels of the first instance only
    ([(1.0, 1.0), (12.0, 12.0), (18.0, 2.0)], True),    # one click per instance
    ([(9.0, 6.0), (12.0, 12.0), (18.0, 2.0)], True),    # the overlap can stand for the first
    ([(1.0, 1.0), (12.0, 12.0), (18.0, 2.0), (2.0, 2.0)], True),   # an extra click in a box
    ([(1.0, 1.0), (12.0, 12.0), (18.0, 2.0), (30.0, 30.0)], False),  # a click in no box
])
def test_allpoints_counts_instances_hit(clicks, right):
  assert qc.gold_right("allpoints", THREE, False, clicks) is right


def test_absent_answer_on_a_present_gold_image_is_wrong():
  assert not qc.gold_right("1point", THREE, True, [])
  assert not qc.gold_right("allpoints", THREE, True, [])
  assert qc.gold_right("1point", [], True, [])


# ----------------------------------------------------------------------------------------------
# Through the server: "not present" everywhere fails; gold never recurs; bytes never repeat.

# 12 gold images: dog in 0..5, person in 3..8 (6 with each class, 6 without).
GOLD12 = {f"gold_{i:02d}": {**({DOG: [[4, 4, 20, 20]]} if i < 6 else {}),
                            **({PERSON: [[20, 2, 28, 30]]} if 3 <= i < 9 else {})}
          for i in range(12)}


def _project(tmp_path, n_work=16, **config):
  images, gold = make_images(str(tmp_path), n_work=n_work, gold_boxes=GOLD12)
  defaults = dict(classes=(DOG, PERSON), kinds=("1point",), task_size=8, gold_per_task=4,
                  min_gold_right=4)
  return db.create(str(tmp_path / "p.db"), db.Config(images_dir=images, **{**defaults, **config}),
                   gold)


def _answer_all(store, client, answer):
  t = client.task()
  names = task_images(store, t["assignment"])
  for pos, name in enumerate(names):
    status, body, _ = client.answer(t["assignment"], pos, answer(name, t["cls"]), seq=pos + 1)
    assert status == 200, body
  status, body, _ = client.finish(t["assignment"])
  assert status == 200, body
  return t, names, body


def _truth(name, cls):
  boxes = GOLD12.get(os.path.splitext(name)[0], {}).get(cls, [])
  if not name.startswith("gold"):
    return [(1.0, 1.0, 500)]
  return [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, 800) for b in boxes[:1]]


def test_not_present_everywhere_fails(tmp_path):
  store = _project(tmp_path)
  with serving(store) as port:
    lazy = Client(port, store.add_annotator("lazy"))
    t, names, result = _answer_all(store, lazy, lambda name, cls: [])
    assert result["status"] == "rejected" and (result["gold_right"], result["gold_total"]) == (2, 4)
    # Clicking everywhere (even inside every present box) fails too: the absent gold are wrong.
    clicker = Client(port, store.add_annotator("clicker"))
    _, _, result = _answer_all(store, clicker, lambda name, cls: _truth(name, cls) or [(1.0, 1.0, 5)])
    assert result["status"] == "rejected" and result["gold_right"] == 2
    honest = Client(port, store.add_annotator("honest"))
    _, _, result = _answer_all(store, honest, _truth)
    assert result["status"] == "accepted" and result["gold_right"] == 4


def test_hashing_served_images_finds_no_gold(tmp_path):
  """The issue's attack: hash every served image and flag those seen in an earlier task of the same
  class. Before: 5-6 of 10 gold images in a class's 2nd task, 8-10 in its 4th. Now: none, because
  no image recurs within an annotator's tasks of a class, and no two serves share bytes."""
  store = _project(tmp_path)    # 16 work images in chunks of 4: 4 tasks per class; 3 gold groups
  with serving(store) as port:
    alice = Client(port, store.add_annotator("alice"))
    served = collections.defaultdict(list)     # class -> [(set of hashes, names, gold names)]
    all_hashes = []
    while True:
      t = alice.task()
      if t.get("done"):
        break
      names = task_images(store, t["assignment"])
      hashes = []
      for pos in range(len(names)):
        status, body, r = alice.request("GET", f"/api/image?assignment={t['assignment']}&pos={pos}")
        assert status == 200 and r.getheader("Content-Type") == "image/jpeg"
        hashes.append(hashlib.sha256(body).hexdigest())
        again = alice.request("GET", f"/api/image?assignment={t['assignment']}&pos={pos}")[1]
        assert hashlib.sha256(again).hexdigest() != hashes[-1]   # every serve is new bytes
      all_hashes += hashes
      served[t["cls"]].append((hashes, names))
      for pos, name in enumerate(names):
        assert alice.answer(t["assignment"], pos, _truth(name, t["cls"]), seq=1)[0] == 200
      assert alice.finish(t["assignment"])[1]["status"] == "accepted"
    assert len(set(all_hashes)) == len(all_hashes)
    for cls, tasks in served.items():
      # 3 disjoint gold groups: alice takes 3 of the 4 tasks of each class; the 4th waits for bob.
      assert len(tasks) == 3
      seen_hashes, seen_names = set(), set()
      for hashes, names in tasks:
        flagged = [n for h, n in zip(hashes, names) if h in seen_hashes]
        assert flagged == []                                  # the attack picks out nothing
        assert not set(names) & seen_names                    # nothing recurs, gold or not
        seen_hashes |= set(hashes)
        seen_names |= set(names)
    bob = Client(port, store.add_annotator("bob"))
    assert bob.task()["cls"] == DOG
  # Across classes both kinds of image recur alike: in person's 1st task, every image (gold and
  # work) was already seen in dog's tasks.
  dog_names = {n for _, names in served[DOG] for n in names}
  first_person = served[PERSON][0][1]
  assert all(n in dog_names for n in first_person)


# ----------------------------------------------------------------------------------------------
# Labels: a served class subset is "asked", unknown classes stay unknown down to the batch.


def test_served_classes_export_as_asked(tmp_path):
  store = _project(tmp_path, n_work=4, classes=(DOG,))
  with serving(store) as port:
    alice = Client(port, store.add_annotator("alice"))
    # work_00 and work_01 have a dog; work_02, work_03 do not.
    _answer_all(store, alice, lambda name, cls: _truth(name, cls) if not name.startswith("work")
                else ([(2.0, 3.0, 700)] if name in ("work_00.jpg", "work_01.jpg") else []))
  clicks, asked = export.collect_with_asked(store)
  assert sorted(clicks) == ["work_00", "work_01", "work_02", "work_03"]
  assert all(a == [DOG] for a in asked.values())       # person (and 18 others) never asked
  assert len(clicks["work_02"]["x"]) == 0               # dog asked, answered absent


@pytest.mark.slow
def test_serve_to_training_batch_keeps_unasked_classes_unknown(tmp_path):
  """serve (dog only) -> export -> custom_points -> pipeline: `known` is background + dog on the
  annotated images, everything on the masked (val) ones; Eq. 2 then ignores the other classes."""
  import jax
  import tensorflow_datasets as tfds
  from pointseg_jax import labels, losses
  from pointseg_jax.data import pipeline
  from pointseg_jax.data import spec as spec_lib
  from pointseg_jax.data.prepare import prepare

  store = _project(tmp_path, n_work=4, classes=(DOG,))
  with serving(store) as port:
    alice = Client(port, store.add_annotator("alice"))
    _answer_all(store, alice, lambda name, cls: _truth(name, cls) if not name.startswith("work")
                else ([(2.0, 3.0, 700)] if name in ("work_00.jpg", "work_01.jpg") else []))
  folder = tmp_path / "my_data"
  os.makedirs(folder / "masks")
  os.symlink(store.config.images_dir, folder / "images")
  for name, boxes in GOLD12.items():      # the gold images have masks: the val split
    mask = np.zeros((40, 48), np.uint8)
    for cls, bs in boxes.items():
      for x0, y0, x1, y1 in bs:
        mask[y0:y1, x0:x1] = cls
    labels.write_label_png(folder / "masks" / f"{name}.png", mask)
  export.export(store, str(folder / "clicks.json"))
  data_dir = str(tmp_path / "tfds")
  builder = prepare("custom_points/no_objectness", data_dir, manual_dir=str(folder))
  stored = {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
  assert sorted(stored) == ["work_00", "work_01", "work_02", "work_03"]
  dog_only = [c in (0, DOG) for c in range(21)]
  for ex in stored.values():
    assert ex["asked"].tolist() == dog_only
  spec = spec_lib.DataSpec(dataset="custom_points/no_objectness", data_dir=data_dir,
                           image_size=(48, 48), label_kind="one_point")
  batch = next(pipeline.make_dataset(spec, "train", batch_size=4, train=True, seed=0,
                                     process_index=0, process_count=1))
  assert batch["known"].tolist() == [dog_only] * 4
  assert sorted(batch["present"][:, DOG].tolist()) == [False, False, True, True]
  assert not batch["present"][:, PERSON].any()       # not present, and not known either
  val = next(pipeline.make_dataset(spec, "val", batch_size=2, train=False, seed=0,
                                   process_index=0, process_count=1))
  assert val["known"][val["example_mask"]].all()    # a mask answers every class
  # The loss the training step computes differs from the one that took person as absent.
  logits = jax.random.normal(jax.random.PRNGKey(0), (4, 48, 48, 21))
  with_known = losses.image_level_loss(logits, batch["present"], batch["valid"], batch["known"])
  as_absent = losses.image_level_loss(logits, batch["present"], batch["valid"])
  assert not np.allclose(with_known, as_absent)
