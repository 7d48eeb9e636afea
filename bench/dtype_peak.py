"""The matmul peak per dtype: torch.mm (oneDNN) and jitted jnp.dot in float32 and bfloat16,
alternating in one process, with each side's bfloat16 / float32 speed-up per round.

    python -m bench.dtype_peak [--n 2048] [--rounds 5] [--reps 3] [--step demo|none]

`--step demo` also alternates our whole train step (configs/point.py, what `make demo` trains)
compiled in float32 and in bfloat16 in the same process: the step-level cost of bfloat16 on CPU.

The ratio says whether a library reaches the CPU's bfloat16 units (avx512_bf16's VDPBF16PS, AMX):
oneDNN does, XLA:CPU converts bf16 operands to float32 first (docs/performance.md). Without torch
only the JAX half runs.
"""
import statistics

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from bench import common

flags.DEFINE_integer("n", 2048, "Square matmul side.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds.")
flags.DEFINE_integer("reps", 3, "Calls per measurement (median).")
flags.DEFINE_enum("step", "none", ["none", "demo"], "Also time this train step in both dtypes.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  common.print_header(f"matmul {FLAGS.n}² per dtype: torch.mm vs jnp.dot")
  n = FLAGS.n
  a = np.random.default_rng(0).random((n, n), np.float32)
  dot = jax.jit(jnp.dot)
  fns = {}
  for dt in ("float32", "bfloat16"):
    x = jnp.asarray(a, dt)
    fns[f"jax {dt}"] = lambda x=x: dot(x, x)
  try:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    for dt in ("float32", "bfloat16"):
      x = torch.from_numpy(a).to(getattr(torch, dt))
      fns[f"torch {dt}"] = lambda x=x: torch.mm(x, x)
    print(f"# torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}")
  except ImportError:
    print("# torch not installed: JAX only")
  if FLAGS.step != "none":
    for dt in ("float32", "bfloat16"):
      step = common.RealStep(common.config_for(FLAGS.step, dtype=dt))
      fns[f"step {FLAGS.step} {dt}"] = lambda step=step: step.run()[1]
  with common.Load() as load:
    times = common.alternate(fns, FLAGS.rounds, FLAGS.reps)
  rows, speedups = [], {}
  for name, ts in times.items():
    if name.startswith("step"):   # a train step: seconds, not matmul GFLOP/s
      rows.append((name, f"{statistics.median(ts):.3f} s/step", f"{min(ts):.3f}–{max(ts):.3f}"))
      continue
    gf = [2.0 * n ** 3 / t / 1e9 for t in ts]
    rows.append((name, f"{statistics.median(gf):.1f} GFLOP/s", f"{min(gf):.1f}–{max(gf):.1f}"))
  for side in ("jax", "torch", f"step {FLAGS.step}"):
    if f"{side} float32" in times:
      speedups[side] = common.paired_ratio(times[f"{side} float32"], times[f"{side} bfloat16"])
  common.table(("computation", "median over rounds", "range"), rows)
  for side, r in speedups.items():
    print(f"{side}: bfloat16 / float32 speed per round {common.fmt_range(*r)}")
  print(f"load: {load}")
  common.summary("bf16 / f32 speed: " + ", ".join(
      f"{side} {r[0]:.2f}" for side, r in speedups.items()),
                 **{side: r[0] for side, r in speedups.items()})


if __name__ == "__main__":
  app.run(main)
