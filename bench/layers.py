"""Measure each conv formulation of `layers.py` on this machine: per layer and on the whole step.

    python -m bench.layers --size 256 --width 0.125 --mode caffe

Per layer: forward, input gradient (dgrad) and weight gradient (wgrad) of every conv of the net at
the given input size, in each formulation that applies, jitted alone; median of `--reps` after 2
warm-ups, median over `--rounds` alternating rounds. Whole step: value_and_grad of softmax
cross-entropy through the FCN (batch 1, dropout on) with conv_impl='lax' vs 'auto' (and alternative
'auto' rules, `--steps`), alternating `--rounds` times in this process. Numbers: docs/model.md.
"""
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench import common
from pointseg_jax.models import fcn
from pointseg_jax.models import layers
from pointseg_jax.models import vgg16


def _median_time(f, reps: int) -> float:
  for _ in range(2):
    jax.block_until_ready(f())
  ts = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(f())
    ts.append(time.perf_counter() - t)
  return statistics.median(ts)


def bench_layers(size, width, mode, reps, impls=("lax", "wgmm", "wgpatch", "patches", "einsum"),
                 ops=("fwd", "dgrad", "wgrad"), rounds=1, only=None):
  rng = np.random.default_rng(0)
  rows = []
  for name, h, w, cin, cout, k, pad in common.layer_shapes(size, width, mode):
    if only and name not in only:
      continue
    x = jnp.asarray(rng.standard_normal((1, h, w, cin)), jnp.float32)
    wt = jnp.asarray(rng.standard_normal((k, k, cin, cout)) * 0.01, jnp.float32)
    ho, wo = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    g = jnp.asarray(rng.standard_normal((1, ho, wo, cout)), jnp.float32)
    fns = {}
    for impl in impls:
      if (impl == "einsum" and k != 1) or (impl in ("wgmm", "wgpatch") and k != 3) or (
          impl == "patches" and k == 1):
        continue
      f = lambda x, wt, impl=impl: layers.conv(x, wt, pad, impl)
      fns[impl] = {
          "fwd": jax.jit(f),
          "dgrad": jax.jit(lambda x, wt, g, f=f: jax.vjp(lambda x: f(x, wt), x)[1](g)[0]),
          "wgrad": jax.jit(lambda x, wt, g, f=f: jax.vjp(lambda wt: f(x, wt), wt)[1](g)[0])}
    times = {(i, op): [] for i in fns for op in ops}
    for r in range(rounds):   # alternate the formulations; medians over rounds
      for impl in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
        for op in ops:
          args = (x, wt) if op == "fwd" else (x, wt, g)
          times[impl, op].append(_median_time(lambda: fns[impl][op](*args), reps))
    for impl in fns:
      row = dict(layer=name, map=f"{ho}x{wo}", cin=cin, cout=cout, impl=impl,
                 **{op: statistics.median(times[impl, op]) for op in ops})
      rows.append(row)
      print(f"{name:9s} {row['map']:>9s} {cin:4d}->{cout:<4d} {impl:8s} " +
            "  ".join(f"{op} {1e3 * row[op]:8.2f}" for op in ops) + " ms", flush=True)
  return rows


def _previous_rule(out_hw, cin, cout):
  """The rule before the full-width measurements: wgmm on >= 64^2 maps for <= 16 or >= 128
  outputs, and for every layer on >= 400^2 maps (full-width conv1_1 and conv1_2)."""
  del cin
  pixels = out_hw[0] * out_hw[1]
  big = pixels >= 64 * 64 and (cout <= 16 or cout >= 128 or pixels >= 400 * 400)
  return "wgmm" if big else "lax"


# Alternative 3x3 rules for 'auto', compared on the whole step (the FCN layers stay the same).
RULES = {
    "auto": None,                                          # layers.wgrad_impl, the shipped rule
    "auto-previous": _previous_rule,
    "auto-no-wgmm": lambda out_hw, cin, cout: "lax",       # fc6 patches + 1x1 einsum only
    "auto-wgmm128": lambda out_hw, cin, cout: (            # the profile's "every map >= 128^2"
        "wgmm" if out_hw[0] * out_hw[1] >= 128 * 128 else "lax"),
}


def bench_step(size, width, mode, rounds, reps, impls=("lax", "auto")):
  """Median seconds of value_and_grad(CE) through the FCN per conv formulation, alternating."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(0, 255, (1, size, size, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 21, (1, size, size)), jnp.int32)
  params = fcn.init_params(fcn.FCN(width=width, mode=mode))
  steps = {}
  shipped = layers.wgrad_impl
  for impl in impls:
    model = fcn.FCN(width=width, mode=mode, conv_impl="lax" if impl == "lax" else "auto")

    def loss(p, model=model):
      logits = model.apply({"params": p}, x, train=True, rngs={"dropout": jax.random.key(1)})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    layers.wgrad_impl = RULES.get(impl) or shipped   # read while tracing, i.e. in compile()
    try:
      steps[impl] = jax.jit(jax.value_and_grad(loss)).lower(params).compile()
    finally:
      layers.wgrad_impl = shipped
  times = {impl: [] for impl in impls}
  for r in range(rounds):
    for impl in (impls if r % 2 == 0 else impls[::-1]):
      times[impl].append(_median_time(lambda: steps[impl](params), reps))
  for impl in impls:
    print(f"step {size}^2 width {width} {mode} conv_impl={impl:12s}: median "
          f"{statistics.median(times[impl]):.3f} s  rounds {[round(t, 3) for t in times[impl]]}")
  return times


flags.DEFINE_integer("size", 256, "Input image side.")
flags.DEFINE_float("width", 0.125, "Channel multiplier of the FCN.")
flags.DEFINE_enum("mode", "caffe", list(vgg16.MODES), "FCN geometry.")
flags.DEFINE_integer("reps", 5, "Timed calls per measurement (median).")
flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
flags.DEFINE_list("impls", ["lax", "wgmm", "wgpatch", "patches", "einsum"], "Formulations.")
flags.DEFINE_list("ops", ["fwd", "dgrad", "wgrad"], "Ops per layer.")
flags.DEFINE_list("layers", [], "Layer names (default: all).")
flags.DEFINE_list("steps", ["lax", "auto"],
                  f"Whole-step variants: lax and any of {sorted(RULES)}.")
flags.DEFINE_bool("skip_layers", False, "Only the whole step.")
flags.DEFINE_bool("skip_step", False, "Only the layers.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  print(f"jax {jax.__version__} backend {jax.default_backend()} devices {jax.device_count()}")
  if not FLAGS.skip_layers:
    bench_layers(FLAGS.size, FLAGS.width, FLAGS.mode, FLAGS.reps, FLAGS.impls, FLAGS.ops,
                 FLAGS.rounds, FLAGS.layers)
  if not FLAGS.skip_step:
    bench_step(FLAGS.size, FLAGS.width, FLAGS.mode, FLAGS.rounds, FLAGS.reps, FLAGS.steps)


if __name__ == "__main__":
  app.run(main)
