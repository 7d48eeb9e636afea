"""Segmentation metrics: a confusion matrix on device, mIoU / per-class IoU on the host.

The confusion matrix is a sum over pixels, so the counts of batches, hosts or devices simply add up;
IoU is computed once from the accumulated matrix, as the authors' `compute_mIOU.py` accumulates
intersections and unions over the whole val set before dividing (docs/losses.md, "Evaluation"
under "The authors' loss layer"). Void pixels (255) count nowhere: they are neither
prediction errors nor part of any union.
"""
import jax
import jax.numpy as jnp
import numpy as np

from pointseg_jax import IGNORE_INDEX, NUM_CLASSES


def _check_label_values(labels, num_classes, ignore_index):
  """Raise on label values that are neither a class nor ignore_index (eager calls only).

  Under jit the values are not known; there such pixels are left out of the matrix (see
  `confusion_matrix`).
  """
  if isinstance(labels, jax.core.Tracer):
    return
  values = np.unique(np.asarray(labels))
  bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
  if bad.size:
    raise ValueError(
        f"labels hold values {bad.tolist()[:10]} outside [0, {num_classes}) that are not the "
        f"ignore index {ignore_index}; map them to a class or to {ignore_index} before scoring")


def confusion_matrix(pred, labels, num_classes=NUM_CLASSES, ignore_index=IGNORE_INDEX, mask=None):
  """int32 [C, C] pixel counts, rows = ground truth class, columns = predicted class.

  jit-able; sums of matrices from several batches or devices equal the matrix of all pixels
  together (accumulate on the host in int64 for very large sets: int32 holds 2.1e9 pixels).

  Args:
    pred: int [...] predicted class per pixel (e.g. argmax of the logits, [B, H, W]).
    labels: int [...] ground truth, same shape; `ignore_index` pixels are not counted.
    num_classes: C.
    ignore_index: label value that marks void pixels (VOC boundaries, padding).
    mask: optional bool, either of pred's shape or a prefix of it (e.g. [B] = `example_mask` of a
      padded eval batch, or [B, H, W]); False excludes the example / pixel.
  Returns:
    int32 [num_classes, num_classes].
  Raises:
    ValueError: shapes differ, or (eager calls) labels hold values outside [0, C) other than
      `ignore_index`. Under jit such labels, and predictions outside [0, C), are not counted.
  """
  pred = jnp.asarray(pred)
  if pred.shape != jnp.shape(labels):
    raise ValueError(f"pred {pred.shape} and labels {jnp.shape(labels)} must have the same shape")
  _check_label_values(labels, num_classes, ignore_index)
  labels = jnp.asarray(labels)
  keep = ((labels != ignore_index) & (labels >= 0) & (labels < num_classes)
          & (pred >= 0) & (pred < num_classes))
  if mask is not None:
    mask = jnp.asarray(mask, dtype=bool)
    if mask.shape != pred.shape[:mask.ndim]:
      raise ValueError(f"mask {mask.shape} must be a leading part of the pred shape {pred.shape}")
    keep = keep & mask.reshape(mask.shape + (1,) * (pred.ndim - mask.ndim))
  index = jnp.where(keep, labels * num_classes + pred, 0).reshape(-1)
  counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[index].add(
      keep.reshape(-1).astype(jnp.int32))
  return counts.reshape(num_classes, num_classes)


def per_class_iou(confusion):
  """IoU per class from a [C, C] confusion matrix (float64 [C]; NaN where the union is empty)."""
  confusion = np.asarray(confusion, dtype=np.int64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f"confusion must be a square [C, C] matrix, got shape {confusion.shape}")
  intersection = np.diag(confusion)
  union = confusion.sum(axis=0) + confusion.sum(axis=1) - intersection
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def mean_iou(confusion):
  """(mIoU, per-class IoU) from a confusion matrix accumulated over the whole set.

  mIoU is the mean over the classes whose union (ground truth or prediction) is non-empty, as
  FCN's scorer and torchmetrics' macro Jaccard do; the authors' eval.py counted empty classes as 0
  over all 21, which gives the same number on the full VOC val set (every class occurs).
  Per-class IoU is NaN for classes with an empty union. mIoU is NaN only for an all-zero matrix.
  """
  iou = per_class_iou(confusion)
  miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
  return miou, iou


def pixel_accuracy(confusion):
  """Fraction of counted pixels predicted correctly (NaN for an all-zero matrix)."""
  confusion = np.asarray(confusion, dtype=np.int64)
  total = confusion.sum()
  return float(np.trace(confusion) / total) if total > 0 else float("nan")


def row_normalized(confusion):
  """Each row of a confusion matrix divided by its sum: the fraction of a true class's pixels
  predicted as each class (float64 [C, C]; NaN rows for classes with no pixel)."""
  confusion = np.asarray(confusion, dtype=np.float64)
  totals = confusion.sum(axis=1, keepdims=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(totals > 0, confusion / np.maximum(totals, 1), np.nan)
