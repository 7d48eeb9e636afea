"""rasterize.py: hand-placed clicks, squiggles and boxes against hand-written label maps."""
import numpy as np
import pytest
import tensorflow as tf

from pointseg_jax.data import augment
from pointseg_jax.data import rasterize
import reference_rasterize

_ = 255  # unlabelled, so the expected maps below read as pictures
C = rasterize.pixel_centres  # an un-warped output grid


def _np(t):
  return [x.numpy() for x in t]


def test_rank_weights_are_powers_of_one_half():
  np.testing.assert_array_equal(rasterize.rank_weight(tf.constant([1, 2, 3, 4])).numpy(),
                                [1.0, 0.5, 0.25, 0.125])


def test_points_one_pixel_each_with_class_and_weight():
  labels, weights = _np(rasterize.rasterize_points(
      tf.constant([0, 2, 3]), tf.constant([1, 4, 0]), tf.constant([7, 0, 15]),
      tf.constant([1.0, 0.5, 0.25]), (4, 5)))
  np.testing.assert_array_equal(labels, [[_, 7, _, _, _],
                                         [_, _, _, _, _],
                                         [_, _, _, _, 0],
                                         [15, _, _, _, _]])
  np.testing.assert_array_equal(weights, [[0, 1, 0, 0, 0],
                                          [0, 0, 0, 0, 0],
                                          [0, 0, 0, 0, .5],
                                          [.25, 0, 0, 0, 0]])


def test_points_on_one_pixel_larger_weight_then_earlier_point_wins():
  # Pixel (1, 1): class 3 weight 0.5 first, class 9 weight 1 second -> 9 wins (larger weight).
  # Pixel (0, 0): classes 4 and 5 with equal weight -> the earlier (4) wins, in either order given.
  for order in ([0, 1, 2, 3], [1, 0, 3, 2]):
    rows = tf.gather(tf.constant([1, 1, 0, 0]), order)
    cols = tf.gather(tf.constant([1, 1, 0, 0]), order)
    cls = tf.gather(tf.constant([3, 9, 4, 5]), order)
    w = tf.gather(tf.constant([0.5, 1.0, 1.0, 1.0]), order)
    labels, weights = _np(rasterize.rasterize_points(rows, cols, cls, w, (2, 2)))
    first_of_tie = 4 if order[2] == 2 else 5
    np.testing.assert_array_equal(labels, [[first_of_tie, _], [_, 9]])
    np.testing.assert_array_equal(weights, [[1, 0], [0, 1]])


def test_no_points_no_labels():
  empty_i, empty_f = tf.zeros([0], tf.int32), tf.zeros([0], tf.float32)
  labels, weights = _np(rasterize.rasterize_points(empty_i, empty_i, empty_i, empty_f, (2, 3)))
  assert (labels == 255).all() and (weights == 0).all()


def test_polyline_segment_with_radius_one():
  # A horizontal stroke at y = 3.5 from x = 2.5 to x = 6.5, radius 1: pixel centres (r + .5, c + .5)
  # within distance 1 -> rows 2..4 for columns 2..6 (distance 0 or exactly 1), plus the two end caps
  # on row 3 (columns 1 and 7, distance exactly 1); corners like (2, 1) are sqrt(2) away.
  labels, weights = _np(rasterize.rasterize_polylines(
      tf.constant([3.5, 3.5]), tf.constant([2.5, 6.5]), tf.constant([11, 11]),
      tf.constant([0, 0]), 1.0, C((6, 9))))
  np.testing.assert_array_equal(labels, [[_, _, _, _, _, _, _, _, _],
                                         [_, _, _, _, _, _, _, _, _],
                                         [_, _, 11, 11, 11, 11, 11, _, _],
                                         [_, 11, 11, 11, 11, 11, 11, 11, _],
                                         [_, _, 11, 11, 11, 11, 11, _, _],
                                         [_, _, _, _, _, _, _, _, _]])
  np.testing.assert_array_equal(weights, (labels != 255).astype(np.float32))


def test_polyline_single_point_stroke_is_a_disc():
  # One point at (5, 5), radius 1.6: centres at offsets (+-.5, +-.5) (d^2 = .5) and
  # (+-1.5, +-.5), (+-.5, +-1.5) (d^2 = 2.5 <= 2.56) -> 12 pixels; (+-1.5, +-1.5) is out.
  labels, _w = _np(rasterize.rasterize_polylines(
      tf.constant([5.0]), tf.constant([5.0]), tf.constant([2]), tf.constant([0]), 1.6, C((9, 9))))
  expect = np.full((9, 9), 255)
  expect[4:6, 3:7] = 2
  expect[3:7, 4:6] = 2
  np.testing.assert_array_equal(labels, expect)


def test_polylines_only_join_points_of_the_same_stroke_and_nearest_wins():
  # Stroke 0 (class 1): (1.5, 1.5)-(1.5, 5.5). Stroke 1 (class 2): a lone point at (3.5, 5.5).
  # They are not joined (different stroke ids), so row 2 between them is labelled only near each.
  labels, _w = _np(rasterize.rasterize_polylines(
      tf.constant([1.5, 1.5, 3.5]), tf.constant([1.5, 5.5, 5.5]), tf.constant([1, 1, 2]),
      tf.constant([0, 0, 1]), 1.0, C((5, 8))))
  # (2, 5) is exactly 1 from both strokes: the earlier segment (class 1) keeps it.
  np.testing.assert_array_equal(labels, [[_, 1, 1, 1, 1, 1, _, _],
                                         [1, 1, 1, 1, 1, 1, 1, _],
                                         [_, 1, 1, 1, 1, 1, _, _],
                                         [_, _, _, _, 2, 2, 2, _],
                                         [_, _, _, _, _, 2, _, _]])


def test_boxes_smallest_covering_box_wins_and_background_outside():
  # Box A (class 3) rows 0..3, cols 0..4 (area 20); box B (class 8) rows 1..2, cols 2..3 inside it.
  labels, weights = _np(rasterize.rasterize_boxes(
      tf.constant([0.0, 1.0]), tf.constant([0.0, 2.0]), tf.constant([4.0, 3.0]),
      tf.constant([5.0, 4.0]), tf.constant([3, 8]), C((5, 6))))
  np.testing.assert_array_equal(labels, [[3, 3, 3, 3, 3, 0],
                                         [3, 3, 8, 8, 3, 0],
                                         [3, 3, 8, 8, 3, 0],
                                         [3, 3, 3, 3, 3, 0],
                                         [0, 0, 0, 0, 0, 0]])
  assert (weights == 1).all()


def test_boxes_equal_area_earlier_wins_and_no_boxes_is_all_background():
  labels, _w = _np(rasterize.rasterize_boxes(
      tf.constant([0.0, 0.0]), tf.constant([0.0, 1.0]), tf.constant([1.0, 1.0]),
      tf.constant([2.0, 3.0]), tf.constant([5, 6]), C((1, 4))))
  np.testing.assert_array_equal(labels, [[5, 5, 6, 0]])
  empty = tf.zeros([0], tf.float32)
  labels, _w = _np(rasterize.rasterize_boxes(empty, empty, empty, empty, tf.zeros([0], tf.int32),
                                             C((2, 2))))
  np.testing.assert_array_equal(labels, np.zeros((2, 2)))


def test_boxes_and_squiggles_agree_with_the_numpy_reference():
  rng = np.random.default_rng(0)
  y0, x0 = rng.integers(0, 20, 6).astype(np.float32), rng.integers(0, 20, 6).astype(np.float32)
  boxes = {"ymin": y0, "xmin": x0, "ymax": y0 + rng.integers(1, 12, 6),
           "xmax": x0 + rng.integers(1, 12, 6), "cls": rng.integers(1, 21, 6).astype(np.int32)}
  ours, _w = _np(rasterize.rasterize_boxes(*(tf.constant(boxes[k]) for k in
                                             ("ymin", "xmin", "ymax", "xmax", "cls")), C((30, 30))))
  np.testing.assert_array_equal(ours, reference_rasterize.rasterize_boxes(boxes, (30, 30)))
  squiggles = {"y": rng.uniform(0, 30, 12).astype(np.float32),
               "x": rng.uniform(0, 30, 12).astype(np.float32),
               "cls": np.repeat([4, 9, 4], 4).astype(np.int32),
               "stroke": np.repeat([0, 1, 2], 4).astype(np.int32)}
  for radius in (2, 5):
    ours, _w = _np(rasterize.rasterize_polylines(*(tf.constant(squiggles[k]) for k in
                                                   ("y", "x", "cls", "stroke")), radius,
                                                 C((30, 30))))
    np.testing.assert_array_equal(ours, reference_rasterize.rasterize_squiggles(squiggles, (30, 30), radius))


def test_nan_coordinates_stop_with_a_clear_error():
  """Issue 15: a NaN click used to become pixel INT_MIN, then pixel 0 (points) or vanish (boxes)."""
  nan = tf.constant([1.0, float("nan")])
  message = r"coordinate x is NaN or infinite: the dataset record is corrupt"
  g = augment.sample_geometry(tf.constant([0, 0], tf.int64), 4, 4, (4, 4), augment=False)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    augment.clip_pixels(tf.constant([1.0, 2.0]), nan, g)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    rasterize.rasterize_polylines(tf.constant([1.0, 2.0]), nan, tf.constant([3, 3]),
                                  tf.constant([0, 0]), 1, C((4, 4)))
  one = tf.constant([1.0, 1.0])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"coordinate xmax is NaN or infinite"):
    rasterize.rasterize_boxes(one * 0, one * 0, one * 3, nan + 3, tf.constant([3, 4]), C((4, 4)))
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"coordinate y is NaN or infinite"):
    augment.clip_pixels(tf.constant([float("inf"), 2.0]), one, g)
