"""augment.py (+ transform_example): scale / crop / flip move image, masks and clicks together."""
import numpy as np
import pytest
import tensorflow as tf

from pointseg_jax.data import augment
from pointseg_jax.data import pipeline
from pointseg_jax.data.spec import DataSpec


def _geometry(h, w, scaled_h, scaled_w, oy, ox, ch, cw, flip):
  c = lambda v: tf.constant(v, tf.int32)
  return augment.Geometry(c(h), c(w), c(scaled_h), c(scaled_w), c(oy), c(ox), c(ch), c(cw),
                          tf.constant(flip))


def _points(ys=(), xs=(), cls=(), **extra):
  out = {"y": tf.constant(ys, tf.float32), "x": tf.constant(xs, tf.float32),
         "cls": tf.constant(cls, tf.int32)}
  out.update({k: tf.constant(v, tf.int32) for k, v in extra.items()})
  return out


def _example(mask, inst, image, *, clicks=None, squiggles=None, boxes=None, objectness=None):
  """A decoded example exactly as features.click_features deserialises one."""
  h, w = mask.shape
  boxes = boxes or {"ymin": [], "xmin": [], "ymax": [], "xmax": [], "cls": []}
  return {
      "id": tf.constant("test"),
      "image": tf.constant(image, tf.uint8),
      "mask": tf.constant(mask[..., None], tf.uint8),
      "instance_mask": tf.constant(inst[..., None], tf.uint8),
      "has_instances": tf.constant(True),
      "classes": tf.constant(sorted(set(np.unique(mask)) - {0, 255}), tf.int64),
      "clicks": clicks or _points(rank=[], annotator=[]),
      "random_clicks": _points(), "background_clicks": _points(),
      "squiggles": squiggles or _points(stroke=[]),
      "boxes": {k: tf.constant(v, tf.int32 if k == "cls" else tf.float32) for k, v in boxes.items()},
      "objectness": tf.constant((np.zeros((h, w)) if objectness is None else objectness)[..., None],
                                tf.uint8),
      "has_objectness": tf.constant(objectness is not None),
  }


def _rectangles(rng, h, w, n, min_side=3, max_side=12):
  """Non-overlapping rectangles (class, instance, y0, x0, y1, x1) on a 1-px background margin."""
  mask, inst = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
  rects = []
  for _ in range(200):
    if len(rects) == n:
      break
    rh, rw = rng.integers(min_side, max_side + 1, 2)
    y0, x0 = rng.integers(0, h - rh + 1), rng.integers(0, w - rw + 1)
    if (inst[max(y0 - 1, 0):y0 + rh + 1, max(x0 - 1, 0):x0 + rw + 1] > 0).any():
      continue
    # Same class twice on purpose: instances of one class must not be confused either.
    cls = int(rng.choice([3, 3, 7, 12, 20]))
    mask[y0:y0 + rh, x0:x0 + rw] = cls
    inst[y0:y0 + rh, x0:x0 + rw] = len(rects) + 1
    rects.append((cls, len(rects) + 1, int(y0), int(x0), int(y0 + rh), int(x0 + rw)))
  return mask, inst, rects


def _spec(**kw):
  return DataSpec.from_config({"dataset": "test", **kw})


def test_centre_rule_is_exact_when_enlarging_and_within_one_pixel_when_shrinking():
  for n_in in range(1, 41):
    i = tf.range(n_in)
    for n_out in range(max(1, (n_in + 1) // 2), 2 * n_in + 4):
      back = augment.source_index(augment.target_index(i, n_in, n_out), n_in, n_out).numpy()
      if n_out >= n_in:
        np.testing.assert_array_equal(back, np.arange(n_in), err_msg=f"{n_in}->{n_out}")
      else:
        assert np.abs(back - np.arange(n_in)).max() <= 1, (n_in, n_out)


def test_nearest_grid_matches_numpy_crop_and_flip():
  labels = np.arange(7 * 9, dtype=np.int32).reshape(7, 9)
  g = _geometry(7, 9, 7, 9, 2, 3, 4, 5, True)
  np.testing.assert_array_equal(augment.warp_labels(tf.constant(labels), g).numpy(),
                                labels[2:6, 3:8][:, ::-1])
  image = np.random.default_rng(0).uniform(0, 255, (7, 9, 3)).astype(np.float32)
  np.testing.assert_allclose(augment.warp_image(tf.constant(image), g).numpy(),
                             image[2:6, 3:8][:, ::-1], atol=1e-4)
  # Click in stored pixel (3, 4) -> crop (1, 1) -> flipped column 5 - 1 - 1 = 3.
  r, c, inside = augment.warp_pixels(tf.constant([3, 0]), tf.constant([4, 0]), g)
  assert (r.numpy()[0], c.numpy()[0], bool(inside.numpy()[0])) == (1, 3, True)
  assert not inside.numpy()[1]


def test_doubling_maps_each_pixel_to_a_two_by_two_block():
  labels = np.array([[1, 2], [3, 4]], np.int32)
  g = _geometry(2, 2, 4, 4, 0, 0, 4, 4, False)
  np.testing.assert_array_equal(augment.warp_labels(tf.constant(labels), g).numpy(),
                                np.kron(labels, np.ones((2, 2), np.int32)))
  r, c, _ = augment.warp_pixels(tf.constant([0, 1]), tf.constant([1, 0]), g)
  # centre of pixel 0 (0.5) -> 1.0 -> pixel 1; centre of pixel 1 (1.5) -> 3.0 -> pixel 3.
  np.testing.assert_array_equal(r.numpy(), [1, 3])
  np.testing.assert_array_equal(c.numpy(), [3, 1])


def test_geometry_is_a_pure_function_of_the_seed():
  seed = tf.constant([3, 4], tf.int64)
  g1 = augment.sample_geometry(seed, 40, 50, (32, 32), augment=True, scale_range=(0.5, 2.0))
  g2 = augment.sample_geometry(seed, 40, 50, (32, 32), augment=True, scale_range=(0.5, 2.0))
  fields = ("scaled_h", "scaled_w", "offset_y", "offset_x", "crop_h", "crop_w", "flip")
  assert [getattr(g1, f).numpy() for f in fields] == [getattr(g2, f).numpy() for f in fields]
  seen = {tuple(int(getattr(augment.sample_geometry(tf.constant([s, 0], tf.int64), 40, 50, (32, 32),
                                                      augment=True, scale_range=(0.5, 2.0)), f))
                for f in ("scaled_h", "offset_x", "flip")) for s in range(20)}
  assert len(seen) > 10  # different seeds, different warps


def test_without_augmentation_large_images_shrink_to_fit_and_small_ones_stay():
  g = augment.sample_geometry(tf.constant([0, 0], tf.int64), 100, 50, (32, 40), augment=False)
  assert (int(g.scaled_h), int(g.scaled_w), int(g.crop_h), int(g.crop_w)) == (32, 16, 32, 16)
  g = augment.sample_geometry(tf.constant([0, 0], tf.int64), 20, 30, (32, 40), augment=False)
  assert (int(g.scaled_h), int(g.scaled_w), bool(g.flip), int(g.offset_y)) == (20, 30, False, 0)


@pytest.mark.parametrize("scale_range, out", [((0.5, 1.0), 64), ((1.0, 2.0), 32),
                                              ((0.5, 2.0), 32)])
def test_every_click_inside_its_object_stays_on_that_object(scale_range, out):
  """Every pixel of every object clicked; after scale / crop / flip each click must land on a pixel
  of the same class *and instance* in the warped mask (objects >= 3 px; scale >= 0.5). The one
  exception: shrinking *and* cropping can leave an object's last row / column just outside the
  crop, so a click there may find its object nowhere near; that only happens on the crop border."""
  rng = np.random.default_rng(int(scale_range[1] * 10 + out))
  checked = 0
  for trial in range(25):
    h, w = int(rng.integers(25, 60)), int(rng.integers(25, 60))
    mask, inst, _ = _rectangles(rng, h, w, 6)
    rows, cols = np.nonzero(inst)
    # Float clicks anywhere inside their pixel (as clicks.py and the released JSON make them).
    y = tf.constant(rows + rng.uniform(0, 1, rows.size), tf.float32)
    x = tf.constant(cols + rng.uniform(0, 1, cols.size), tf.float32)
    g = augment.sample_geometry(tf.constant([trial, 7], tf.int64), h, w, (out, out), augment=True,
                                scale_range=scale_range)
    key = tf.constant(mask.astype(np.int32) * 256 + inst)
    warped = augment.warp_labels(key, g)
    r, c, clipped = augment.clip_pixels(y, x, g)
    assert not clipped.numpy().any()
    want = tf.gather_nd(key, tf.stack([r, c], -1)).numpy()
    out_r, out_c, inside = augment.warp_pixels(r, c, g)
    out_r, out_c, _ = augment.snap_clicks(out_r, out_c, want, warped, g)
    inside, out_r, out_c = inside.numpy(), out_r.numpy()[inside.numpy()], out_c.numpy()[inside.numpy()]
    wrong = warped.numpy()[out_r, out_c] != want[inside]
    if scale_range[0] >= 1 or out == 64:  # nothing shrunk, or shrunk but never cropped
      assert not wrong.any(), f"trial {trial}: {wrong.sum()} clicks off their object"
    on_border = (out_r == 0) | (out_r == int(g.crop_h) - 1) | (out_c == 0) | (
        out_c == int(g.crop_w) - 1)
    assert on_border[wrong].all(), f"trial {trial}"
    checked += inside.sum()
  assert checked > 1500


def test_transform_keeps_image_objectness_clicks_and_boxes_aligned():
  """Through transform_example: every labelled click pixel carries the class of the warped mask,
  the image / objectness under object interiors still show that object, boxes rasterise exactly
  onto the warped rectangles."""
  rng = np.random.default_rng(5)
  spec_pts = _spec(image_size=(40, 40), label_kind="all_points", scale_range=(0.5, 2.0))
  spec_box = _spec(image_size=(40, 40), label_kind="box", scale_range=(0.5, 2.0))
  spec_full = _spec(image_size=(40, 40), label_kind="full")
  for trial in range(10):
    h, w = int(rng.integers(25, 55)), int(rng.integers(25, 55))
    mask, inst, rects = _rectangles(rng, h, w, 5, min_side=4)
    image = np.repeat((mask * 10)[..., None], 3, axis=2).astype(np.uint8)
    objectness = np.where(mask > 0, 255, 0).astype(np.uint8)
    rows, cols = np.nonzero(inst)
    pick = rng.choice(rows.size, 25, replace=False)
    clicks = _points(rows[pick] + 0.5, cols[pick] + 0.5, mask[rows[pick], cols[pick]],
                     rank=np.ones(25, np.int32), annotator=np.zeros(25, np.int32))
    boxes = {"ymin": [r[2] for r in rects], "xmin": [r[3] for r in rects],
             "ymax": [r[4] for r in rects], "xmax": [r[5] for r in rects],
             "cls": [r[0] for r in rects]}
    ex = _example(mask, inst, image, clicks=clicks, boxes=boxes, objectness=objectness)
    seed = tf.constant([trial, 1], tf.int64)
    out = {k: v.numpy() for k, v in pipeline.transform_example(ex, seed, tf.constant(0), spec_pts,
                                                                train=True).items()}
    labels, sparse, valid = out["labels"], out["sparse_labels"], out["valid"]
    hit = sparse != 255
    assert hit.sum() > 0
    # Only a click the crop border left off its object may disagree, and it is counted.
    assert (sparse[hit] != labels[hit]).sum() <= out["_stat_clicks_off_object"]
    assert hit.sum() + out["_stat_points_merged"] + out["_stat_clicks_cropped"] == 25
    # Object interiors (3x3 of one label inside the valid area): image = 10 * class, P_obj = 1.
    lab = np.pad(np.where(valid, labels, -1), 1, constant_values=-1)
    same = np.ones_like(labels, bool)
    for dy in (-1, 0, 1):
      for dx in (-1, 0, 1):
        same &= lab[1 + dy:1 + dy + 40, 1 + dx:1 + dx + 40] == labels
    interior = same & valid
    np.testing.assert_allclose(out["image"][interior][:, 0], 10.0 * labels[interior], atol=1e-3)
    np.testing.assert_allclose(out["objectness"][interior],
                               np.where(labels[interior] > 0, 256 / 257, 1 / 257), atol=1e-6)
    # Same seed, box supervision: the warped tight boxes are exactly the warped rectangles.
    box = pipeline.transform_example(ex, seed, tf.constant(0), spec_box, train=True)
    np.testing.assert_array_equal(box["sparse_labels"].numpy()[valid], labels[valid])
    assert (box["sparse_labels"].numpy()[~valid] == 255).all()
    # Without augmentation nothing moves (or, when too large, the image shrinks to fit).
    full = {k: v.numpy() for k, v in pipeline.transform_example(
        ex, seed, tf.constant(0), spec_full, train=False).items()}
    if h <= 40 and w <= 40:
      np.testing.assert_array_equal(full["labels"][:h, :w], mask)
      assert full["valid"].sum() == h * w and full["valid"][:h, :w].all()
      assert full["_stat_images_shrunk"] == 0
    else:
      assert full["_stat_images_shrunk"] == 1


def test_squiggles_drawn_inside_their_object_stay_inside_it():
  rng = np.random.default_rng(11)
  spec = _spec(image_size=(48, 48), label_kind="squiggle", squiggle_radius=1,
               scale_range=(0.75, 2.0))
  total = 0
  for trial in range(8):
    mask, inst, rects = _rectangles(rng, 48, 48, 3, min_side=12, max_side=18)
    ys, xs, cls, stroke = [], [], [], []
    for k, (c, _, y0, x0, y1, x1) in enumerate(rects):
      # A stroke along the middle row with 4 px margins: radius 1 stays inside at any scale >= .75.
      for xv in np.linspace(x0 + 4, x1 - 4, 3):
        ys.append((y0 + y1) / 2), xs.append(xv), cls.append(c), stroke.append(k)
    ex = _example(mask, inst, np.zeros((48, 48, 3), np.uint8),
                  squiggles=_points(ys, xs, cls, stroke=stroke))
    out = pipeline.transform_example(ex, tf.constant([trial, 2], tf.int64), tf.constant(0), spec,
                                     train=True)
    sparse, labels = out["sparse_labels"].numpy(), out["labels"].numpy()
    hit = sparse != 255  # (a crop may show none of the strokes)
    np.testing.assert_array_equal(sparse[hit], labels[hit])
    total += hit.sum()
  assert total > 200
