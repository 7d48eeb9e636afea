"""Confusion matrix and mIoU: hand-made cases, masks, accumulation, 8 devices, real VOC masks."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P
from PIL import Image

from pointseg_jax import metrics


def test_confusion_matrix_and_iou_by_hand():
  labels = np.array([[[0, 1], [2, 255]]])
  pred = np.array([[[0, 2], [2, 1]]])
  cm = metrics.confusion_matrix(pred, labels, num_classes=3)
  # rows = truth, cols = prediction; the void pixel (predicted 1) counts nowhere.
  np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 0, 1], [0, 0, 1]])
  assert cm.dtype == jnp.int32
  miou, iou = metrics.mean_iou(cm)
  # class 0: 1/1; class 1: 0 / (1 + 0 - 0); class 2: 1 / (1 + 2 - 1).
  np.testing.assert_allclose(iou, [1.0, 0.0, 0.5])
  assert miou == pytest.approx(0.5)
  assert metrics.pixel_accuracy(cm) == pytest.approx(2 / 3)


def test_classes_with_empty_union_are_nan_and_left_out_of_the_mean():
  cm = np.array([[5, 1, 0, 0], [2, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 4]])
  miou, iou = metrics.mean_iou(cm)
  expected = [5 / (6 + 7 - 5), 3 / (5 + 4 - 3), math.nan, 4 / 4]
  np.testing.assert_allclose(iou, expected)
  assert miou == pytest.approx((5 / 8 + 3 / 6 + 1) / 3)
  assert math.isnan(metrics.mean_iou(np.zeros((3, 3), int))[0])
  assert math.isnan(metrics.pixel_accuracy(np.zeros((3, 3), int)))


def test_masks_exclude_examples_and_pixels():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, (3, 4, 6))
  pred = rng.integers(0, 5, (3, 4, 6))
  example_mask = np.array([True, False, True])
  np.testing.assert_array_equal(
      metrics.confusion_matrix(pred, labels, 5, mask=example_mask),
      metrics.confusion_matrix(pred[[0, 2]], labels[[0, 2]], 5))
  pixel_mask = rng.random((3, 4, 6)) < 0.5
  held_out = np.where(pixel_mask, labels, 255)
  np.testing.assert_array_equal(
      metrics.confusion_matrix(pred, labels, 5, mask=pixel_mask),
      metrics.confusion_matrix(pred, held_out, 5))
  assert int(metrics.confusion_matrix(pred, labels, 5, mask=pixel_mask).sum()) == pixel_mask.sum()
  with pytest.raises(ValueError, match="mask"):
    metrics.confusion_matrix(pred, labels, 5, mask=np.ones((4,), bool))


def test_accumulating_batches_equals_one_big_batch_under_jit():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 21, (6, 5, 7))
  labels[rng.random(labels.shape) < 0.1] = 255
  pred = rng.integers(0, 21, (6, 5, 7))
  step = jax.jit(metrics.confusion_matrix)
  total = sum(np.asarray(step(pred[i:i + 2], labels[i:i + 2]), np.int64) for i in range(0, 6, 2))
  np.testing.assert_array_equal(total, metrics.confusion_matrix(pred, labels))
  # Against a direct count.
  keep = labels != 255
  direct = np.zeros((21, 21), np.int64)
  np.add.at(direct, (labels[keep], pred[keep]), 1)
  np.testing.assert_array_equal(total, direct)


def test_summed_over_eight_devices():
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 21, (16, 4, 4))
  pred = rng.integers(0, 21, (16, 4, 4))
  example_mask = np.arange(16) < 13  # last eval batch padded with 3 examples
  mesh = Mesh(np.array(jax.devices()), ("data",))

  def per_device(pred, labels, mask):
    return jax.lax.psum(metrics.confusion_matrix(pred, labels, mask=mask), "data")

  summed = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P("data"), out_specs=P()))(
      pred, labels, example_mask)
  np.testing.assert_array_equal(summed, metrics.confusion_matrix(pred[:13], labels[:13]))


def test_bad_labels_are_loud():
  with pytest.raises(ValueError, match=r"\[21\]"):
    metrics.confusion_matrix(np.zeros((1, 2)), np.array([[0, 21]]))
  with pytest.raises(ValueError, match="same shape"):
    metrics.confusion_matrix(np.zeros((1, 2)), np.zeros((2, 1)))
  with pytest.raises(ValueError, match="square"):
    metrics.mean_iou(np.zeros((3, 4)))


# ---------------------------------------------------------------- real VOC masks

def _voc_colours():
  """The VOC palette: colour of class i from the bits of i (devkit's labelcolormap)."""
  colours = {}
  for i in list(range(21)) + [255]:
    r = g = b = 0
    c = i
    for j in range(8):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    colours[(r, g, b)] = i
  return colours


def _decode(path):
  rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
  packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
  out = np.full(packed.shape, -1, np.int64)
  for (r, g, b), cls in _voc_colours().items():
    out[packed == ((r << 16) | (g << 8) | b)] = cls
  if (out < 0).any():
    raise ValueError(f"{path}: {np.unique(packed[out < 0]).size} colours outside the VOC palette")
  return out


def test_voc_palette_decoder():
  colours = _voc_colours()
  assert colours[(128, 0, 0)] == 1 and colours[(192, 128, 128)] == 15  # aeroplane, person
  assert colours[(224, 224, 192)] == 255 and colours[(0, 0, 0)] == 0


def test_real_voc_predictions(testdata_dir):
  folder = testdata_dir / "voc_val_samples"
  names = sorted(p.name[:-len("_target.png")] for p in folder.glob("*_target.png"))
  assert len(names) == 14
  targets = np.stack([_decode(folder / f"{n}_target.png") for n in names])
  preds = np.stack([_decode(folder / f"{n}_pred.png") for n in names])
  assert targets.shape == (14, 513, 513) and not (preds == 255).any()

  step = jax.jit(metrics.confusion_matrix)
  cm = sum(np.asarray(step(preds[i:i + 7], targets[i:i + 7]), np.int64) for i in (0, 7))
  miou, iou = metrics.mean_iou(cm)

  # The authors' compute_mIOU.py, written out per class: union = |P or G| - |P and G = void|.
  inter = np.array([np.sum((preds == c) & (targets == c)) for c in range(21)])
  union = np.array([np.sum(((preds == c) | (targets == c)) & (targets != 255)) for c in range(21)])
  np.testing.assert_array_equal(np.diag(cm), inter)
  seen = union > 0
  np.testing.assert_allclose(iou[seen], inter[seen] / union[seen], rtol=1e-12)
  assert np.isnan(iou[~seen]).all()
  assert miou == pytest.approx(np.mean(inter[seen] / union[seen]), rel=1e-12)
  # A DeepLabV3+ on VOC val: good but not perfect; background IoU high.
  assert 0.6 < miou < 0.99, miou
  assert iou[0] > 0.85
  assert 0.85 < metrics.pixel_accuracy(cm) < 0.995
  print(f"14 VOC val samples: mIoU {miou:.4f} over {seen.sum()} classes, "
        f"pixel acc {metrics.pixel_accuracy(cm):.4f}")
