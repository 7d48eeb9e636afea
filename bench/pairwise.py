"""Cost of the pairwise (Gated CRF) term: the train step with and without it, ratio in one run.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
      python bench/pairwise.py                      # demo size: 128², FCN-8s width 1/8, batch 8
    python bench/pairwise.py --size=512 --width=1 --variant=32s --mode=caffe --batch=1 \
      --scales=4 --reps=2 --rounds=2 --formulations=    # 512² full width

Step: the trainer's own `train.train_step` (FCN forward + backward with dropout, the `point`
regime's terms Img + Obj + 1Point, SGD update), compiled by `train.compiled_train_step` on one
device; "+ pairwise" adds the `pairwise` term (weight 0.1) with `supervision.PairwiseKernel`'s
defaults at each `--scales` entry. Formulations: value + gradient of the pairwise term alone at
`--formulation_scale`: the package's (shifted views, custom JVP) against two bench-only
alternatives -- plain autodiff through the same shifted-view loop, and
`lax.conv_general_dilated_patches` (all offsets at once: a [B, h, w, C (2r+1)^2] tensor). All
candidates are timed in alternating rounds in this one process (median of `--reps` calls per
round, median over `--rounds`), so the ratios hold on a busy machine even when the absolute times
do not. Results: docs/losses.md, "Pairwise term: cost".
"""
import functools
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from absl import logging

from pointseg_jax import cli
from pointseg_jax import losses
from pointseg_jax import parallel
from pointseg_jax import state as state_lib
from pointseg_jax import supervision
from pointseg_jax import train
from pointseg_jax.models import FCN

flags.DEFINE_integer("size", 128, "Square input size.")
flags.DEFINE_float("width", 0.125, "FCN channel multiplier (1 = VGG16).")
flags.DEFINE_enum("variant", "8s", ["32s", "16s", "8s"], "FCN variant.")
flags.DEFINE_enum("mode", "same", ["same", "caffe"], "FCN geometry.")
flags.DEFINE_integer("batch", 8, "Images per step.")
flags.DEFINE_list("scales", ["1", "2", "4"], "Pairwise grid scales to time in the step.")
flags.DEFINE_list("formulations", ["package", "autodiff", "patches"],
                  "Loss-only formulations to time (empty: none).")
flags.DEFINE_integer("formulation_scale", 2, "Grid scale of the loss-only comparison (at "
                     "scale 1 the patches tensor alone is 1.3 GB at the demo size).")
flags.DEFINE_integer("reps", 5, "Timed calls per candidate per round.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
FLAGS = flags.FLAGS

BASE_TERMS = ("image", "point", "objectness")
PAIRWISE_WEIGHT = 0.1


# ---------------------------------------------------------------- bench-only formulations

def _grid(logits, image, valid, scale):
  """Masked logits, image and validity on the loss's grid, as losses.pairwise_loss builds them."""
  z = losses._masked_logits(logits, valid)  # pylint: disable=protected-access
  rgb = jnp.where(valid[..., None], image.astype(z.dtype), 0.0)
  if scale > 1:
    return losses._block_means(z, rgb, valid, scale)  # pylint: disable=protected-access
  return z, rgb, valid


def pairwise_autodiff(logits, image, valid, *, radius, sigma_rgb, sigma_xy, scale=1):
  """The same energy summed over half-window offsets of shifted views; jax.grad differentiates it
  (no custom JVP): every offset's product is differentiated on its own."""
  z, rgb, valid = _grid(logits, image, valid, scale)
  probs = jax.nn.softmax(z, axis=-1)
  feats = rgb / (math.sqrt(2.0) * sigma_rgb)
  _, h, w = valid.shape
  total = jnp.zeros(valid.shape[:1], z.dtype)
  for dy, dx in losses._window_half(radius, (h, w)):  # pylint: disable=protected-access
    x0, x1 = max(0, -dx), w - max(0, dx)
    at_i = (slice(None), slice(0, h - dy), slice(x0, x1))
    at_j = (slice(None), slice(dy, h), slice(x0 + dx, x1 + dx))
    colour = jnp.sum((feats[at_i] - feats[at_j]) ** 2, axis=-1)
    disagree = 1.0 - jnp.sum(probs[at_i] * probs[at_j], axis=-1)
    pair = jnp.where(valid[at_i] & valid[at_j], jnp.exp(-colour) * disagree, 0.0)
    k_xy = math.exp(-(dy * dy + dx * dx) * scale * scale / (2.0 * sigma_xy * sigma_xy))
    total = total + k_xy * pair.sum(axis=(1, 2))
  return losses._safe_mean(2.0 * total, valid.sum(axis=(1, 2)).astype(total.dtype))  # pylint: disable=protected-access


def pairwise_patches(logits, image, valid, *, radius, sigma_rgb, sigma_xy, scale=1):
  """The same energy with every window offset at once through conv_general_dilated_patches."""
  z, rgb, valid = _grid(logits, image, valid, scale)
  probs = jax.nn.softmax(z, axis=-1)
  d = 2 * radius + 1

  def patches(x):  # [B, h, w, K] -> [B, h, w, K, d*d], zero outside the grid
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


# ---------------------------------------------------------------- inputs and timing

def fake_batch(size, batch, seed=0):
  """Random images with a flat region, one click per image, objectness, some padding."""
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
  return {"image": image, "valid": valid, "present": present, "known": np.ones((batch, 21), bool),
          "sparse_labels": sparse,
          "sparse_weights": (sparse != 255).astype(np.float32),
          "objectness": rng.uniform(0.01, 0.99, (batch, size, size)).astype(np.float32)}


def median_time(fn, reps):
  """(median wall seconds, median CPU seconds of this process) per call."""
  wall, cpu = [], []
  for _ in range(reps):
    t, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    wall.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
  return statistics.median(wall), statistics.median(cpu)


def alternate(candidates, rounds, reps):
  """{name: (wall s, CPU s)}: medians over rounds, candidates in alternating order round by round.

  CPU time (all threads of this process) is what the step costs; wall time is what it takes, and
  on a shared machine it also counts the time other processes held the cores.
  """
  per_round = {name: [] for name in candidates}
  names = list(candidates)
  for r in range(rounds):
    for name in (names if r % 2 == 0 else names[::-1]):
      per_round[name].append(median_time(candidates[name], reps))
      logging.info("round %d %s: %.1f ms wall, %.1f ms CPU", r, name,
                   *(1e3 * x for x in per_round[name][-1]))
  return {name: tuple(statistics.median(x) for x in zip(*times))
          for name, times in per_round.items()}


def step_candidates(model, batch):
  """{name: () -> run one train step} and {name: compile seconds}."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  opt = state_lib.OptimizerSpec()
  init = jax.jit(functools.partial(state_lib.fresh_state, model, opt, 0),
                 out_shardings=parallel.replicated(mesh))
  batch = parallel.host_to_global(batch, mesh)
  runs, compile_s = {}, {}
  holder = {"state": init()}   # one state, passed from step to step (each step donates it)
  setups = {"without": (BASE_TERMS, supervision.LossOptions())}
  for s in FLAGS.scales:
    kernel = supervision.PairwiseKernel(scale=int(s))
    setups[f"+ pairwise, scale {s}"] = (BASE_TERMS + ("pairwise",),
                                       supervision.LossOptions(pairwise=kernel))
  for name, (terms, options) in setups.items():
    weights = {t: np.float32(PAIRWISE_WEIGHT if t == "pairwise" else 1.0) for t in terms}
    hparams = parallel.replicate({"learning_rate": np.float32(1e-3),
                                  "warmup_steps": np.float32(0), "weights": weights}, mesh)
    step = train.compiled_train_step(model, terms, opt, options, mesh)
    t = time.perf_counter()
    holder["state"], _ = step(holder["state"], batch, hparams)   # compile + first step
    jax.block_until_ready(holder["state"])
    compile_s[name] = time.perf_counter() - t
    logging.info("compiled %s in %.1f s", name, compile_s[name])

    def run(step=step, holder=holder, hparams=hparams):
      holder["state"], metrics = step(holder["state"], batch, hparams)   # state is donated
      return metrics
    runs[name] = run
  return runs, compile_s


def formulation_candidates(batch, num_classes=21):
  """{name: () -> value and gradient of the pairwise term alone} at --formulation_scale."""
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.standard_normal(batch["valid"].shape + (num_classes,)), jnp.float32)
  image, valid = jnp.asarray(batch["image"]), jnp.asarray(batch["valid"])
  kernel = supervision.PairwiseKernel(scale=FLAGS.formulation_scale).to_dict()
  impls = {"package": losses.pairwise_loss, "autodiff": pairwise_autodiff,
           "patches": pairwise_patches}
  runs, compile_s, values = {}, {}, {}
  for name in FLAGS.formulations:
    f = jax.jit(jax.value_and_grad(lambda z, f=impls[name]: f(z, image, valid, **kernel).mean()))
    t = time.perf_counter()
    try:
      values[name] = jax.block_until_ready(f(logits))
    except jax.errors.JaxRuntimeError as e:
      # Seen for `patches` on XLA:CPU (jaxlib 0.10.2): "YNNPACK operation failed"; the same run
      # with XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= (YNNPACK fusions off) completes.
      logging.warning("formulation %s failed, left out: %s", name, str(e).splitlines()[0])
      continue
    compile_s[name] = time.perf_counter() - t
    runs[name] = functools.partial(f, logits)
  if "package" in values:   # every formulation computes the same number
    for name, (v, g) in values.items():
      ref_v, ref_g = values["package"]
      logging.info("%s: value %.6g (package %.6g), max |grad diff| / max |grad| = %.1e", name,
                   v, ref_v, float(jnp.abs(g - ref_g).max() / jnp.abs(ref_g).max()))
  return runs, compile_s


def table(title, seconds, compile_s, base):
  lines = [title, "", f"median of {FLAGS.rounds} rounds × {FLAGS.reps} calls", "",
           f"| candidate | wall ms | × {base} (wall) | CPU ms | × {base} (CPU) | compile + first "
           "call, s |", "|---|---|---|---|---|---|"]
  base_wall, base_cpu = seconds[base]
  for name, (wall, cpu) in seconds.items():
    lines.append(f"| {name} | {1e3 * wall:.0f} | {wall / base_wall:.2f} | {1e3 * cpu:.0f} | "
                 f"{cpu / base_cpu:.2f} | {compile_s[name]:.0f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  model = FCN(num_classes=21, variant=FLAGS.variant, width=FLAGS.width, mode=FLAGS.mode,
              dropout=0.5)
  batch = fake_batch(FLAGS.size, FLAGS.batch)
  k = supervision.PairwiseKernel()
  load = os.getloadavg()[0]
  print(f"FCN-{FLAGS.variant} width {FLAGS.width:g} ({FLAGS.mode}), {FLAGS.size}×{FLAGS.size}, "
        f"batch {FLAGS.batch}; kernel radius {k.radius}, sigma_rgb {k.sigma_rgb:g}, sigma_xy "
        f"{k.sigma_xy:g}, pairwise weight {PAIRWISE_WEIGHT}; {jax.devices()[0].platform}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at start")
  runs, compile_s = step_candidates(model, batch)
  print(table("\nTrain step:\n", alternate(runs, FLAGS.rounds, FLAGS.reps), compile_s, "without"))
  if FLAGS.formulations:
    runs, compile_s = formulation_candidates(batch)
    title = (f"\nPairwise term alone (value + gradient), scale {FLAGS.formulation_scale}:\n")
    print(table(title, alternate(runs, FLAGS.rounds, FLAGS.reps), compile_s,
                FLAGS.formulations[0]))
  print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  cli.run(main)
