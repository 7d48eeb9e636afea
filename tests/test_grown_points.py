"""Grown points (paper §5): each 1Point click becomes a disc of radius R stored-image pixels.

Hand-computed discs for small radii, the overlap rule, the disc carried through flips and scales,
the config argument (literal and scaled radii) and a tiny end-to-end run.
"""
import json

import numpy as np
import pytest
import tensorflow as tf

from pointseg_jax import errors
from pointseg_jax import train
from pointseg_jax.data import augment
from pointseg_jax.data import label_kinds
from pointseg_jax.data import rasterize
from pointseg_jax.data.spec import DataSpec
from helpers import load_config, tiny_config

_ = 255


def _discs(cy, cx, cls, weight, radius, size=(7, 7)):
  out = rasterize.rasterize_discs(tf.constant(cy, tf.float32), tf.constant(cx, tf.float32),
                                  tf.constant(cls, tf.int32), tf.constant(weight, tf.float32),
                                  radius, rasterize.pixel_centres(size))
  return [t.numpy() for t in out]


@pytest.mark.parametrize("radius, expected", [
    # Disc around the centre (3.5, 3.5) of pixel (3, 3): pixel centres are 1 (4-neighbours),
    # sqrt(2) (diagonals) and 2 (two steps along an axis) away.
    (0.0, [(3, 3)]),
    (0.5, [(3, 3)]),                                           # R < 1: the click pixel only
    (1.0, [(3, 3), (2, 3), (4, 3), (3, 2), (3, 4)]),           # exactly R away is inside
    (1.3, [(3, 3), (2, 3), (4, 3), (3, 2), (3, 4)]),           # the paper's 5 px, scaled
    (1.5, [(r, c) for r in (2, 3, 4) for c in (2, 3, 4)]),     # + the diagonals (1.414)
    (2.0, [(r, c) for r in (2, 3, 4) for c in (2, 3, 4)] + [(1, 3), (5, 3), (3, 1), (3, 5)]),
])
def test_disc_pixel_sets_by_hand(radius, expected):
  labels, weights = _discs([3.5], [3.5], [9], [1.0], radius)
  want = np.full((7, 7), _)
  for r, c in expected:
    want[r, c] = 9
  np.testing.assert_array_equal(labels, want)
  np.testing.assert_array_equal(weights, (want == 9).astype(np.float32))


def test_overlapping_discs_nearest_centre_then_heavier_then_earlier():
  # Centres of pixels (1, 1) and (1, 4), radius 2: column 2 is nearer the first (1 vs 2), column 3
  # nearer the second. Row 1 columns 2.5 apart do not tie, so add a third disc to force ties.
  labels, _w = _discs([1.5, 1.5], [1.5, 4.5], [3, 7], [1.0, 1.0], 2.0, size=(3, 6))
  np.testing.assert_array_equal(labels, [[3, 3, 3, 7, 7, 7],
                                         [3, 3, 3, 7, 7, 7],
                                         [3, 3, 3, 7, 7, 7]])
  # Centres 2 px apart (pixels (0, 0) and (0, 2)): column 1 is 1 px from both -> a tie.
  for weights, winner in (([0.5, 1.0], 7), ([1.0, 0.5], 3), ([1.0, 1.0], 3)):
    labels, w = _discs([0.5, 0.5], [0.5, 2.5], [3, 7], weights, 1.0, size=(1, 4))
    np.testing.assert_array_equal(labels, [[3, winner, 7, 7]])
    np.testing.assert_array_equal(w, [[weights[0], max(weights), weights[1], weights[1]]])
  # Equal weights in the other order: the earlier disc (now class 7) takes the tie.
  labels, _w = _discs([0.5, 0.5], [2.5, 0.5], [7, 3], [1.0, 1.0], 1.0, size=(1, 4))
  np.testing.assert_array_equal(labels, [[3, 7, 7, 7]])


def test_no_clicks_no_labels():
  labels, weights = _discs([], [], [], [], 3.0, size=(2, 3))
  assert (labels == _).all() and (weights == 0).all()


# ----------------------------------------------------------------- through the label kind ---

def _geometry(h, w, scaled_h, scaled_w, oy, ox, ch, cw, flip):
  c = lambda v: tf.constant(v, tf.int32)
  return augment.Geometry(c(h), c(w), c(scaled_h), c(scaled_w), c(oy), c(ox), c(ch), c(cw),
                          tf.constant(flip))


def _grow(clicks, geometry, out_size, radius, mask=None, kind="grown_points"):
  """sparse labels / weights of `grown_points` (or another click kind) for clicks (y, x, cls,
  rank, annotator)."""
  h, w = int(geometry.height), int(geometry.width)
  mask = np.zeros((h, w), np.int32) if mask is None else mask
  y, x, cls, rank, ann = (list(v) for v in zip(*clicks)) if clicks else ([],) * 5
  example = {"id": tf.constant("t"), "clicks": {
      "y": tf.constant(y, tf.float32), "x": tf.constant(x, tf.float32),
      "cls": tf.constant(cls, tf.int32), "rank": tf.constant(rank, tf.int32),
      "annotator": tf.constant(ann, tf.int32)}}
  key = tf.constant(mask * 256)
  warped = augment.warp_labels(key, geometry)
  warp = label_kinds.Warp(geometry, key, warped, augment.pad_to(warped // 256, out_size, 255),
                          out_size)
  spec = DataSpec(dataset="test", label_kind=kind, point_radius=radius)
  labels, weights, counters, _checks = label_kinds.LABEL_KINDS[kind].rasterise(
      example, spec, warp)
  return labels.numpy(), weights.numpy(), {k: int(v) for k, v in counters.items()}


def _cells(labels, value):
  return sorted(map(tuple, np.argwhere(labels == value).tolist()))


def test_only_first_clicks_of_annotator_0_are_grown_unwarped():
  # Click in pixel (4, 6) of a 10x10 image; annotator 1's click and annotator 0's rank-2 click
  # (not 1Point) are left out.
  g = _geometry(10, 10, 10, 10, 0, 0, 10, 10, False)
  clicks = [(4.2, 6.7, 5, 1, 0), (1.0, 1.0, 8, 2, 0), (8.5, 1.5, 9, 1, 1)]
  labels, weights, _c = _grow(clicks, g, (10, 10), 1.0)
  assert _cells(labels, 5) == [(3, 6), (4, 5), (4, 6), (4, 7), (5, 6)]
  assert (labels[labels != 5] == _).all() and weights.sum() == 5


def test_flip_mirrors_the_disc():
  g = _geometry(10, 10, 10, 10, 0, 0, 10, 10, True)
  labels, _w, _c = _grow([(4.2, 6.7, 5, 1, 0)], g, (10, 10), 1.0)
  # Column 6 shows at 10 - 1 - 6 = 3.
  assert _cells(labels, 5) == [(3, 3), (4, 2), (4, 3), (4, 4), (5, 3)]


def test_doubling_the_image_doubles_the_disc():
  # 10x10 -> 20x20: radius 1 stored px = 2 output px around the output point (9, 13) (the
  # clicked pixel's centre (4.5, 6.5) times 2). Output centres j + 0.5 within 2: rows 7..10,
  # columns 11..14, minus the four corners (1.5^2 + 1.5^2 > 4).
  g = _geometry(10, 10, 20, 20, 0, 0, 20, 20, False)
  labels, _w, _c = _grow([(4.2, 6.7, 5, 1, 0)], g, (20, 20), 1.0)
  block = [(r, c) for r in range(7, 11) for c in range(11, 15)]
  corners = {(7, 11), (7, 14), (10, 11), (10, 14)}
  assert _cells(labels, 5) == sorted(set(block) - corners)


def test_halving_the_image_keeps_the_click_pixel_even_when_the_disc_misses_every_centre():
  # 10x10 -> 5x5: output centres sit at stored 1, 3, 5, 7, 9; the nearest to (4.5, 6.5) is
  # sqrt(0.5) = 0.71 away, beyond R = 0.5. The click's own output pixel (target_index: (2, 3))
  # is labelled as the point kind labels it, so a click never vanishes.
  g = _geometry(10, 10, 5, 5, 0, 0, 5, 5, False)
  labels, weights, _c = _grow([(4.2, 6.7, 5, 1, 0)], g, (5, 5), 0.5)
  assert _cells(labels, 5) == [(2, 3)] and weights.sum() == 1
  labels, _w, _c = _grow([(4.2, 6.7, 5, 1, 0)], g, (5, 5), 1.0)   # now (5, 7) is within 1
  assert _cells(labels, 5) == [(2, 3)]
  labels, _w, _c = _grow([(4.2, 6.7, 5, 1, 0)], g, (5, 5), 2.0)
  # Stored centres (3|5, 5|7) within 2 of (4.5, 6.5): (3, 7), (5, 5), (5, 7) (distance^2 2.5,
  # 2.5, 0.5); (3, 5) is 1.5^2 + 1.5^2 = 4.5 > 4 away.
  assert _cells(labels, 5) == [(1, 3), (2, 2), (2, 3)]


def test_clicked_pixel_keeps_its_own_click_and_crop_drops_discs_outside():
  # Two classes' clicks 2 px apart with radius 3: each clicked pixel keeps its own class.
  g = _geometry(8, 8, 8, 8, 0, 0, 8, 8, False)
  labels, _w, counters = _grow([(3.5, 2.5, 4, 1, 0), (3.5, 4.5, 6, 1, 0)], g, (8, 8), 3.0)
  assert labels[3, 2] == 4 and labels[3, 4] == 6 and labels[3, 3] in (4, 6)
  assert counters["clicks_cropped"] == 0
  # Crop rows 4..7 only: the click (row 3) is cropped away, its disc still reaches row 4..5.
  g = _geometry(8, 8, 8, 8, 4, 0, 4, 8, False)
  labels, _w, counters = _grow([(3.5, 2.5, 4, 1, 0)], g, (4, 8), 2.0)
  assert counters["clicks_cropped"] == 1
  assert _cells(labels, 4) == [(0, 1), (0, 2), (0, 3), (1, 2)]


def test_radius_half_a_pixel_is_one_point_at_the_sweeps_scale():
  """Table 1 v2's grown_r0.5 (the paper's r = 2 VOC px scaled to 128 px) trained bit for bit
  what `point` trained (docs/experiments.md, "Execution log"): at 128 -> 96 px, output centres
  are 4/3 stored px apart, so a disc of radius 0.5 holds no centre but the click's own pixel's.
  Same labels and weights as the one_point kind, click by click."""
  g = _geometry(128, 128, 96, 96, 0, 0, 96, 96, False)
  rng = np.random.default_rng(0)
  for _ in range(3):   # 60 clicks: 20 classes at a time, one cell of a 4 x 5 grid each
    cells = [(r * 32, c * 25) for r in range(4) for c in range(5)]
    clicks = [(float(r + rng.uniform(2, 30)), float(c + rng.uniform(2, 23)), cls, 1, 0)
              for cls, (r, c) in enumerate(cells, start=1)]
    grown_labels, grown_weights, _c = _grow(clicks, g, (96, 96), 0.5)
    point_labels, point_weights, _c = _grow(clicks, g, (96, 96), 0.5, kind="one_point")
    assert (grown_labels == point_labels).all() and (grown_weights == point_weights).all()
    assert [(grown_labels == cls).sum() for cls in range(1, 21)] == [1] * 20
  # A radius that reaches a neighbouring centre is no longer one point.
  labels, _w, _c = _grow([(64.5, 64.5, 7, 1, 0)], g, (96, 96), 1.3)
  assert (labels == 7).sum() > 1


# ------------------------------------------------------------------------------- config ---

def test_radius_argument_literal_and_scaled():
  assert load_config("grown_points", None).data.point_radius == 1.3
  assert load_config("grown_points", "radius=6.4").data.point_radius == 6.4
  assert load_config("grown_points", "25").data.point_radius == 25.0
  assert load_config("grown_points", "voc,radius=0.5").data.point_radius == 0.5
  assert load_config("grown_points", None).data.label_kind == "grown_points"
  with pytest.raises(errors.ConfigError, match="config.data.point_radius = -1.0"):
    load_config("grown_points", "radius=-1")
  with pytest.raises(errors.ConfigError, match="radius='x' of regime 'grown_points' must be float"):
    load_config("grown_points", "radius=x")
  with pytest.raises(errors.ConfigError, match="point_radius"):
    DataSpec(point_radius=float("nan"))


@pytest.mark.slow   # ~2 min on one busy core: compiles a train step
def test_tiny_end_to_end_run(tiny_data_dir, tmp_path):
  config = tiny_config(tiny_data_dir, name="grown_points", train__num_steps=2,
                       train__checkpoint_every=2, train__eval_every=100)
  config.data.point_radius = 2.0
  result = train.train_and_evaluate(config, tmp_path)
  assert result["step"] == 2 and result["regime"] == "grown_points"
  assert 0.0 <= result["eval/miou"] <= 1.0
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  points = [r["train/point"] for r in rows if "train/point" in r]
  assert len(points) == 2 and all(np.isfinite(points)) and all(p > 0 for p in points)
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["data"]["label_kind"] == "grown_points" and saved["data"]["point_radius"] == 2.0


def test_point_radius_is_part_of_a_runs_identity_only_for_grown_points():
  """Adding the field to every config must not make older workdirs (which lack it) refuse to
  resume: outside grown_points it says nothing about the run (workdir.identity)."""
  from pointseg_jax import workdir
  point = load_config("point", None)
  assert "data.point_radius" not in workdir.identity(point)
  old = point.to_dict()
  del old["data"]["point_radius"]
  assert workdir.differences(old, point) == []
  grown = load_config("grown_points", "radius=2")
  assert workdir.identity(grown)["data.point_radius"] == 2.0
  assert workdir.differences(load_config("grown_points", "radius=5").to_dict(), grown) == [
      "data.point_radius: 5.0 -> 2.0"]
