"""The paper's losses (Bearman et al. 2016, Eq. 1-4) as the authors' Caffe layer computes them.

Every function takes logits [B, H, W, C] of any float dtype, computes in float32 (float64 stays
float64) and returns the per-image losses as float32 [B]; reducing over the batch is the caller's
job. Conventions follow the authors' `SoftmaxWithLossExpectation` GPU layer
(docs/losses.md, "The authors' loss layer"):

* background (class 0) is always a present class, so |L| >= 1 and background is never in L';
* the image-level term picks t_c = argmax over the image's pixels (first index on ties) and the
  gradient reaches only the logits at t_c;
* Eq. 4 uses sum_{k in O} S_k = 1 - S_0 over all object classes;
* every mean over an empty set is 0, and padding (valid=False) changes no value and no gradient.

All log-probabilities come from log-softmax; log(1 - S_c) is logsumexp_{k!=c} z_k - logsumexp_k z_k,
so values and gradients stay finite for logits up to +-1e4 (Caffe clamps log S at FLT_MIN and leaves
log(1 - S) unclamped, i.e. it can produce inf where we stay finite).
"""
import jax
import jax.numpy as jnp
import numpy as np

from pointseg_jax import IGNORE_INDEX


def _check_logits(logits):
  if logits.ndim != 4:
    raise ValueError(f"logits must be [B, H, W, C], got shape {logits.shape}")
  if logits.shape[-1] < 2:
    raise ValueError(f"logits need at least 2 classes (background + objects), got {logits.shape}")


def _check_map(name, x, logits):
  if x.shape != logits.shape[:3]:
    raise ValueError(
        f"{name} must be [B, H, W] = {logits.shape[:3]} to match logits {logits.shape}, got "
        f"{x.shape}")


def _is_concrete(*xs):
  """True when every x holds values now (not a tracer of jit / grad / vmap / shard_map)."""
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_probabilities(objectness, valid):
  """Raise on an objectness map outside [0, 1] at valid pixels (e.g. a raw uint8 map), whenever
  both arrays hold values -- eager calls, or constants closed over by a jitted/differentiated
  function. The check runs in numpy: jnp ops inside a jit trace are staged even on constants, and
  float() of a staged value is the ConcretizationTypeError this avoids. Traced maps are not
  checked (jit cannot raise on values)."""
  if not _is_concrete(objectness, valid):
    return
  checked = np.where(np.asarray(valid), np.asarray(objectness), 0.5)
  if checked.size == 0:
    return
  low, high = float(checked.min()), float(checked.max())
  if not (low >= 0 and high <= 1):  # NaN fails too
    raise ValueError(f"objectness must be probabilities in [0, 1], got values in [{low}, "
                     f"{high}]; convert a stored uint8 map o with P = (o + 1) / 257")


def _compute_dtype(x):
  """float32 for bfloat16/float16/float32 inputs; float64 stays float64 (x64 gradient checks)."""
  return jnp.promote_types(x.dtype, jnp.float32)


def _masked_logits(logits, mask):
  """Logits in the compute dtype, with 0 wherever mask is False.

  Selecting before the softmax (the "double where") keeps garbage at masked pixels -- even inf or
  NaN -- out of both the value and the gradient: the masked logits get an exact zero gradient.
  """
  return jnp.where(mask[..., None], logits.astype(_compute_dtype(logits)), 0.0)


def _safe_mean(total, count):
  """total / count with 0 where count == 0 (a mean over an empty set is 0, never NaN)."""
  return jnp.where(count > 0, total / jnp.where(count > 0, count, 1), 0.0)


def _log_prob_of(log_probs, labels, mask):
  """log S_{i, labels_i} where mask, else 0.

  A supervised label outside [0, C) is bad input that jit cannot raise on: it gives NaN (loud)
  instead of being dropped silently.
  """
  num_classes = log_probs.shape[-1]
  in_range = (labels >= 0) & (labels < num_classes)
  index = jnp.where(mask & in_range, labels, 0)
  picked = jnp.take_along_axis(log_probs, index[..., None], axis=-1)[..., 0]
  picked = jnp.where(in_range, picked, jnp.nan)
  return jnp.where(mask, picked, 0.0)


def _log_not(logits, c_axis_mask):
  """Stable log(1 - S_c) = logsumexp_{k != c} z_k - logsumexp_k z_k.

  `c_axis_mask` is a boolean over the class axis (broadcastable to logits) marking the classes
  that are *excluded* from the first logsumexp. Never log(1 - exp(log S)), which is -inf in
  float32 as soon as S rounds to 1.
  """
  others = jnp.where(c_axis_mask, -jnp.inf, logits)
  return jax.nn.logsumexp(others, axis=-1) - jax.nn.logsumexp(logits, axis=-1)


def pixel_loss(logits, labels, valid):
  """Eq. 1, full supervision: mean over valid pixels with label != 255 of -log S_{i, G_i}.

  The paper writes a sum; we take the per-image mean (the authors' point/full runs through the same
  layer normalise; their plain-Caffe full-supervision baseline summed with lr 1e-10).

  Args:
    logits: [B, H, W, C] scores.
    labels: int [B, H, W] class ids, IGNORE_INDEX (255) = no label.
    valid: bool [B, H, W], False on padding.
  Returns:
    float32 [B]; 0 for an image without labelled pixels.
  """
  _check_logits(logits)
  _check_map("labels", labels, logits)
  _check_map("valid", valid, logits)
  mask = valid & (labels != IGNORE_INDEX)
  log_probs = jax.nn.log_softmax(_masked_logits(logits, mask), axis=-1)
  nll = -_log_prob_of(log_probs, labels, mask)
  return _safe_mean(nll.sum(axis=(1, 2)), mask.sum(axis=(1, 2)).astype(nll.dtype))


def image_level_loss(logits, present, valid):
  """Eq. 2: -mean_{c in L} log S_{t_c c} - mean_{c in L'} log(1 - S_{t_c c}).

  t_c = argmax over the valid pixels of S_c (first index on ties; ties are resolved on
  log S_c in float32). L = present classes plus background (forced on, as the authors' layer
  always adds class 0); L' = the other classes, so |L'| = C - |L| and an empty L' contributes 0.
  The gradient flows only into the logits at t_c: the argmax picks an index (no gradient) and the
  terms are evaluated on the gathered logits there -- the authors' subgradient.

  Args:
    logits: [B, H, W, C] scores.
    present: bool [B, C] image-level labels (present[:, 0] is ignored: background is always in L).
    valid: bool [B, H, W], False on padding.
  Returns:
    float32 [B]; 0 for an image with no valid pixel.
  """
  _check_logits(logits)
  _check_map("valid", valid, logits)
  b, h, w, c = logits.shape
  if present.shape != (b, c):
    raise ValueError(f"present must be [B, C] = {(b, c)} to match logits {logits.shape}, got "
                     f"{present.shape}")
  z = _masked_logits(logits, valid).reshape(b, h * w, c)
  flat_valid = valid.reshape(b, h * w)
  log_probs = jax.nn.log_softmax(z, axis=-1)
  scores = jnp.where(flat_valid[..., None], jax.lax.stop_gradient(log_probs), -jnp.inf)
  t = jnp.argmax(scores, axis=1)  # [B, C] pixel index per class; argmax takes the first on ties
  z_at_t = jnp.take_along_axis(z, t[:, :, None], axis=1)  # [B, C(class c), C(logit k)] at t_c
  eye = jnp.eye(c, dtype=bool)
  log_s = jnp.diagonal(z_at_t, axis1=1, axis2=2) - jax.nn.logsumexp(z_at_t, axis=-1)  # [B, C]
  log_not_s = _log_not(z_at_t, eye)  # [B, C]: log(1 - S_c) at t_c
  in_l = jnp.asarray(present, bool) | (jnp.arange(c) == 0)  # background always in L
  in_l_bar = ~in_l
  present_term = _safe_mean(jnp.where(in_l, -log_s, 0.0).sum(-1), in_l.sum(-1).astype(z.dtype))
  absent_term = _safe_mean(
      jnp.where(in_l_bar, -log_not_s, 0.0).sum(-1), in_l_bar.sum(-1).astype(z.dtype))
  has_pixels = flat_valid.any(axis=1)
  return jnp.where(has_pixels, present_term + absent_term, 0.0)


def point_loss(logits, sparse_labels, sparse_weights):
  """Eq. 3, the point sum: -sum_i w_i log S_{i, G_i} / sum_i w_i over the supervised pixels.

  Supervised = sparse_labels != 255 and w > 0. With w = 1 this is the paper's alpha_i = 1/n;
  with rank or confidence weights it is the authors' alpha_i = w_i / sum_j w_j (so 1/2^r and
  1/2^(r-1) schedules give the same loss). Padding must carry label 255, as the pipeline writes it.
  The Eq. 2 part of L_point is `image_level_loss`; the caller adds the two.

  Args:
    logits: [B, H, W, C] scores.
    sparse_labels: int [B, H, W] clicked class ids, 255 = unlabelled.
    sparse_weights: float [B, H, W] weight per labelled pixel.
  Returns:
    float32 [B]; 0 for an image without clicks.
  """
  _check_logits(logits)
  _check_map("sparse_labels", sparse_labels, logits)
  _check_map("sparse_weights", sparse_weights, logits)
  mask = (sparse_labels != IGNORE_INDEX) & (sparse_weights > 0)
  log_probs = jax.nn.log_softmax(_masked_logits(logits, mask), axis=-1)
  weights = jnp.where(mask, sparse_weights, 0).astype(log_probs.dtype)
  nll = -_log_prob_of(log_probs, sparse_labels, mask)
  return _safe_mean((weights * nll).sum(axis=(1, 2)), weights.sum(axis=(1, 2)))


def objectness_loss(logits, objectness, valid, exclude=None):
  """Eq. 4: -mean over valid & ~exclude pixels of P log(1 - S_0) + (1 - P) log S_0.

  sum_{k in O} S_k is 1 - S_0 over all object classes (authors' code), computed stably as
  logsumexp_{k>=1} z_k - logsumexp_k z_k.

  `exclude=None` uses every valid pixel, as the paper's text writes Eq. 4 (normalised by |I|).
  The authors' layer applies the term only at unclicked pixels and normalises by their count:
  pass `exclude=sparse_labels != 255` for that (what the training regimes do by default).

  Args:
    logits: [B, H, W, C] scores; class 0 is background.
    objectness: float [B, H, W] P(pixel is an object) in (0, 1) (the pipeline's (o + 1) / 257).
    valid: bool [B, H, W], False on padding.
    exclude: optional bool [B, H, W], True at pixels that get no objectness term.
  Returns:
    float32 [B]; 0 for an image with no remaining pixel.
  """
  _check_logits(logits)
  _check_map("objectness", objectness, logits)
  _check_map("valid", valid, logits)
  _check_probabilities(objectness, valid)
  mask = valid
  if exclude is not None:
    _check_map("exclude", exclude, logits)
    mask = mask & ~exclude
  z = _masked_logits(logits, mask)
  prob = jnp.where(mask, objectness, 0.5).astype(z.dtype)
  log_total = jax.nn.logsumexp(z, axis=-1)
  log_bg = z[..., 0] - log_total  # log S_0
  log_obj = jax.nn.logsumexp(z[..., 1:], axis=-1) - log_total  # log sum_{k>=1} S_k = log(1 - S_0)
  nll = -(prob * log_obj + (1.0 - prob) * log_bg)
  nll = jnp.where(mask, nll, 0.0)
  return _safe_mean(nll.sum(axis=(1, 2)), mask.sum(axis=(1, 2)).astype(nll.dtype))
