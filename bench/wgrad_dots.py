"""Why a 3x3 conv's weight gradient on a large map stays behind oneDNN: the contraction itself.

    python -m bench.wgrad_dots [--size 512 --cin 64 --cout 64 --rounds 4 --reps 2]

At batch 1, dW of a 3x3 conv is nine contractions over every pixel, x_tapᵀ @ dy with shapes
[P, Cin]ᵀ @ [P, Cout] (P = H·W = 262,144 for conv1_2 at 512²): K huge, M and N tiny. Timed side by
side in one process, alternating (the default shape is conv1_2's, the largest single excess over
PyTorch in BENCHMARKS.md):

  wgrad formulations   lax (XLA's own weight-gradient conv), wgmm (layers.py: nine shifted-view
                       matmuls), flat (nine matmuls over row offsets of the flattened padded map:
                       no shifted copies at all), patches-T (the nine taps stacked pre-transposed,
                       [9·Cin, P], then one NN matmul)
  bare dots            the nine TN dots alone ([P, Cin]ᵀ @ [P, Cout]: what wgmm and flat run), one
                       NN dot [9·Cin, P] @ [P, Cout] on an already transposed operand, numpy's TN
  torch (if present)   aten.convolution_backward's weight gradient (oneDNN), same data

If the bare TN dots alone take most of wgmm's time, the formulation is not the problem: XLA:CPU's
GEMM at this shape is. The table ends with the matmul peak (4096³) measured in the same process.
"""
import os

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from bench import common
from pointseg_jax.models import layers

flags.DEFINE_integer("size", 512, "Map side (conv1_2 at a 512² input: 512).")
flags.DEFINE_integer("cin", 64, "Input channels.")
flags.DEFINE_integer("cout", 64, "Output channels.")
flags.DEFINE_integer("rounds", 4, "Alternating rounds.")
flags.DEFINE_integer("reps", 2, "Timed calls per function per round (median).")
FLAGS = flags.FLAGS
PADS = ((1, 1), (1, 1))


def wgrad_lax(x, g):
  w = jnp.zeros((3, 3, x.shape[-1], g.shape[-1]), x.dtype)
  return jax.vjp(lambda w: layers.conv_lax(x, w, PADS), w)[1](g)[0]


def wgrad_wgmm(x, g):
  return layers._wgrad_shifted(x, g, PADS, (3, 3, x.shape[-1], g.shape[-1]))  # pylint: disable=protected-access


def wgrad_flat(x, g):
  """Tap (i, j) of the padded map flattened row-major is the row offset i·(W+2) + j, so each tap is
  a contiguous slice; dy gets two zero columns to match the padded width."""
  _, h, w, cin = x.shape
  cout = g.shape[-1]
  wp, n = w + 2, h * (w + 2)
  xp = jnp.pad(x[0], ((1, 2), (1, 1), (0, 0))).reshape(-1, cin)
  gw = jnp.pad(g[0], ((0, 0), (0, 2), (0, 0))).reshape(n, cout)
  return jnp.stack([jnp.einsum("pc,pd->cd", xp[i * wp + j:i * wp + j + n], gw)
                    for i in range(3) for j in range(3)]).reshape(3, 3, cin, cout)


def wgrad_patches_t(x, g):
  _, h, w, cin = x.shape
  cout = g.shape[-1]
  xt = jnp.pad(x[0], ((1, 1), (1, 1), (0, 0))).transpose(2, 0, 1)
  p = jnp.concatenate([xt[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], 0)
  return (p.reshape(9 * cin, -1) @ g.reshape(-1, cout)).reshape(3, 3, cin, cout)


def torch_wgrad(x, g):
  """oneDNN's weight gradient on the same data (NCHW), or None without torch."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  tx = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))
  tg = torch.from_numpy(np.ascontiguousarray(np.asarray(g).transpose(0, 3, 1, 2)))
  tw = torch.zeros(g.shape[-1], x.shape[-1], 3, 3)

  def run():
    with torch.no_grad():
      return torch.ops.aten.convolution_backward(
          tg, tx, tw, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False])[1]
  return run


def main(argv):
  del argv
  common.print_header("wgrad_dots: a 3x3 weight gradient on a large map vs the bare dots")
  s, cin, cout = FLAGS.size, FLAGS.cin, FLAGS.cout
  p = s * s
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((1, s, s, cin), np.float32))
  g = jnp.asarray(rng.standard_normal((1, s, s, cout), np.float32))
  a, b = jnp.asarray(rng.standard_normal((p, cin), np.float32)), g.reshape(p, cout)
  at = jnp.asarray(rng.standard_normal((9 * cin, p), np.float32))
  na, nb = np.asarray(a), np.asarray(b)
  ref = jax.jit(wgrad_lax)(x, g)
  labels = {"lax": "wgrad: lax (XLA's wgrad conv)", "wgmm": "wgrad: wgmm (layers.py)",
            "flat": "wgrad: flat offsets, no shifted copies",
            "patches_t": "wgrad: pre-transposed patches + 1 NN dot",
            "tn_dots": "bare: the 9 TN dots alone", "nn_dot": "bare: 1 NN dot, operand transposed",
            "numpy_tn": "bare: numpy, the 9 TN dots", "torch": "torch (oneDNN) wgrad"}
  fns = {}
  for name, f in (("lax", wgrad_lax), ("wgmm", wgrad_wgmm), ("flat", wgrad_flat),
                  ("patches_t", wgrad_patches_t)):
    jf = jax.jit(f)
    err = float(jnp.max(jnp.abs(jf(x, g) - ref)) / jnp.max(jnp.abs(ref)))
    if err > 1e-4:
      raise AssertionError(f"{name} differs from lax's weight gradient: relative {err:.1e}")
    fns[name] = lambda jf=jf: jf(x, g)
  tn = jax.jit(lambda a, b: jnp.einsum("pc,pd->cd", a, b))
  nn = jax.jit(lambda at, b: at @ b)
  fns["tn_dots"] = lambda: [tn(a, b) for _ in range(9)]
  fns["nn_dot"] = lambda: nn(at, b)
  fns["numpy_tn"] = lambda: [na.T @ nb for _ in range(9)]
  t = torch_wgrad(x, g)
  if t is not None:
    fns["torch"] = t
  with common.Load() as load:
    times = common.alternate(fns, FLAGS.rounds, FLAGS.reps)
  peak = common.matmul_peak()["peak"]
  flop = 2.0 * 9 * p * cin * cout
  gflops = {k: flop / float(np.median(ts)) / 1e9 for k, ts in times.items()}
  print(f"\n{s}x{s} map, {cin} -> {cout} channels: {flop / 1e9:.1f} GFLOP per weight gradient; "
        f"{FLAGS.rounds} alternating rounds; load {load}; matmul peak {peak:.0f} GFLOP/s"
        + ("" if t is not None else "; torch not installed") + "\n")
  common.table(["computation", "ms (median)", "GFLOP/s", "of matmul peak"],
               [(labels[k], 1e3 * float(np.median(times[k])), v, f"{100 * v / peak:.0f} %")
                for k, v in gflops.items()])
  common.summary("wgrad_dots GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in gflops.items())
                 + f" (matmul peak {peak:.0f})", peak=peak, **gflops)


if __name__ == "__main__":
  app.run(main)
