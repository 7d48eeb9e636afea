"""The paper's losses (Bearman et al. 2016, Eq. 1-4) as the authors' Caffe layer computes them,
and one term beyond the paper: `pairwise_loss`, a Gated CRF energy (docs/losses.md, "Pairwise
term"), which follows the same contract.

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
import functools
import math

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


def _label_nll(z, labels, mask):
  """-log S_{i, labels_i} where mask, else 0; z are masked logits in the compute dtype.

  Computed as logsumexp(z_i) - z_{i, labels_i}, the label's logit picked by a compare-and-sum over
  the classes: both are per-pixel reductions that XLA fuses with the masking, so no [B, H, W, C]
  log-probability array is written, and pixels outside `mask` cost next to nothing on CPU
  (docs/performance.md, "Losses"). Equal to -log_softmax(z)[label] up to float rounding.

  A supervised label outside [0, C) is bad input that jit cannot raise on: it gives NaN (loud)
  instead of being dropped silently.
  """
  num_classes = z.shape[-1]
  in_range = (labels >= 0) & (labels < num_classes)
  picked = jnp.sum(jnp.where(jnp.arange(num_classes) == labels[..., None], z, 0.0), axis=-1)
  nll = jnp.where(in_range, jax.nn.logsumexp(z, axis=-1) - picked, jnp.nan)
  return jnp.where(mask, nll, 0.0)


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
  nll = _label_nll(_masked_logits(logits, mask), labels, mask)
  return _safe_mean(nll.sum(axis=(1, 2)), mask.sum(axis=(1, 2)).astype(nll.dtype))


def image_level_loss(logits, present, valid, known=None):
  """Eq. 2: -mean_{c in L} log S_{t_c c} - mean_{c in L'} log(1 - S_{t_c c}).

  t_c = argmax over the valid pixels of S_c (first index on ties; ties are resolved on
  log S_c in float32). L = present classes plus background (forced on, as the authors' layer
  always adds class 0); L' = the other *known* classes, so with every class known |L'| = C - |L|,
  and an empty L' contributes 0. A class not known (not asked of the annotators: docs/clicks.md)
  is in neither set: it changes neither mean, so it is neither rewarded nor punished.
  The gradient flows only into the logits at t_c: the argmax picks an index (no gradient) and the
  terms are evaluated on the gathered logits there -- the authors' subgradient.

  Args:
    logits: [B, H, W, C] scores.
    present: bool [B, C] image-level labels (present[:, 0] is ignored: background is always in L).
    valid: bool [B, H, W], False on padding.
    known: optional bool [B, C], the classes whose presence the annotation answered (the batch's
      `known`); None = every class. A present class counts as known.
  Returns:
    float32 [B]; 0 for an image with no valid pixel.
  """
  _check_logits(logits)
  _check_map("valid", valid, logits)
  b, h, w, c = logits.shape
  for name, x in (("present", present), ("known", known)):
    if x is not None and x.shape != (b, c):
      raise ValueError(f"{name} must be [B, C] = {(b, c)} to match logits {logits.shape}, got "
                       f"{x.shape}")
  z = _masked_logits(logits, valid).reshape(b, h * w, c)
  flat_valid = valid.reshape(b, h * w)
  # t_c = the first valid pixel with the largest log S_c: a max, then the smallest index holding
  # it. Same pixel as jnp.argmax, but two plain reductions that XLA:CPU runs faster than its
  # (value, index) argmax reduce (docs/performance.md, "Losses").
  log_probs = jax.nn.log_softmax(jax.lax.stop_gradient(z), axis=-1)
  scores = jnp.where(flat_valid[..., None], log_probs, -jnp.inf)
  best = jnp.max(scores, axis=1, keepdims=True)
  pixel = jnp.arange(h * w, dtype=jnp.int32)[None, :, None]
  t = jnp.min(jnp.where(scores == best, pixel, h * w), axis=1)  # [B, C] pixel per class
  found = jnp.all(t < h * w, axis=-1)  # False only if a valid log S_c is NaN: the loss is NaN
  t = jnp.minimum(t, h * w - 1)
  z_at_t = jnp.take_along_axis(z, t[:, :, None], axis=1)  # [B, C(class c), C(logit k)] at t_c
  eye = jnp.eye(c, dtype=bool)
  log_s = jnp.diagonal(z_at_t, axis1=1, axis2=2) - jax.nn.logsumexp(z_at_t, axis=-1)  # [B, C]
  log_not_s = _log_not(z_at_t, eye)  # [B, C]: log(1 - S_c) at t_c
  in_l = jnp.asarray(present, bool) | (jnp.arange(c) == 0)  # background always in L
  in_l_bar = ~in_l if known is None else jnp.asarray(known, bool) & ~in_l
  present_term = _safe_mean(jnp.where(in_l, -log_s, 0.0).sum(-1), in_l.sum(-1).astype(z.dtype))
  absent_term = _safe_mean(
      jnp.where(in_l_bar, -log_not_s, 0.0).sum(-1), in_l_bar.sum(-1).astype(z.dtype))
  has_pixels = flat_valid.any(axis=1)
  return jnp.where(has_pixels, jnp.where(found, present_term + absent_term, jnp.nan), 0.0)


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
  z = _masked_logits(logits, mask)
  weights = jnp.where(mask, sparse_weights, 0).astype(z.dtype)
  nll = _label_nll(z, sparse_labels, mask)
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
  # One logsumexp over the object classes (background masked to -inf rather than sliced off: a
  # slice costs XLA a copy forward and a pad backward), then the total by logaddexp per pixel.
  z_bg = z[..., 0]
  log_obj_total = jax.nn.logsumexp(jnp.where(jnp.arange(z.shape[-1]) == 0, -jnp.inf, z), axis=-1)
  log_total = jnp.logaddexp(z_bg, log_obj_total)
  log_bg = z_bg - log_total  # log S_0
  log_obj = log_obj_total - log_total  # log sum_{k>=1} S_k = log(1 - S_0)
  nll = -(prob * log_obj + (1.0 - prob) * log_bg)
  nll = jnp.where(mask, nll, 0.0)
  return _safe_mean(nll.sum(axis=(1, 2)), mask.sum(axis=(1, 2)).astype(nll.dtype))



# ----------------------------------------------------------------------------------------------
# Pairwise (Gated CRF) term: beyond the paper, docs/losses.md "Pairwise term".
# ----------------------------------------------------------------------------------------------

def _window_half(radius, hw):
  """Offsets (dy, dx) of half the (2r+1)^2 window without (0, 0), one of each pair +-d, that fit
  in an h x w grid (a window wider than the grid adds no pair)."""
  h, w = hw
  return [(dy, dx) for dy in range(min(radius, h - 1) + 1)
          for dx in range(-min(radius, w - 1), min(radius, w - 1) + 1) if dy > 0 or dx > 0]


def _pad_grid(x, radius):
  """x [B, h, w, ...] padded by `radius` zeros (False) on both sides of h and w."""
  return jnp.pad(x, ((0, 0), (radius, radius), (radius, radius)) + ((0, 0),) * (x.ndim - 3))


def _at(padded, radius, dy, dx, hw):
  """The value at i + (dy, dx) for every grid pixel i, read from a `_pad_grid` array."""
  h, w = hw
  return padded[:, radius + dy:radius + dy + h, radius + dx:radius + dx + w]


def _block_means(z, rgb, valid, scale):
  """Logits and image averaged over scale x scale blocks; a block is valid only if all of it is.

  The grid is padded (invalid) to a multiple of `scale`. The logits are averaged, not the
  probabilities: the FCN's logits are a bilinear upsampling of its own coarse score map, so their
  block mean is close to the coarser map that the original Gated CRF code applies its loss to. A
  block that touches padding is dropped, as the original sets every mask value < 1 after its resize
  to 0.
  """
  b, h, w = valid.shape
  hs, ws = -(-h // scale), -(-w // scale)
  pad = ((0, 0), (0, hs * scale - h), (0, ws * scale - w))

  def pool(x):
    x = jnp.pad(x, pad + ((0, 0),))
    return x.reshape(b, hs, scale, ws, scale, x.shape[-1]).mean(axis=(2, 4))

  valid = jnp.pad(valid, pad).reshape(b, hs, scale, ws, scale).all(axis=(2, 4))
  return pool(z), pool(rgb), valid


def _pair_kernels(feats, valid, radius, xy_scale):
  """[B, D, h, w]: k(i, i + d) for the D half-window offsets d, 0 unless both pixels are valid.

  feats are the RGB values divided by sqrt(2) sigma_rgb, so k_rgb = exp(-|f_i - f_j|^2);
  the xy factor exp(-|d|^2 / (2 sigma_xy^2)) is one number per offset (`xy_scale` = 1 / (2 sigma^2)
  in grid cells).
  """
  hw = valid.shape[1:]
  feats_p, valid_p = _pad_grid(feats, radius), _pad_grid(valid, radius)
  kernels = []
  for dy, dx in _window_half(radius, hw):
    colour = jnp.sum((feats - _at(feats_p, radius, dy, dx, hw)) ** 2, axis=-1)
    both = valid & _at(valid_p, radius, dy, dx, hw)
    k_xy = math.exp(-(dy * dy + dx * dx) * xy_scale)
    kernels.append(jnp.where(both, k_xy * jnp.exp(-colour), 0.0))
  return jnp.stack(kernels, axis=1)


def _disagreement(probs, kernels, radius):
  """R_ic = sum_{j in W(i), j != i} k_ij (1 - S_jc), [B, h, w, C], over the full window.

  Offset d gives k(i, i + d) directly and k(i, i - d) = k(i - d, i) read shifted (the kernel is
  symmetric), so only half the kernels are ever computed. One fused sum: a loop fusion that reads
  each shifted view of S once.
  """
  hw = probs.shape[1:3]
  not_p = _pad_grid(1.0 - probs, radius)
  kernels_p = _pad_grid(jnp.moveaxis(kernels, 1, -1), radius)  # [B, h + 2r, w + 2r, D]
  total = jnp.zeros_like(probs)
  for n, (dy, dx) in enumerate(_window_half(radius, hw)):
    forward = kernels[:, n, :, :, None]
    backward = _at(kernels_p[..., n], radius, -dy, -dx, hw)[..., None]
    total = (total + forward * _at(not_p, radius, dy, dx, hw)
             + backward * _at(not_p, radius, -dy, -dx, hw))
  return total


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _potts_energy(z, kernels, radius):
  """sum_i sum_{j != i} k_ij sum_c S_ic (1 - S_jc) per image, S = softmax(z) (z: [B, h, w, C])."""
  probs = jax.nn.softmax(z, axis=-1)
  return jnp.sum(probs * _disagreement(probs, kernels, radius), axis=(1, 2, 3))


def _potts_energy_jvp(radius, primals, tangents):
  """The energy is quadratic in S, so its derivative reuses R from the forward pass:

    dE/dz_i = 2 S_i * (R_i - S_i . R_i)     (softmax Jacobian of dE/dS_ic = sum_j k_ij (1 - 2 S_jc))
    dE/dk(i, i + d) = 2 (1 - S_i . S_{i+d})  (the pair counted in both orders)

  Written as a JVP (linear in the tangents) so jax.grad, jax.jvp and jit all work. The image term
  is skipped when the kernels' tangent is a symbolic zero (training never differentiates the
  image), which halves the work autodiff would do through the shifted products.
  """
  z, kernels = primals
  dz, dkernels = tangents
  probs = jax.nn.softmax(z, axis=-1)
  residual = _disagreement(probs, kernels, radius)
  energy = jnp.sum(probs * residual, axis=(1, 2, 3))
  tangent = jnp.zeros_like(energy)
  if not isinstance(dz, jax.custom_derivatives.SymbolicZero):
    slope = 2.0 * probs * (residual - jnp.sum(probs * residual, axis=-1, keepdims=True))
    tangent = tangent + jnp.sum(slope * dz, axis=(1, 2, 3))
  if not isinstance(dkernels, jax.custom_derivatives.SymbolicZero):
    hw = probs.shape[1:3]
    probs_p = _pad_grid(probs, radius)
    agree = jnp.stack([jnp.sum(probs * _at(probs_p, radius, dy, dx, hw), axis=-1)
                       for dy, dx in _window_half(radius, hw)], axis=1)
    tangent = tangent + jnp.sum(2.0 * (1.0 - agree) * dkernels, axis=(1, 2, 3))
  return energy, tangent


_potts_energy.defjvp(_potts_energy_jvp, symbolic_zeros=True)


def pairwise_loss(logits, image, valid, *, radius, sigma_rgb, sigma_xy, scale=1):
  """Gated CRF energy (Obukhov et al. 2019) on a local window, Potts compatibility, per image.

    E = (1/N) sum_{i valid} sum_{j valid, j in W(i), j != i} k(i, j) sum_c S_ic (1 - S_jc)
    k(i, j) = exp(-|I_i - I_j|^2 / (2 sigma_rgb^2) - |p_i - p_j|^2 / (2 sigma_xy^2))

  W(i) is the (2 radius + 1)^2 window around i on the grid the loss runs on. Pairs that leave the
  image or touch padding do not exist (the "gate"), and N is the number of valid grid pixels. Each
  unordered pair counts twice, (i, j) and (j, i), as in the original. The energy is exactly 0 when
  every interacting pair agrees on a one-hot prediction; a soft prediction pays
  1 - sum_c S_ic S_jc > 0 even where i and j agree, which pushes towards confident predictions.

  `scale` > 1 runs on a grid `scale` times coarser (block means of logits and image; a block is
  valid only if all its pixels are), like the original's loss on the network's low-resolution
  output, at about 1/scale^2 of the cost. `radius` counts cells of that grid; `sigma_xy` is in
  input pixels at any scale (a cell is `scale` pixels wide); `sigma_rgb` is in the image's 0..255
  units. Pure jnp: shifted views of the grid, no custom call; the derivative is a custom JVP that
  reuses the forward pass (see `_potts_energy_jvp`).

  Args:
    logits: [B, H, W, C] scores.
    image: [B, H, W, 3] RGB in 0..255 (the model's input), any real dtype.
    valid: bool [B, H, W], False on padding.
    radius: window half-size >= 1, in grid cells.
    sigma_rgb: colour bandwidth > 0, in 0..255 units.
    sigma_xy: spatial bandwidth > 0, in input pixels.
    scale: integer >= 1, the grid's downsampling factor.
  Returns:
    float32 [B]; 0 for an image without a valid pair.
  """
  _check_logits(logits)
  _check_map("valid", valid, logits)
  if image.shape != logits.shape[:3] + (3,):
    raise ValueError(f"image must be [B, H, W, 3] = {logits.shape[:3] + (3,)} to match logits "
                     f"{logits.shape}, got {image.shape}")
  if int(radius) != radius or radius < 1:
    raise ValueError(f"pairwise radius must be an integer >= 1, got {radius}")
  if int(scale) != scale or scale < 1:
    raise ValueError(f"pairwise scale must be an integer >= 1, got {scale}")
  if not (sigma_rgb > 0 and sigma_xy > 0):
    raise ValueError(f"pairwise sigmas must be > 0, got sigma_rgb={sigma_rgb}, "
                     f"sigma_xy={sigma_xy}")
  radius, scale = int(radius), int(scale)
  valid = jnp.asarray(valid, bool)
  z = _masked_logits(logits, valid)
  # Select before scaling, as for the logits: NaN/inf in padded image pixels stays out.
  rgb = jnp.where(valid[..., None], jnp.asarray(image).astype(z.dtype), 0.0)
  if scale > 1:
    z, rgb, valid = _block_means(z, rgb, valid, scale)
  feats = rgb * (1.0 / (math.sqrt(2.0) * sigma_rgb))
  kernels = _pair_kernels(feats, valid, radius, (scale / sigma_xy) ** 2 / 2.0)
  energy = _potts_energy(z, kernels, radius)
  return _safe_mean(energy, valid.sum(axis=(1, 2)).astype(energy.dtype))
