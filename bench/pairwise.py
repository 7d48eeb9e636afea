"""Cost of the pairwise (Gated CRF) term: the train step with and without it, ratio in one run.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
      python bench/pairwise.py --size=128 --width=0.125 --variant=8s --mode=same --batch=8
    python bench/pairwise.py --size=512 --width=1 --variant=32s --mode=caffe --batch=1 --reps=3

Every candidate is the whole step the trainer runs: FCN forward + backward (dropout on) with the
Img + Obj + 1Point terms (the `point` regime), Caffe SGD update; "+ pairwise" adds
`losses.pairwise_loss` with weight 0.1 at each `--scales` entry. `--impls` also times a
`lax.conv_general_dilated_patches` formulation of the same energy (kept here, not in the package,
because it loses: it materialises a [B, h, w, C (2r+1)^2] tensor). Candidates are timed in
alternating rounds in this one process (median of `--reps` calls per round, median over rounds),
so the ratios are fair on a busy machine even when the absolute times are not. Results:
docs/losses.md, "Pairwise term: cost".
"""
import functools
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags
from absl import logging

from pointseg_jax import cli
from pointseg_jax import losses
from pointseg_jax import supervision
from pointseg_jax import train
from pointseg_jax.models import FCN

flags.DEFINE_integer("size", 128, "Square input size.")
flags.DEFINE_float("width", 0.125, "FCN channel multiplier (1 = VGG16).")
flags.DEFINE_enum("variant", "8s", ["32s", "16s", "8s"], "FCN variant.")
flags.DEFINE_enum("mode", "same", ["same", "caffe"], "FCN geometry.")
flags.DEFINE_integer("batch", 8, "Images per step.")
flags.DEFINE_integer("radius", 5, "Pairwise window radius (grid cells).")
flags.DEFINE_float("sigma_rgb", 15.0, "Colour bandwidth (0..255 units).")
flags.DEFINE_float("sigma_xy", 6.0, "Spatial bandwidth (input pixels).")
flags.DEFINE_list("scales", ["1", "2", "4"], "Pairwise grid scales to time.")
flags.DEFINE_list("impls", ["shift"], "Formulations: shift (losses.pairwise_loss), patches.")
flags.DEFINE_integer("reps", 5, "Timed calls per candidate per round.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
FLAGS = flags.FLAGS

TERMS = ("image", "point", "objectness")
PAIRWISE_WEIGHT = 0.1


def pairwise_patches(logits, image, valid, *, radius, sigma_rgb, sigma_xy, scale=1):
  """The same energy as losses.pairwise_loss through conv_general_dilated_patches (all offsets
  at once, zero padding gated by a patched validity map). Bench-only comparison."""
  z = losses._masked_logits(logits, valid)  # pylint: disable=protected-access
  rgb = jnp.where(valid[..., None], image.astype(z.dtype), 0.0)
  if scale > 1:
    z, rgb, valid = losses._block_means(z, rgb, valid, scale)  # pylint: disable=protected-access
  probs = jax.nn.softmax(z, axis=-1)
  d = 2 * radius + 1

  def patches(x):  # [B, h, w, K] -> [B, h, w, K, d*d]
    p = jax.lax.conv_general_dilated_patches(
        x, (d, d), (1, 1), [(radius, radius)] * 2, dimension_numbers=("NHWC", "OIHW", "NHWC"))
    return p.reshape(x.shape + (d * d,))

  feats = rgb / (math.sqrt(2.0) * sigma_rgb)
  colour = jnp.sum((patches(feats) - feats[..., None]) ** 2, axis=3)
  agree = jnp.sum(patches(probs) * probs[..., None], axis=3)
  pair_valid = patches(valid[..., None].astype(z.dtype))[..., 0, :] * valid[..., None]
  dy, dx = np.meshgrid(np.arange(d) - radius, np.arange(d) - radius, indexing="ij")
  k_xy = np.exp(-(dy**2 + dx**2).reshape(-1) * scale**2 / (2.0 * sigma_xy**2))
  k_xy[d * d // 2] = 0.0  # j != i
  energy = (pair_valid * k_xy * jnp.exp(-colour) * (1.0 - agree)).sum(axis=(1, 2, 3))
  return losses._safe_mean(energy, valid.sum(axis=(1, 2)).astype(energy.dtype))  # pylint: disable=protected-access


def fake_batch(size, batch, seed=0):
  """Random images with a couple of flat regions, one click per image, objectness, padding."""
  rng = np.random.default_rng(seed)
  image = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
  image[:, : size // 2, : size // 2] = 40.0
  valid = np.ones((batch, size, size), bool)
  valid[:, :, -size // 8:] = False
  sparse = np.full((batch, size, size), 255, np.int32)
  present = np.zeros((batch, 21), bool)
  present[:, 0] = True
  for i in range(batch):
    cls = int(rng.integers(1, 21))
    present[i, cls] = True
    sparse[i, int(rng.integers(0, size)), int(rng.integers(0, size // 2))] = cls
  return {"image": image, "valid": valid, "present": present, "sparse_labels": sparse,
          "sparse_weights": (sparse != 255).astype(np.float32),
          "objectness": rng.uniform(0.01, 0.99, (batch, size, size)).astype(np.float32)}


def make_step(model, pairwise):
  """jit(one SGD step): loss = point regime terms (+ PAIRWISE_WEIGHT * pairwise(logits, batch))."""
  opt = train.OptimizerSpec()
  tx = train.make_optimizer(1e-3, opt)

  def step(params, opt_state, batch, key):
    def loss_fn(p):
      logits = model.apply({"params": p}, batch["image"], train=True, rngs={"dropout": key})
      per_term = supervision.loss_terms(logits, batch, TERMS)
      loss = supervision.total_loss(per_term, {t: 1.0 for t in TERMS})
      if pairwise is not None:
        loss = loss + PAIRWISE_WEIGHT * pairwise(logits, batch["image"], batch["valid"])
      return loss.mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step), tx


def median_time(fn, reps):
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def main(argv):
  del argv
  model = FCN(num_classes=21, variant=FLAGS.variant, width=FLAGS.width, mode=FLAGS.mode,
              dropout=0.5)
  key = jax.random.key(0)
  params = model.init(key, jnp.zeros((1, 32, 32, 3)), train=False)["params"]
  batch = jax.device_put(fake_batch(FLAGS.size, FLAGS.batch))
  kernel = dict(radius=FLAGS.radius, sigma_rgb=FLAGS.sigma_rgb, sigma_xy=FLAGS.sigma_xy)
  impls = {"shift": losses.pairwise_loss, "patches": pairwise_patches}
  candidates = {"without": None}
  for impl in FLAGS.impls:
    for scale in FLAGS.scales:
      candidates[f"+ pairwise {impl} scale={scale}"] = functools.partial(
          impls[impl], **kernel, scale=int(scale))

  steps, compile_s = {}, {}
  for name, pairwise in candidates.items():
    step, tx = make_step(model, pairwise)
    opt_state = tx.init(params)
    t = time.perf_counter()
    compiled = step.lower(params, opt_state, batch, key).compile()
    jax.block_until_ready(compiled(params, opt_state, batch, key))  # first call
    compile_s[name] = time.perf_counter() - t
    steps[name] = functools.partial(compiled, params, opt_state, batch, key)
    logging.info("compiled %s in %.1f s", name, compile_s[name])

  per_round = {name: [] for name in steps}
  names = list(steps)
  for r in range(FLAGS.rounds):
    for name in (names if r % 2 == 0 else names[::-1]):
      per_round[name].append(median_time(steps[name], FLAGS.reps))
      logging.info("round %d %s: %.1f ms", r, name, 1e3 * per_round[name][-1])

  load = os.getloadavg()[0]
  print(f"FCN-{FLAGS.variant} width {FLAGS.width:g} {FLAGS.mode}, {FLAGS.size}x{FLAGS.size}, "
        f"batch {FLAGS.batch}, radius {FLAGS.radius}, sigma_rgb {FLAGS.sigma_rgb:g}, "
        f"sigma_xy {FLAGS.sigma_xy:g}; {jax.devices()[0].platform}, load average {load:.1f}")
  print(f"| step | ms (median of {FLAGS.rounds} rounds x {FLAGS.reps}) | × without | compile + "
        "first call s |")
  print("|---|---|---|---|")
  base = statistics.median(per_round["without"])
  for name in names:
    ms = statistics.median(per_round[name])
    print(f"| {name} | {1e3 * ms:.0f} | {ms / base:.3f} | {compile_s[name]:.1f} |")


if __name__ == "__main__":
  cli.run(main)
