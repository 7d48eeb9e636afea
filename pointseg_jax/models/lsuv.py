"""Data-dependent init: every conv's output gets unit variance on a batch of training images.

LSUV (Mishkin & Matas, "All you need is a good init", ICLR 2016), scale step only: in network
order, divide each layer's kernel by the standard deviation of its output (pre-ReLU, bias zero)
on the batch, so the layer's output variance on that batch is exactly 1 and the next layer is
measured on the rescaled input. The direction of every kernel stays the He init's; only its scale
changes, so the net is the same architecture with the same preprocess and loads into the FCN as
any other weights.

Why the classifier needs it: He init keeps the second moment of the activations from layer to
layer, so it also keeps the *input's* scale, and the VGG/Caffe preprocess (`vgg16.preprocess`)
leaves pixels at 0..255 minus the mean (RMS 55 on the corpus). Every layer, fc7 included,
then outputs activations of that size instead of ~1, and a step on fc8 moves the logits by
lr x |fc7|^2: ~3600x what the usual learning rates assume (docs/training.md, "Pretraining",
where the measured per-layer scales are). VGG itself avoided this with a small N(0, 0.01) init and
pretraining shallower nets first; the FCN from scratch lives with it at lr 1e-3.
"""
from typing import Sequence

import jax
import jax.numpy as jnp

from pointseg_jax.models import layers


def conv_outputs(model, params, images, train: bool = False) -> dict[str, jax.Array]:
  """{layer name: its output (pre-activation: conv + bias)} for every `layers.Conv` of `model`."""
  _, state = model.apply(
      {"params": params}, images, train=train,
      capture_intermediates=lambda mdl, method: isinstance(mdl, layers.Conv),
      mutable=["intermediates"])
  return {name: out["__call__"][0] for name, out in state["intermediates"].items()}


def output_stds(model, params, images) -> dict[str, jax.Array]:
  """Standard deviation of each conv's output over the batch (all positions and channels)."""
  return {name: jnp.std(out.astype(jnp.float32))
          for name, out in conv_outputs(model, params, images).items()}


def rescale(model, params, images, names: Sequence[str]) -> tuple[dict, dict[str, float]]:
  """LSUV's scale step over `names` (network order); returns (params, {name: std before}).

  Biases are left as they are (zero at init), so dividing a kernel by s divides the layer's
  output, and with it its standard deviation, by exactly s.
  """
  stds = jax.jit(lambda p, x: output_stds(model, p, x))
  params = dict(params)
  before = {}
  for name in names:
    std = stds(params, images)[name]
    if not bool(jnp.isfinite(std)) or float(std) == 0.0:
      raise FloatingPointError(f"LSUV init: output of {name} has std {float(std)} on the batch")
    before[name] = float(std)
    params[name] = dict(params[name], kernel=params[name]["kernel"] / std)
  return params, before
