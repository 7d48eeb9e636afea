"""The procedural scene generator of synthetic_points: contract, determinism, VOC-like statistics."""
import itertools

import numpy as np
import pytest
from scipy import ndimage

from pointseg_jax import IGNORE_INDEX, NUM_CLASSES
from pointseg_jax.data.synthetic_points import scenes
from pointseg_jax.data.synthetic_points import stats as stats_lib


def _scene(seed, h=96, w=128):
  return scenes.render_scene(np.random.default_rng(seed), h, w)


@pytest.fixture(scope="module")
def many():
  """300 scenes in the default builder's aspect mix (a few seconds)."""
  out = []
  for i in range(300):
    h, w = [(96, 128), (128, 96), (128, 128)][i % 3]
    out.append(_scene(1000 + i, h, w))
  return out


def test_output_contract():
  s = _scene(0, 80, 112)
  assert set(s) == {"image", "mask", "instance_mask"}
  assert s["image"].shape == (80, 112, 3) and s["image"].dtype == np.uint8
  for k in ("mask", "instance_mask"):
    assert s[k].shape == (80, 112) and s[k].dtype == np.uint8
  assert set(np.unique(s["mask"])) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}


def test_deterministic_from_seed():
  a, b, c = _scene(7), _scene(7), _scene(8)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["image"], c["image"])


def test_masks_consistent_with_instances(many):
  for s in many[:100]:
    mask, inst = s["mask"], s["instance_mask"]
    np.testing.assert_array_equal(mask == IGNORE_INDEX, inst == IGNORE_INDEX)
    np.testing.assert_array_equal(mask == 0, inst == 0)
    ids = np.unique(inst[(inst > 0) & (inst != IGNORE_INDEX)])
    # Instances are numbered 1..n without gaps; each has exactly one class.
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    for i in ids:
      assert len(np.unique(mask[inst == i])) == 1
      assert 1 <= mask[inst == i][0] <= 20


def test_void_band_separates_every_outline(many):
  """No two 4-adjacent labelled pixels belong to different instances (or object/background):
  the void band sits on every outline, as in VOC."""
  for s in many[:100]:
    inst = s["instance_mask"].astype(np.int32)
    for a, b in ((inst[1:], inst[:-1]), (inst[:, 1:], inst[:, :-1])):
      both = (a != IGNORE_INDEX) & (b != IGNORE_INDEX)
      assert not np.any(both & (a != b))
  with_objects = [s for s in many if np.any((s["mask"] > 0) & (s["mask"] != IGNORE_INDEX))]
  assert all(np.any(s["mask"] == IGNORE_INDEX) for s in with_objects)


def test_void_band_hand_computed():
  """A 20x20 square in a 40x40 image, radius 1: 76 inner outline + 80 outer (4-adjacent) pixels."""
  ids = np.zeros((40, 40), np.int32)
  ids[10:30, 10:30] = 1
  band = scenes.void_band(ids, 1.0)
  assert band.sum() == 76 + 80
  assert band[10, 10] and band[9, 15] and not band[9, 9] and not band[11, 11]
  # VOC scale (radius 2.5 at 500 px): 2 px on each side of the outline, a 4 px band.
  assert scenes.void_band(ids, 2.5)[15, 7:13].tolist() == [False, True, True, True, True, False]


def test_statistics_like_voc(many):
  acc = stats_lib.Accumulator()
  for s in many:
    acc.add(s["mask"], s["instance_mask"])
  st = acc.summary()
  # PASCAL VOC 2012: 1.5 classes and 2.8 instances per image (paper §3), ~70 % background.
  assert 1.35 <= st["classes_per_image"] <= 1.65, st["classes_per_image"]
  assert 2.4 <= st["instances_per_image"] <= 3.2, st["instances_per_image"]
  assert 0.6 <= st["extra_instances_per_present_class"] <= 1.0
  assert 0.64 <= st["background_share"] <= 0.78, st["background_share"]
  assert 0.02 <= st["void_share"] <= 0.08, st["void_share"]
  freq = st["images_with_class"]
  assert min(freq.values()) > 0  # every class occurs
  assert max(freq, key=freq.get) == "person"
  # Wide size range: small and large objects both occur.
  assert st["instance_size_bins"]["<1%"] > 0.05 and st["instance_size_bins"][">=10%"] > 0.1


def _touching(inst, ids):
  """Two instances whose labelled pixels lie within 3 px of each other (occlusion or contact)."""
  labelled = (inst > 0) & (inst != IGNORE_INDEX)
  for i in ids:
    grown = ndimage.binary_dilation(inst == i, iterations=3)
    if np.any(grown & labelled & (inst != i)):
      return True
  return False


def test_instances_touch_the_border_and_each_other(many):
  at_border = touching = multi = 0
  for s in many:
    inst = s["instance_mask"]
    edge = np.concatenate([inst[0], inst[-1], inst[:, 0], inst[:, -1]])
    at_border += np.any((edge > 0) & (edge != IGNORE_INDEX))
    ids = np.unique(inst[(inst > 0) & (inst != IGNORE_INDEX)])
    if len(ids) > 1:
      multi += 1
      touching += _touching(inst, ids)
  assert at_border / len(many) > 0.3
  assert touching / multi > 0.3


def test_class_styles_need_shape_colour_and_texture():
  """No single attribute names a class, and some class pairs differ in exactly one attribute."""
  styles = scenes.CLASS_STYLES[1:]
  assert len(styles) == NUM_CLASSES - 1 and len(set(styles)) == len(styles)
  for attr in ("shape", "colour", "texture"):
    values = [getattr(st, attr) for st in styles]
    assert all(values.count(v) >= 2 for v in values), attr
  differ_only = {"shape": 0, "colour": 0, "texture": 0}
  for a, b in itertools.combinations(styles, 2):
    diff = [f for f in differ_only if getattr(a, f) != getattr(b, f)]
    if len(diff) == 1:
      differ_only[diff[0]] += 1
  assert all(v > 0 for v in differ_only.values()), differ_only


def test_colour_alone_does_not_give_the_class_away(many):
  """A per-pixel colour lookup (fitted on 150 scenes, scored on 150 others) barely beats
  'everything is background', and among object pixels is far from naming the class."""
  fit, test = stats_lib.Accumulator(), stats_lib.Accumulator()
  for i, s in enumerate(many):
    (fit if i < 150 else test).add(s["mask"], image=s["image"])
  b = stats_lib.colour_baseline(fit, test)
  majority = b["colour_lookup_always_background"]
  assert 0.6 < majority < 0.85
  assert b["colour_lookup_21way"] - majority < 0.05, b
  assert b["colour_lookup_20way_object_pixels"] < 0.5, b
  assert b["colour_lookup_object_vs_background"] - majority < 0.15, b


def test_lookup_accuracy_hand_computed():
  fit = np.array([[3, 1], [0, 2]])  # bin 0 -> label 0, bin 1 -> label 1
  test = np.array([[1, 1], [1, 3]])  # right: 1 (bin 0) + 3 (bin 1) of 6
  assert stats_lib.lookup_accuracy(fit, test) == pytest.approx(4 / 6)


def test_too_small_image_is_rejected():
  with pytest.raises(ValueError, match="16x16"):
    scenes.render_scene(np.random.default_rng(0), 8, 64)


def test_unknown_shape_or_texture_names_the_choices():
  with pytest.raises(ValueError, match="ellipse"):
    scenes.sample_shape_params(np.random.default_rng(0), "hexagon")
  with pytest.raises(ValueError, match="stripes"):
    scenes.texture_pattern("plaid", np.zeros((2, 2)), np.zeros((2, 2)), np.random.default_rng(0), 1)


def test_auc_from_histograms_hand_computed():
  # pos scores {2, 3}, neg scores {1, 2}: pairs (2>1) (2=2 -> 1/2) (3>1) (3>2) -> 3.5 / 4.
  pos = np.bincount([2, 3], minlength=4)
  neg = np.bincount([1, 2], minlength=4)
  assert stats_lib.auc_from_histograms(pos, neg) == pytest.approx(0.875)
  assert np.isnan(stats_lib.auc_from_histograms(pos, np.zeros(4)))
