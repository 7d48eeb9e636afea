"""Click simulator: hand-computed cases, error-rate statistics on random and real VOC masks."""
import glob
import os

import numpy as np
import pytest
from scipy import ndimage

from pointseg_jax import IGNORE_INDEX
from pointseg_jax import labels
from pointseg_jax.data import clicks as C
import reference_rasterize as R


def random_masks(rng, void_band=True):
  """1-4 random ellipses (random classes, may overlap) on background, VOC-style 1 px void bands."""
  h, w = int(rng.integers(48, 97)), int(rng.integers(48, 97))
  mask = np.zeros((h, w), np.uint8)
  inst = np.zeros((h, w), np.uint8)
  yy, xx = np.mgrid[:h, :w]
  for i in range(1, int(rng.integers(1, 5)) + 1):
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(4, h / 3), rng.uniform(4, w / 3)
    region = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    mask[region], inst[region] = int(rng.integers(1, 21)), i
  if void_band:
    edge = np.zeros((h, w), bool)
    for i in np.unique(inst[inst > 0]):
      r = inst == i
      edge |= ndimage.binary_dilation(r) & ~r
    mask[edge], inst[edge] = IGNORE_INDEX, IGNORE_INDEX
  return mask, inst


def click_stats(masks, rng, error_model=C.CrowdErrorModel(), num_annotators=3):
  """(missed (annotator, class) pairs, pairs, clicks off their class, on void, clicks)."""
  missed = pairs = off = void = n = 0
  for mask, inst in masks:
    out = C.simulate_annotations(mask, inst, rng, num_annotators=num_annotators,
                                 error_model=error_model)["clicks"]
    present = set(C.present_classes(mask))
    for a in range(num_annotators):
      pairs += len(present)
      missed += len(present - set(out["cls"][out["annotator"] == a].tolist()))
    r, c = R.pixel_of(out["y"], out["x"], mask.shape)
    off += int((mask[r, c] != out["cls"]).sum())
    void += int((mask[r, c] == IGNORE_INDEX).sum())
    n += len(r)
  return missed, pairs, off, void, n


@pytest.fixture(scope="module")
def masks():
  rng = np.random.default_rng(123)
  return [random_masks(rng) for _ in range(500)]


def _within(k, n, p, sds=4.0):
  """k successes out of n is within `sds` binomial standard deviations of rate p."""
  return abs(k / n - p) <= sds * np.sqrt(p * (1 - p) / n) + 1e-12


def test_error_rates_match_the_paper_model(masks):
  em = C.CrowdErrorModel()
  missed, pairs, off, void, n = click_stats(masks, np.random.default_rng(0))
  assert n > 3000 and pairs > 3000
  assert _within(missed, pairs, em.missed_class), missed / pairs       # 1.0 % missed classes
  assert _within(off, n, em.outside_rate), off / n                     # 8.0 % outside the object
  assert _within(void, n, em.void_click), void / n                     # 0.8 % of them on void


def test_error_rates_follow_other_settings(masks):
  em = C.CrowdErrorModel(missed_class=0.2, wrong_class=0.25, void_click=0.1)
  missed, pairs, off, void, n = click_stats(masks[:250], np.random.default_rng(1), em)
  assert _within(missed, pairs, 0.2) and _within(off, n, 0.35) and _within(void, n, 0.1)
  missed, _, off, _, n = click_stats(masks[:100], np.random.default_rng(2), C.NO_ERRORS)
  assert missed == 0 and off == 0 and n > 0


def test_misclicks_land_just_outside_the_object(masks):
  em = C.CrowdErrorModel(wrong_class=0.5, void_click=0.5)
  rng = np.random.default_rng(3)
  for mask, inst in masks[:60]:
    out = C.simulate_annotations(mask, inst, rng, error_model=em)["clicks"]
    r, c = R.pixel_of(out["y"], out["x"], mask.shape)
    insts = C.find_instances(mask, inst)
    for cls, rr, cc in zip(out["cls"], r, c):
      assert mask[rr, cc] != cls
      # Distance to the nearest instance of the class (nearest wrong pixel of a ring 1 px away
      # + the spread of 3 px + 5 % of the instance size).
      dist = min(ndimage.distance_transform_edt(~i.region)[rr, cc] for i in insts if i.cls == cls)
      limit = max(2 + em.outside_spread + 0.05 * np.sqrt(i.area) for i in insts if i.cls == cls)
      assert dist <= limit + 1.5, (dist, limit)


def test_ranks_consecutive_and_ordered_by_size(masks):
  rng = np.random.default_rng(4)
  checked = 0
  for mask, inst in masks[:200]:
    out = C.simulate_annotations(mask, inst, rng, error_model=C.NO_ERRORS)["clicks"]
    insts = C.find_instances(mask, inst)
    r, c = R.pixel_of(out["y"], out["x"], mask.shape)
    for a in range(3):
      for cls in set(out["cls"].tolist()):
        sel = (out["annotator"] == a) & (out["cls"] == cls)
        ranks = out["rank"][sel]
        mine = [i for i in insts if i.cls == cls]                    # sorted largest first
        expected = len(mine) if a == 0 else 1                        # annotator 0 clicks all
        np.testing.assert_array_equal(ranks, np.arange(1, expected + 1))
        for rank, rr, cc in zip(ranks, r[sel], c[sel]):
          assert mine[rank - 1].region[rr, cc]                       # k-th largest instance
          checked += 1
  assert checked > 500
  # With missed instances the ranks stay consecutive 1..n.
  em = C.CrowdErrorModel(missed_instance=0.5)
  for mask, inst in masks[:200]:
    out = C.simulate_annotations(mask, inst, rng, error_model=em)["clicks"]
    for a, cls in set(zip(out["annotator"].tolist(), out["cls"].tolist())):
      ranks = out["rank"][(out["annotator"] == a) & (out["cls"] == cls)]
      np.testing.assert_array_equal(ranks, np.arange(1, len(ranks) + 1))


def test_everything_inside_the_image_with_exact_dtypes(masks):
  rng = np.random.default_rng(5)
  for mask, inst in masks[:100]:
    out = C.simulate_annotations(mask, inst if rng.random() < 0.5 else None, rng)
    h, w = mask.shape
    assert set(out) == {"clicks", "random_clicks", "background_clicks", "squiggles", "boxes"}
    for key in ("clicks", "random_clicks", "background_clicks", "squiggles"):
      d = out[key]
      assert d["y"].dtype == np.float32 and d["x"].dtype == np.float32 and d["cls"].dtype == np.int32
      assert ((d["y"] >= 0) & (d["y"] < h) & (d["x"] >= 0) & (d["x"] < w)).all(), key
    b = out["boxes"]
    assert ((b["ymin"] >= 0) & (b["ymin"] < b["ymax"]) & (b["ymax"] <= h)).all()
    assert ((b["xmin"] >= 0) & (b["xmin"] < b["xmax"]) & (b["xmax"] <= w)).all()


def test_deterministic_for_a_seed(masks):
  mask, inst = masks[7]
  a = C.simulate_annotations(mask, inst, np.random.default_rng(99))
  b = C.simulate_annotations(mask, inst, np.random.default_rng(99))
  c = C.simulate_annotations(mask, inst, np.random.default_rng(100))
  for key in a:
    for field in a[key]:
      np.testing.assert_array_equal(a[key][field], b[key][field])
  assert not np.array_equal(a["clicks"]["x"], c["clicks"]["x"])


def _disk(radius=40, size=101):
  yy, xx = np.mgrid[:size, :size]
  return (((yy - size // 2) ** 2 + (xx - size // 2) ** 2) <= radius ** 2).astype(np.uint8) * 7


def test_centre_bias_matches_the_analytic_mean():
  """On a disk of radius R, weight d**p at depth d (density ∝ d**p (R - d)) gives
  E[d / R] = 1/3 for p = 0 (uniform), (1/4 - 1/5) / (1/3 - 1/4) = 0.6 for p = 2."""
  mask = _disk()
  region = mask == 7
  depth = ndimage.distance_transform_edt(region)
  rng = np.random.default_rng(6)
  for power, expected in ((0.0, 1 / 3), (2.0, 0.6)):
    inst = C.Instance(7, region, int(region.sum()))     # caches the weights across samples
    pts = [inst.centre_biased_pixel(rng, power) for _ in range(3000)]
    y, x = C.centre_biased_pixel(region, rng, power=power)    # the uncached function, same code
    assert region[int(y), int(x)]
    r, c = R.pixel_of(*np.array(pts).T, mask.shape)
    assert abs(depth[r, c].mean() / 40.5 - expected) < 0.02, (power, depth[r, c].mean() / 40.5)


def test_float_coordinates_floor_to_the_clicked_pixel():
  region = np.zeros((600, 600), bool)
  region[599, 599] = True
  rng = np.random.default_rng(7)
  for _ in range(200):
    y, x = C.uniform_pixel(region, rng)
    assert np.floor(np.float32(y)) == 599 and np.floor(np.float32(x)) == 599


def test_random_points_uniform_in_class():
  mask = np.zeros((20, 40), np.uint8)
  mask[:, :10] = 3                # 200 px, of which the left half (cols 0..4) holds 100
  mask[5:10, 30:] = 9
  rng = np.random.default_rng(8)
  left = 0
  for _ in range(2000):
    out = C.random_points(mask, rng)
    np.testing.assert_array_equal(out["cls"], [3, 9])
    r, c = R.pixel_of(out["y"], out["x"], mask.shape)
    np.testing.assert_array_equal(mask[r, c], [3, 9])
    left += int(c[0] < 5)
  assert _within(left, 2000, 0.5)
  out = C.random_points(mask, rng, per_class=4)
  np.testing.assert_array_equal(out["cls"], [3] * 4 + [9] * 4)


def test_boxes_hand_computed():
  mask = np.zeros((10, 12), np.uint8)
  mask[2:5, 3:8] = 4              # rows 2..4, cols 3..7
  mask[7:9, 0:2] = 4
  mask[6, 9] = 11
  out = C.boxes(C.find_instances(mask))
  np.testing.assert_array_equal(out["cls"], [4, 4, 11])           # by class, then largest first
  np.testing.assert_array_equal(out["ymin"], [2, 7, 6])
  np.testing.assert_array_equal(out["xmin"], [3, 0, 9])
  np.testing.assert_array_equal(out["ymax"], [5, 9, 7])
  np.testing.assert_array_equal(out["xmax"], [8, 2, 10])
  np.testing.assert_array_equal(R.rasterize_boxes(out, mask.shape), mask)      # tight = the mask


def test_rasterize_boxes_smaller_wins():
  boxes = {"ymin": np.array([0.0, 1.0]), "xmin": np.array([0.0, 1.0]),
           "ymax": np.array([4.0, 3.0]), "xmax": np.array([4.0, 2.0]), "cls": np.array([5, 6])}
  expected = np.array([[5, 5, 5, 5, 0],
                       [5, 6, 5, 5, 0],
                       [5, 6, 5, 5, 0],
                       [5, 5, 5, 5, 0]])                         # outside every box: background
  np.testing.assert_array_equal(R.rasterize_boxes(boxes, (4, 5)), expected)
  # Order of the list does not matter: the larger box is drawn first.
  rev = {k: v[::-1] for k, v in boxes.items()}
  np.testing.assert_array_equal(R.rasterize_boxes(rev, (4, 5)), expected)
  assert (R.rasterize_boxes(boxes, (4, 5), outside=255)[:, 4] == 255).all()


def test_rasterize_points_hand_computed():
  out = R.rasterize_points(np.array([1.7, 3.2]), np.array([0.2, 9.9]), np.array([2, 8]), (5, 6))
  expected = np.full((5, 6), 255)
  expected[1, 0] = 2
  expected[3, 5] = 8                                         # x = 9.9 clipped into the image
  np.testing.assert_array_equal(out, expected)
  disk = R.rasterize_points(np.array([2.5]), np.array([2.5]), np.array([1]), (5, 5), radius=1)
  np.testing.assert_array_equal(disk == 1, [[0, 0, 0, 0, 0],
                                            [0, 0, 1, 0, 0],
                                            [0, 1, 1, 1, 0],
                                            [0, 0, 1, 0, 0],
                                            [0, 0, 0, 0, 0]])


def test_reference_rasteriser_rejects_nan_coordinates():
  """Issue 15: a NaN click used to end as `IndexError: index -9223372036854775808`."""
  with pytest.raises(ValueError, match=r"click coordinates must be finite, got y=\[nan\]"):
    R.rasterize_points(np.array([np.nan]), np.array([1.0]), np.array([3]), (4, 4))


def test_rasterize_squiggles_hand_computed():
  sq = {"y": np.array([2.5, 2.5, 6.5, 6.5], np.float32), "x": np.array([1.5, 5.5, 2.5, 2.5], np.float32),
        "cls": np.array([4, 4, 9, 9]), "stroke": np.array([0, 0, 1, 1])}
  out = R.rasterize_squiggles(sq, (8, 8), radius=0)
  expected = np.full((8, 8), 255)
  expected[2, 1:6] = 4                      # the horizontal stroke, every pixel from x=1 to 5
  expected[6, 2] = 9                        # a stroke of one repeated point
  np.testing.assert_array_equal(out, expected)
  wide = R.rasterize_squiggles(sq, (8, 8), radius=1)
  # Pixel centres within 1 px of the segment (2.5, 1.5)-(2.5, 5.5): rows 1..3 over cols 1..5, and
  # the end caps (2, 0), (2, 6); (1, 0) is sqrt(2) from the end point.
  assert (wide[1:4, 1:6] == 4).all() and wide[2, 0] == wide[2, 6] == 4
  assert wide[1, 0] == wide[1, 6] == 255 and (wide == 4).sum() == 17
  # The two strokes are not joined even though they are consecutive in the list.
  assert (out[3:6] == 255).all()


def test_squiggles_stay_inside_their_instance(masks):
  rng = np.random.default_rng(9)
  for mask, inst in masks[:80]:
    insts = C.find_instances(mask, inst)
    sq = C.squiggles(insts, rng, num_points=8)
    assert set(sq["stroke"].tolist()) == set(range(len(insts)))
    dense = R.densify_strokes(sq, spacing=0.25)
    r, c = R.pixel_of(dense["y"], dense["x"], mask.shape)
    np.testing.assert_array_equal(mask[r, c], dense["cls"])
    for s, i in enumerate(insts):
      rr, cc = R.pixel_of(sq["y"][sq["stroke"] == s], sq["x"][sq["stroke"] == s], mask.shape)
      assert i.region[rr, cc].all() and 1 <= len(rr) <= 8
  # A big object gets the full stroke of 8 points spanning about its width.
  sq = C.squiggles(C.find_instances(_disk()), np.random.default_rng(10), num_points=8)
  assert len(sq["y"]) == 8
  length = np.hypot(np.diff(sq["y"]), np.diff(sq["x"])).sum()
  assert abs(length - 0.6 * np.sqrt((_disk() > 0).sum())) < 1.0


def test_background_clicks_inside_background():
  mask = np.zeros((30, 30), np.uint8)
  mask[10:20, 10:20] = 5
  mask[9, 9:21] = IGNORE_INDEX
  out = C.background_clicks(mask, np.random.default_rng(11), num=50, margin=5)
  assert (out["cls"] == 0).all() and len(out["cls"]) == 50
  r, c = R.pixel_of(out["y"], out["x"], mask.shape)
  dist = ndimage.distance_transform_edt(mask == 0)
  assert (mask[r, c] == 0).all() and (dist[r, c] >= 5).all()
  assert len(C.background_clicks(np.full((4, 4), 3, np.uint8), np.random.default_rng(0))["y"]) == 0


def test_instances_from_instance_mask_and_components():
  mask = np.zeros((10, 20), np.uint8)
  mask[1:4, 1:5] = 8                       # two cats touching: one component, two instance ids
  mask[1:4, 5:7] = 8
  mask[6:9, 10:19] = 15
  mask[0, 19] = 15                         # a 1-px speck: 3.7 % of the person
  inst = np.zeros_like(mask)
  inst[1:4, 1:5], inst[1:4, 5:7], inst[6:9, 10:19] = 1, 2, 3
  got = C.find_instances(mask, inst)
  assert [(i.cls, i.area) for i in got] == [(8, 12), (8, 6), (15, 27)]
  got = C.find_instances(mask)             # components: the cats merge; 3.7 % >= 1 %: kept
  assert [(i.cls, i.area) for i in got] == [(8, 18), (15, 27), (15, 1)]
  got = C.find_instances(mask, None, min_component_fraction=0.05)      # speck dropped
  assert [(i.cls, i.area) for i in got] == [(8, 18), (15, 27)]


def test_select_clicks_regimes():
  clicks = {"y": np.arange(5, dtype=np.float32), "x": np.zeros(5, np.float32),
            "cls": np.array([1, 1, 2, 1, 1]), "rank": np.array([1, 2, 1, 1, 1]),
            "annotator": np.array([0, 0, 0, 1, 2])}
  np.testing.assert_array_equal(C.select_clicks(clicks, max_rank=1)["y"], [0, 2])
  np.testing.assert_array_equal(C.select_clicks(clicks)["y"], [0, 1, 2])
  np.testing.assert_array_equal(C.select_clicks(clicks, annotators=(0, 1, 2), max_rank=1)["y"],
                                [0, 2, 3, 4])


# ----------------------------------------------------------------------------------------------
# The 14 real VOC val masks.


@pytest.fixture(scope="module")
def voc_masks(testdata_dir):
  paths = sorted(glob.glob(os.path.join(testdata_dir, "voc_val_samples", "*_target.png")))
  assert len(paths) == 14
  return [labels.read_label_png(p) for p in paths]


def test_real_voc_masks(voc_masks):
  """Rates, ranks and coordinates on real object shapes (the images' void bands and thin parts)."""
  em = C.CrowdErrorModel()
  rng = np.random.default_rng(12)
  off = void = n = missed = pairs = 0
  for mask in voc_masks:
    insts = C.find_instances(mask)
    present = set(C.present_classes(mask))
    assert present and insts
    for _ in range(25):
      out = C.concat([C.all_points(insts, mask, rng, annotator=0)]
                     + [C.one_point(insts, mask, rng, annotator=a) for a in (1, 2)])
      h, w = mask.shape
      assert ((out["y"] >= 0) & (out["y"] < h) & (out["x"] >= 0) & (out["x"] < w)).all()
      for a in range(3):
        got = out["cls"][out["annotator"] == a]
        missed += len(present - set(got.tolist()))
        pairs += len(present)
        for cls in set(got.tolist()):
          ranks = out["rank"][(out["annotator"] == a) & (out["cls"] == cls)]
          np.testing.assert_array_equal(ranks, np.arange(1, len(ranks) + 1))
      r, c = R.pixel_of(out["y"], out["x"], mask.shape)
      off += int((mask[r, c] != out["cls"]).sum())
      void += int((mask[r, c] == IGNORE_INDEX).sum())
      n += len(r)
  assert n > 1000
  assert _within(off, n, em.outside_rate), off / n
  assert _within(void, n, em.void_click), void / n
  assert _within(missed, pairs, em.missed_class), missed / pairs
  full = C.simulate_annotations(voc_masks[0], None, np.random.default_rng(0))
  r, c = R.pixel_of(full["random_clicks"]["y"], full["random_clicks"]["x"], voc_masks[0].shape)
  np.testing.assert_array_equal(voc_masks[0][r, c], full["random_clicks"]["cls"])
