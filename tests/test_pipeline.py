"""make_dataset end to end on a fabricated TFDS click dataset (written by the test, never copied).

Covers: the batch contract, eval reproduces the stored examples and pads (every example exactly
once, on one or two hosts), every supervision against numpy references, rank weights, image labels,
determinism and exact resume across epoch boundaries, counted clipping, and bad configs.
"""
import importlib.util

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pointseg_jax import NUM_CLASSES
from pointseg_jax.data import pipeline
from pointseg_jax.data.spec import DataSpec, LABEL_KINDS
from pointseg_jax.data.features import click_features

SIZES = {"train": 13, "val": 5}
_F, _I = np.float32, np.int32


def make_example(i: int, split: str) -> dict:
  """Rectangles of random classes on noise, with every supervision the feature spec stores.

  Special cases by index: 0 three instances of class 7 (ranks 1, 2, 3); 1 a class listed in
  `classes` that nobody clicked (a missed class); 2 a click outside the image; 3 no objectness;
  4 no objects at all (empty click / squiggle / box lists).
  """
  rng = np.random.default_rng(1000 * (split == "val") + i)
  h, w = int(rng.integers(20, 45)), int(rng.integers(20, 45))
  mask, inst = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
  rects = []
  for k in range({0: 3, 4: 0}.get(i, 1 + i % 3)):
    if i == 0:  # three separate class-7 instances of decreasing size
      y0, x0, oh, ow, cls = 1 + 6 * k, 1, 5, 14 - 4 * k, 7
    else:
      oh, ow = int(rng.integers(4, h // 2)), int(rng.integers(4, w // 2))
      y0, x0 = int(rng.integers(0, h - oh)), int(rng.integers(0, w - ow))
      cls = int(rng.integers(1, NUM_CLASSES))
    mask[y0:y0 + oh, x0:x0 + ow] = cls
    inst[y0:y0 + oh, x0:x0 + ow] = k + 1
    rects.append((cls, k + 1, y0, x0, y0 + oh, x0 + ow))
  rects = [r for r in rects if (inst == r[1]).any()]  # fully occluded ones are gone
  image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
  image[mask > 0] += (mask[mask > 0, None] * 9).astype(np.uint8)
  classes = sorted({r[0] for r in rects})

  def click_in(region):
    rr, cc = np.nonzero(region)
    j = int(rng.integers(len(rr)))
    return rr[j] + rng.uniform(0, 1), cc[j] + rng.uniform(0, 1)

  clicks = []  # (y, x, cls, rank, annotator)
  ranks = {}
  for cls, ins, *_ in sorted(rects, key=lambda r: -(inst == r[1]).sum()):
    ranks[cls] = ranks.get(cls, 0) + 1
    clicks.append((*click_in(inst == ins), cls, ranks[cls], 0))
  for annotator in (1, 2):
    for cls in classes:
      clicks.append((*click_in(mask == cls), cls, 1, annotator))
  if i == 1:
    classes = sorted(set(classes) | {19 if 19 not in classes else 18})
  if i == 2:
    clicks[0] = (clicks[0][0], w + 3.2) + clicks[0][2:]
  random_clicks = [(*click_in(mask == c), c) for c in sorted({r[0] for r in rects})]
  background = [(*click_in(mask == 0), 0) for _ in range(2)]
  squiggles = []  # (y, x, cls, stroke): the middle row of each rectangle
  boxes = []
  for cls, ins, y0, x0, y1, x1 in rects:
    squiggles += [((y0 + y1) / 2, xv, cls, ins) for xv in np.linspace(x0 + 1, x1 - 1, 3)]
    rr, cc = np.nonzero(inst == ins)
    boxes.append((rr.min(), cc.min(), rr.max() + 1, cc.max() + 1, cls))

  def cols(rows, names, types):
    arr = list(zip(*rows)) if rows else [[] for _ in names]
    return {n: np.asarray(a, t) for n, a, t in zip(names, arr, types)}

  return {
      "id": f"{split}{i:03d}", "image": image, "mask": mask[..., None],
      "instance_mask": inst[..., None], "has_instances": True, "classes": classes,
      "clicks": cols(clicks, ("y", "x", "cls", "rank", "annotator"), (_F, _F, _I, _I, _I)),
      "random_clicks": cols(random_clicks, ("y", "x", "cls"), (_F, _F, _I)),
      "background_clicks": cols(background, ("y", "x", "cls"), (_F, _F, _I)),
      "squiggles": cols(squiggles, ("y", "x", "cls", "stroke"), (_F, _F, _I, _I)),
      "boxes": cols(boxes, ("ymin", "xmin", "ymax", "xmax", "cls"), (_F, _F, _F, _F, _I)),
      "objectness": (np.zeros((h, w, 1)) if i == 3 else rng.integers(0, 256, (h, w, 1))
                     ).astype(np.uint8),
      "has_objectness": i != 3,
  }


class PipelineTestPoints(tfds.core.GeneratorBasedBuilder):
  """The fabricated dataset (registered as 'pipeline_test_points')."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=click_features("png"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in SIZES}

  def _generate_examples(self, split):
    for i in range(SIZES[split]):
      yield f"{split}{i}", make_example(i, split)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("tfds")
  PipelineTestPoints(data_dir=str(path)).download_and_prepare()
  return str(path)


@pytest.fixture(scope="module")
def val_examples(data_dir):
  """(decoded example as the pipeline sees it, the generated example) for the val split."""
  spec = DataSpec.from_config(_config(data_dir))
  builder = pipeline._open_builder(spec)  # pylint: disable=protected-access
  records = pipeline.read_records(builder, "val")
  decoded = [builder.info.features.deserialize_example(r) for r in records]
  return [(d, make_example(int(d["id"].numpy().decode()[3:]), "val")) for d in decoded]


def _transform(example, data_dir, **kw):
  """transform_example without augmentation (eager), as numpy."""
  spec = DataSpec.from_config(_config(data_dir, **kw))
  out = pipeline.transform_example(example, tf.zeros([2], tf.int64), tf.constant(0), spec,
                                   train=False)
  return {k: v.numpy() for k, v in out.items()}


def _config(data_dir, **kw):
  """A config.data block (ConfigDict, as a training config holds it) for the fabricated set."""
  cfg = ml_collections.ConfigDict(DataSpec().to_dict())
  cfg.dataset = "pipeline_test_points"
  cfg.data_dir = data_dir
  cfg.image_size = (32, 32)
  cfg.update(kw)
  return cfg


def _eval(data_dir, batch_size=2, **kw):
  it = pipeline.make_dataset(_config(data_dir, **kw), "val", batch_size=batch_size, train=False,
                             seed=0, process_index=0, process_count=1)
  return list(it), it


def _stored(batch, b, split="val"):
  """The generated example shown at batch position b (matched by its image)."""
  for i in range(SIZES[split]):
    ex = make_example(i, split)
    h, w = ex["mask"].shape[:2]
    if batch["valid"][b, :h, :w].all() and batch["valid"][b].sum() == h * w and np.array_equal(
        batch["image"][b, :h, :w], ex["image"].astype(np.float32)):
      return i, ex
  raise AssertionError(f"batch position {b} shows no stored example")


def _flatten(batches):
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


# ----------------------------------------------------------------------------------------------


def test_batch_dict_matches_the_contract(data_dir):
  batch = next(pipeline.make_dataset(_config(data_dir), "train", batch_size=4, train=True, seed=0,
                                     process_index=0, process_count=1))
  expect = {"image": (np.float32, (4, 32, 32, 3)), "valid": (np.bool_, (4, 32, 32)),
            "labels": (np.int32, (4, 32, 32)), "present": (np.bool_, (4, NUM_CLASSES)),
            "known": (np.bool_, (4, NUM_CLASSES)), "sparse_labels": (np.int32, (4, 32, 32)), "sparse_weights": (np.float32, (4, 32, 32)),
            "objectness": (np.float32, (4, 32, 32)), "example_id": (np.int32, (4,)),
            "example_mask": (np.bool_, (4,))}
  assert {k: (v.dtype.type, v.shape) for k, v in batch.items()} == expect
  assert batch["present"][:, 0].all() and batch["example_mask"].all()
  assert batch["known"].all()   # this test dataset has no `asked` feature: every class answered
  pad = ~batch["valid"]
  assert (batch["labels"][pad] == 255).all() and (batch["sparse_labels"][pad] == 255).all()
  assert (batch["sparse_weights"][pad] == 0).all() and (batch["image"][pad] == 0).all()
  assert (batch["objectness"][pad] == 0).all()
  obj = batch["objectness"][batch["valid"]]
  assert obj.min() >= 1 / 257 - 1e-7 and obj.max() <= 256 / 257 + 1e-7
  assert set(np.unique(batch["labels"][batch["valid"]])) <= set(range(NUM_CLASSES)) | {255}


def test_eval_reproduces_stored_examples_and_pads(data_dir):
  batches, it = _eval(data_dir, batch_size=2, image_size=(48, 40))
  assert len(batches) == it.num_batches == 3  # 5 examples, batch 2: the last one padded
  flat = _flatten(batches)
  np.testing.assert_array_equal(flat["example_mask"], [True] * 5 + [False])
  np.testing.assert_array_equal(flat["example_id"][:5], np.arange(5))  # split order, each once
  seen = set()
  for b in range(5):
    i, ex = _stored(flat, b)
    seen.add(i)
    h, w = ex["mask"].shape[:2]
    np.testing.assert_array_equal(flat["labels"][b, :h, :w], ex["mask"][..., 0])
    np.testing.assert_array_equal(flat["objectness"][b, :h, :w],
                                  (ex["objectness"][..., 0].astype(np.float32) + 1) / 257)
    assert (flat["labels"][b, h:] == 255).all() and (flat["labels"][b, :, w:] == 255).all()
    assert not flat["valid"][b, h:].any() and not flat["valid"][b, :, w:].any()
  assert seen == set(range(5))
  blank = {k: v[5] for k, v in flat.items()}
  assert not blank["valid"].any() and (blank["labels"] == 255).all()
  assert (blank["sparse_labels"] == 255).all() and (blank["sparse_weights"] == 0).all()
  assert blank["example_id"] == -1 and blank["present"].tolist() == [True] + [False] * 20
  assert it.stats.images_shrunk == 0 and it.stats.no_objectness == 1  # example 3
  assert it.stats.coords_clipped == 1  # example 2's click at x = w + 3.2


def test_eval_shrinks_large_images_to_fit_and_counts_them(data_dir):
  batches, it = _eval(data_dir, batch_size=5, image_size=(24, 24), label_kind="full")
  sizes = [make_example(i, "val")["mask"].shape[:2] for i in range(5)]
  assert it.stats.images_shrunk == sum(h > 24 or w > 24 for h, w in sizes) > 0
  valid = batches[0]["valid"]
  for b in range(5):  # each keeps its aspect ratio inside the 24 x 24 frame
    rows, cols = valid[b].any(1).sum(), valid[b].any(0).sum()
    assert max(rows, cols) <= 24
    assert (valid[b, :rows, :cols]).all()


def test_eval_on_two_hosts_sees_every_example_once_in_equal_batch_counts(data_dir):
  cfg = _config(data_dir, image_size=(48, 48))
  one_host = _flatten(_eval(data_dir, batch_size=5, image_size=(48, 48))[0])
  stored_of_id = {int(one_host["example_id"][b]): _stored(one_host, b)[0] for b in range(5)}
  runs = [pipeline.make_dataset(cfg, "val", batch_size=2, train=False, seed=0, process_index=p,
                                process_count=2) for p in (0, 1)]
  batches = [_flatten(list(r)) for r in runs]
  assert len(batches[0]["example_id"]) == len(batches[1]["example_id"]) == 4  # 2 batches each
  assert runs[0].num_batches == runs[1].num_batches == 2  # 3 + 2 examples
  shown = []
  for flat in batches:
    for b in np.nonzero(flat["example_mask"])[0]:
      i, _ = _stored(flat, b)
      assert stored_of_id[int(flat["example_id"][b])] == i  # ids are split-wide, not per host
      shown.append(i)
  assert sorted(shown) == list(range(5))
  names = pipeline.example_names(cfg, "val")
  assert [names[i] for i in sorted(stored_of_id)] == [
      f"val{stored_of_id[i]:03d}" for i in sorted(stored_of_id)]


def test_train_is_deterministic_and_resumes_exactly_across_epochs(data_dir):
  cfg = _config(data_dir, scale_range=(0.5, 2.0), label_kind="all_points_weighted")

  def run(seed, start_step=0, n=9):
    it = pipeline.make_dataset(cfg, "train", batch_size=4, train=True, seed=seed,
                               start_step=start_step, process_index=0, process_count=1)
    return [next(it) for _ in range(n)]

  a, b = run(0), run(0)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)
  # 13 examples, batch 4: epochs end inside batches 3 and 6; resuming at 5 crosses the second.
  resumed = run(0, start_step=5, n=4)
  for x, y in zip(a[5:], resumed):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)
  ids = np.concatenate([x["example_id"] for x in a])
  epochs = ids[:13], ids[13:26]
  assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(13))  # each epoch: a permutation
  assert list(epochs[0]) != list(epochs[1])  # ... a different one every epoch
  other = run(1, n=2)
  assert not np.array_equal(other[0]["image"], a[0]["image"])


def test_no_python_runs_inside_tf_data(data_dir):
  """A tf.data worker that calls Python (tf.numpy_function / py_function) needs the GIL, and the
  iterator's destructor waits for the workers while the main thread holds it: the exit hang of
  issue 25 (tests/test_pipeline_exit.py runs real processes). The records are one string tensor,
  gathered in-graph, equal to the stored records in file order."""
  spec = DataSpec.from_config(_config(data_dir))
  builder = pipeline._open_builder(spec)  # pylint: disable=protected-access
  records = pipeline.read_record_table(builder, "train", SIZES["train"])
  assert records.dtype == tf.string
  assert records.numpy().tolist() == pipeline.read_records(builder, "train")
  assert pipeline.read_record_table(builder, "train", 4).numpy().tolist() == (
      pipeline.read_records(builder, "train")[:4])
  for train in (True, False):
    ds = pipeline._dataset(records, builder.info.features, spec, batch_size=4, train=train,  # pylint: disable=protected-access
                           seed=0, start_step=0, offset=0, process_index=0)
    graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph().numpy())  # pylint: disable=protected-access
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    assert "DecodePng" in ops or "DecodeImage" in ops   # the check sees inside the map function
    assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}, sorted(ops)
    # Deterministic order, no model-based autotuning (its thread delayed the train iterator's
    # deletion by up to tens of seconds: docs/pipeline.md, "Autotuning off").
    assert ds.options().deterministic is True and ds.options().autotune.enabled is False


def test_train_fraction_trains_on_a_fixed_subset_for_every_seed(data_dir):
  """13 train records, fraction 0.3 -> ceil(3.9) = 4 records, the first 4 in file order, whatever
  the seed; eval still reads the whole split."""
  def seen(seed, fraction):
    it = pipeline.make_dataset(_config(data_dir, train_fraction=fraction), "train", batch_size=4,
                               train=True, seed=seed, process_index=0, process_count=1)
    return np.concatenate([next(it)["example_id"] for _ in range(5)])

  for seed in (0, 1):
    ids = seen(seed, 0.3)
    assert sorted(set(ids.tolist())) == [0, 1, 2, 3]   # split positions of the first 4 records
    # 20 positions over 4 records = 5 full epochs, each a permutation of the subset.
    assert all(sorted(ids[i:i + 4].tolist()) == [0, 1, 2, 3] for i in range(0, 20, 4))
  assert sorted(set(seen(0, 1.0).tolist())) == list(range(13))
  assert set(seen(0, 0.01).tolist()) == {0}           # never empty: at least one record
  assert pipeline.train_subset([], 0.5) == []
  batches, _ = _eval(data_dir, train_fraction=0.3)
  assert _flatten(batches)["example_mask"].sum() == SIZES["val"]


def _expected_points(points, h, w):
  """numpy reference: one pixel per point, larger weight then earlier point wins."""
  labels, weights = np.full((h, w), 255), np.zeros((h, w), np.float32)
  order = sorted(range(len(points)), key=lambda k: -points[k][3])
  for k in reversed(order):  # the best is written last
    y, x, cls, wt = points[k]
    r, c = min(max(int(np.floor(y)), 0), h - 1), min(max(int(np.floor(x)), 0), w - 1)
    labels[r, c], weights[r, c] = cls, wt
  return labels, weights


def _point_lists(ex, supervision):
  c = ex["clicks"]
  rows = list(zip(c["y"], c["x"], c["cls"], c["rank"], c["annotator"]))
  if supervision == "random_points":
    r = ex["random_clicks"]
    return [(y, x, k, 1.0) for y, x, k in zip(r["y"], r["x"], r["cls"])]
  if supervision == "one_point":
    return [(y, x, k, 1.0) for y, x, k, rk, a in rows if a == 0 and rk == 1]
  if supervision == "three_annotators":
    return [(y, x, k, 1.0) for y, x, k, rk, a in rows if rk == 1]
  if supervision == "all_points_weighted":
    return [(y, x, k, 0.5 ** (rk - 1)) for y, x, k, rk, a in rows if a == 0]
  pts = [(y, x, k, 1.0) for y, x, k, rk, a in rows if a == 0]
  if supervision == "background_points":
    bg = ex["background_clicks"]
    pts += [(y, x, k, 1.0) for y, x, k in zip(bg["y"], bg["x"], bg["cls"])]
  return pts


def _expected_discs(points, h, w, radius):
  """numpy reference of grown points: discs around the clicked pixels' centres (nearest centre,
  then larger weight, then earlier point wins), the clicked pixels on top."""
  py, px = np.mgrid[:h, :w] + 0.5
  best, label, weight = np.full((h, w), np.inf), np.full((h, w), 255), np.zeros((h, w), np.float32)
  for k in sorted(range(len(points)), key=lambda k: -points[k][3]):
    y, x, cls, wt = points[k]
    r, c = min(max(int(np.floor(y)), 0), h - 1), min(max(int(np.floor(x)), 0), w - 1)
    d2 = (py - r - 0.5) ** 2 + (px - c - 0.5) ** 2
    closer = d2 < best
    best, label, weight = (np.where(closer, d2, best), np.where(closer, cls, label),
                           np.where(closer, wt, weight))
  hit = best <= radius ** 2
  label, weight = np.where(hit, label, 255), np.where(hit, weight, 0)
  clicked, clicked_w = _expected_points(points, h, w)
  return np.where(clicked_w > 0, clicked, label), np.where(clicked_w > 0, clicked_w, weight)


def _expected_squiggles(s, h, w, radius):
  py, px = np.mgrid[:h, :w] + 0.5
  best, label = np.full((h, w), np.inf), np.full((h, w), 255)
  n = len(s["y"])
  for k in range(n):
    a = np.array([s["y"][k], s["x"][k]], np.float64)
    b = (np.array([s["y"][k + 1], s["x"][k + 1]], np.float64)
         if k + 1 < n and s["stroke"][k + 1] == s["stroke"][k] else a)
    d = b - a
    t = np.clip(((py - a[0]) * d[0] + (px - a[1]) * d[1]) / max(d @ d, 1e-12), 0, 1)
    d2 = (py - a[0] - t * d[0]) ** 2 + (px - a[1] - t * d[1]) ** 2
    closer = d2 < best
    best, label = np.where(closer, d2, best), np.where(closer, s["cls"][k], label)
  return np.where(best <= radius ** 2, label, 255)


def _expected_boxes(bx, h, w):
  py, px = np.mgrid[:h, :w] + 0.5
  label, best = np.zeros((h, w), int), np.full((h, w), np.inf)
  for k in range(len(bx["cls"])):
    inside = (py >= bx["ymin"][k]) & (py < bx["ymax"][k]) & (px >= bx["xmin"][k]) & (
        px < bx["xmax"][k])
    area = (bx["ymax"][k] - bx["ymin"][k]) * (bx["xmax"][k] - bx["xmin"][k])
    take = inside & (area < best)
    label, best = np.where(take, bx["cls"][k], label), np.where(take, area, best)
  return label


@pytest.mark.parametrize("label_kind", LABEL_KINDS)
def test_every_label_kind_rasterises_like_the_numpy_reference(data_dir, val_examples,
                                                               label_kind):
  labelled = 0
  for decoded, ex in val_examples:
    out = _transform(decoded, data_dir, image_size=(48, 48), label_kind=label_kind,
                     squiggle_radius=2, point_radius=1.5)
    h, w = ex["mask"].shape[:2]
    sparse, weights = out["sparse_labels"], out["sparse_weights"]
    assert (sparse[h:] == 255).all() and (sparse[:, w:] == 255).all()
    assert (weights[h:] == 0).all() and (weights[:, w:] == 0).all()
    sparse, weights = sparse[:h, :w], weights[:h, :w]
    if label_kind == "none":
      expect, expect_w = np.full((h, w), 255), np.zeros((h, w))
    elif label_kind == "full":
      expect = ex["mask"][..., 0]
      expect_w = (expect != 255).astype(np.float32)
    elif label_kind == "squiggle":
      expect = _expected_squiggles(ex["squiggles"], h, w, 2.0)
      expect_w = (expect != 255).astype(np.float32)
    elif label_kind == "box":
      expect, expect_w = _expected_boxes(ex["boxes"], h, w), np.ones((h, w))
    elif label_kind == "grown_points":
      expect, expect_w = _expected_discs(_point_lists(ex, "one_point"), h, w, 1.5)
    else:
      expect, expect_w = _expected_points(_point_lists(ex, label_kind), h, w)
    np.testing.assert_array_equal(sparse, expect, err_msg=f"{label_kind} example {ex['id']}")
    np.testing.assert_array_equal(weights, expect_w, err_msg=f"{label_kind} example {ex['id']}")
    labelled += (sparse != 255).sum()
    if label_kind == "background_points":
      assert (sparse == 0).sum() >= 1  # two background clicks per image (maybe on one pixel)
  assert (labelled > 0) == (label_kind != "none")


def test_rank_weights_one_half_one_quarter(data_dir, val_examples):
  """Example 0 has three class-7 instances clicked with ranks 1, 2, 3 by annotator 0."""
  decoded, ex = next(p for p in val_examples if p[1]["id"] == "val000")
  out = _transform(decoded, data_dir, image_size=(48, 48), label_kind="all_points_weighted")
  assert sorted(out["sparse_weights"][out["sparse_labels"] == 7].tolist()) == [0.25, 0.5, 1.0]
  assert sorted(ex["clicks"]["rank"][ex["clicks"]["annotator"] == 0].tolist()) == [1, 2, 3]


def test_image_labels_from_classes_or_from_clicks(data_dir, val_examples):
  """Example 1 lists a class nobody clicked: 'classes' keeps it, 'clicks' (the authors') not."""
  for decoded, ex in val_examples:
    by_classes = _transform(decoded, data_dir, image_labels_from="classes")["present"]
    by_clicks = _transform(decoded, data_dir, image_labels_from="clicks")["present"]
    want = np.zeros(NUM_CLASSES, bool)
    want[[0] + list(ex["classes"])] = True
    np.testing.assert_array_equal(by_classes, want)
    clicked = np.zeros(NUM_CLASSES, bool)
    c = ex["clicks"]
    clicked[[0] + list(c["cls"][c["annotator"] == 0])] = True
    np.testing.assert_array_equal(by_clicks, clicked)
    assert (want != clicked).any() == (ex["id"] == "val001")


def test_bad_class_ids_in_the_data_raise_naming_the_field(data_dir, val_examples):
  decoded, _ = next(p for p in val_examples if p[1]["id"] == "val000")
  clicks = dict(decoded["clicks"], cls=decoded["clicks"]["cls"] + 20)
  with pytest.raises(tf.errors.InvalidArgumentError, match="clicks.cls must be class ids 0..20"):
    _transform(dict(decoded, clicks=clicks), data_dir, label_kind="all_points")


def test_clicks_outside_the_crop_are_dropped_and_counted(data_dir):
  it = pipeline.make_dataset(_config(data_dir, image_size=(16, 16), scale_range=(1.5, 2.0),
                                     label_kind="all_points"), "train", batch_size=4, train=True,
                             seed=3, process_index=0, process_count=1)
  for _ in range(4):
    batch = next(it)
  assert it.stats.clicks_cropped > 0 and it.stats.examples == 16
  assert (batch["sparse_labels"] != 255).sum() > 0


@pytest.mark.parametrize("field, value, message", [
    ("label_kind", "two_points", "config.data.label_kind = 'two_points': one of none"),
    ("image_size", (32,), "config.data.image_size = (32,): two positive ints"),
    ("image_size", (32, "32"), "two positive ints"),
    ("image_size", (0, 32), "two positive ints"),
    ("scale_range", (2.0, 1.0), "0 < lo <= hi"),
    ("squiggle_radius", 0, "a number >= 1"),
    ("image_labels_from", "masks", "one of ('classes', 'clicks')"),
    ("augment", "yes", "True or False"),
    ("train_fraction", 0.0, "a number in"),
    ("train_fraction", 1.5, "a number in"),
    ("train_fraction", True, "a number in"),
    ("data_dir", "", "config.data.data_dir = '': a directory path, or unset (None)"),
    ("manual_dir", " ", "an empty path would put the dataset in the current directory"),
])
def test_bad_config_values_raise_clear_errors(data_dir, field, value, message):
  cfg = _config(data_dir).to_dict()  # a plain dict: ConfigDict itself rejects some type changes
  cfg[field] = value
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    pipeline.make_dataset(cfg, "val", batch_size=2, train=False, seed=0, process_index=0,
                          process_count=1)


def test_unknown_dataset_field_split_and_unprepared_data_raise_clear_errors(data_dir, tmp_path):
  def make(cfg, split="val"):
    return pipeline.make_dataset(cfg, split, batch_size=2, train=False, seed=0, process_index=0,
                                 process_count=1)

  with pytest.raises(ValueError, match="'no_such_points' is not a known TFDS dataset"):
    make(_config(data_dir, dataset="no_such_points"))
  cfg = _config(data_dir)
  cfg.shufle_buffer = 10
  with pytest.raises(ValueError, match=r"unknown fields \['shufle_buffer'\]"):
    make(cfg)
  with pytest.raises(ValueError, match="split 'test' not in"):
    make(_config(data_dir), split="test")
  with pytest.raises(ValueError, match="is not prepared in .*pointseg_jax.data.prepare"):
    make(_config(str(tmp_path)))
  with pytest.raises(ValueError, match="batch_size >= 1"):
    pipeline.make_dataset(_config(data_dir), "val", batch_size=0, train=False, seed=0,
                          process_index=0, process_count=1)


@pytest.mark.slow  # building synthetic_points/tiny takes ~20 s on 2 busy cores
@pytest.mark.skipif(importlib.util.find_spec("pointseg_jax.data.synthetic_points") is None,
                    reason="synthetic_points builder not written yet")
def test_synthetic_tiny_through_the_pipeline(tmp_path):
  from pointseg_jax import data  # pylint: disable=g-import-not-at-top
  if not hasattr(data, "prepare"):
    pytest.skip("pointseg_jax.data.prepare not written yet")
  data.prepare("synthetic_points/tiny", data_dir=str(tmp_path))
  cfg = ml_collections.ConfigDict(DataSpec().to_dict())
  cfg.dataset, cfg.data_dir = "synthetic_points/tiny", str(tmp_path)
  batch = next(pipeline.make_dataset(cfg, "train", batch_size=2, train=True, seed=0,
                                     process_index=0, process_count=1))
  assert batch["image"].shape == (2, *cfg.image_size, 3)
  assert (batch["sparse_labels"] != 255).any()
  # The clicked classes are present, and sit on valid pixels.
  for b in range(2):
    clicked = np.unique(batch["sparse_labels"][b][batch["sparse_labels"][b] != 255])
    assert batch["present"][b][clicked].all()
  ev = pipeline.make_dataset(cfg, "val", batch_size=4, train=False, seed=0, process_index=0,
                             process_count=1)
  ids = np.concatenate([b["example_id"][b["example_mask"]] for b in ev])
  assert sorted(ids.tolist()) == list(range(len(ids)))
