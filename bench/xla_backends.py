"""XLA:CPU's backends, flag set by flag set: the 16 convolutions' forward / input gradient / weight
gradient, the 4096² matmul in float32 and bfloat16, and what XLA compiled for them.

    python -m bench.xla_backends [--sets default,onednn,...] [--size 256] [--rounds 2] [--reps 3]
    python -m bench.xla_backends --list        # the flag sets and the XLA_FLAGS each one sets

XLA reads XLA_FLAGS once, when its CPU backend starts, so every (flag set, round) is a fresh
process; the order of the sets is reversed every other round. Each process times every conv of the
full-width FCN-32s ('same' geometry, batch 1, the formulations `layers.conv` picks) and reports,
per op, its median time; the table gives each set's time over the default set's, per op and
summed, median over rounds. The compiled programs are searched for the backend each set routed the
convolutions and dots to (`__ynn_fusion`, `__onednn_fusion`, `__xnn_fusion`, or XLA's own
`convolution` / `dot` thunks) and for the dtype those ran in. docs/performance.md, "XLA:CPU
backends", has the table of what was tried.
"""
import json
import os
import statistics
import sys

from absl import app
from absl import flags

from bench import common

# name -> XLA_FLAGS. The flags are the ones this jaxlib (0.10.2) lists under XLA_FLAGS=--help; it
# has no custom matmul tiling flags (removed from XLA:CPU), `xla_cpu_max_isa` only caps the ISA
# (the default is the host's), and YNNPACK takes the dots and convolutions by default.
FLAG_SETS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_custom_call": ("--xla_cpu_use_onednn=true "
                           "--xla_cpu_experimental_onednn_custom_call=true"),
    "onednn_fusion": ("--xla_cpu_use_onednn=true --xla_cpu_experimental_ynn_fusion_type=eltwise "
                      "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise"),
    "xnn_fusion": ("--xla_cpu_experimental_ynn_fusion_type=eltwise "
                   "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise"),
    "xla_own": "--xla_cpu_experimental_ynn_fusion_type=eltwise --xla_cpu_use_xnnpack=false",
    "ynn_all": "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce",
    "vector512": "--xla_cpu_prefer_vector_width=512",
    "onednn_vector512": "--xla_cpu_use_onednn=true --xla_cpu_prefer_vector_width=512",
}
OPS = ("fwd", "dgrad", "wgrad")

flags.DEFINE_list("sets", list(FLAG_SETS), "Flag sets to compare (the first is the baseline).")
flags.DEFINE_integer("size", 256, "Image side of the FCN-32s whose convs are timed.")
flags.DEFINE_integer("rounds", 2, "Alternating rounds (fresh processes each).")
flags.DEFINE_integer("reps", 3, "Timed calls per op (median), after 2 warm-ups.")
flags.DEFINE_list("dtypes", ["float32"], "Conv dtypes to time: float32 and/or bfloat16.")
flags.DEFINE_list("layers", [], "Only these convs (default: all 16).")
flags.DEFINE_bool("list", False, "Print the flag sets and exit.")
flags.DEFINE_string("worker", "", "Internal: measure in this process (XLA_FLAGS already set).")
FLAGS = flags.FLAGS


def worker() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pointseg_jax.models import layers  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  out = {"matmul": {}, "layers": {}, "compiled": {}}
  n = 4096
  for dt in ("float32", "bfloat16"):
    a = jnp.asarray(rng.random((n, n)), dt)
    dot = jax.jit(jnp.dot).lower(a, a).compile()
    out["compiled"][f"matmul {dt}"] = common.xla_compiled_backends(dot)
    out["matmul"][dt] = 2.0 * n ** 3 / common.median_time(lambda: dot(a, a), FLAGS.reps) / 1e9
  with common.Load() as load:
    for dt in FLAGS.dtypes:
      for name, h, w, cin, cout, k, pad in common.layer_shapes(FLAGS.size, 1.0, "same"):
        if FLAGS.layers and name not in FLAGS.layers:
          continue
        x = jnp.asarray(rng.standard_normal((1, h, w, cin)), dt)
        wt = jnp.asarray(rng.standard_normal((k, k, cin, cout)) * 0.01, dt)
        g = jnp.asarray(rng.standard_normal((1, h + 2 * pad - k + 1, w + 2 * pad - k + 1, cout)),
                        dt)
        f = lambda x, wt: layers.conv(x, wt, pad, "auto")
        fns = {"fwd": (jax.jit(f), (x, wt)),
               "dgrad": (jax.jit(lambda x, wt, g: jax.vjp(lambda x: f(x, wt), x)[1](g)[0]),
                         (x, wt, g)),
               "wgrad": (jax.jit(lambda x, wt, g: jax.vjp(lambda wt: f(x, wt), wt)[1](g)[0]),
                         (x, wt, g))}
        row = {}
        for op, (fn, args) in fns.items():
          if name == "conv1_1" and op == "dgrad":
            continue   # the image needs no gradient
          c = fn.lower(*args).compile()
          if name in ("conv1_2", "conv3_3", "fc6", "fc7"):
            out["compiled"][f"{name} {op} {dt}"] = common.xla_compiled_backends(c)
          row[op] = common.median_time(lambda: c(*args), FLAGS.reps, warmup=2)
        out["layers"][f"{name} {dt}"] = row
  out.update(ours=load.ours, others=load.others, xla_flags=os.environ.get("XLA_FLAGS", ""),
             jax=jax.__version__)
  return out


def run(name: str) -> dict:
  flags_value = (os.environ.get("XLA_FLAGS", "") + " " + FLAG_SETS[name]).strip()
  env = dict(os.environ, XLA_FLAGS=flags_value)
  cmd = [sys.executable, "-m", "bench.xla_backends", f"--worker={name}", f"--size={FLAGS.size}",
         f"--reps={FLAGS.reps}", f"--dtypes={','.join(FLAGS.dtypes)}",
         f"--layers={','.join(FLAGS.layers)}"]
  return common.run_json_worker(cmd, env)


def main(argv):
  del argv
  if FLAGS.list:
    for name, value in FLAG_SETS.items():
      print(f"{name:20s} XLA_FLAGS={value or '(none)'}")
    return
  if FLAGS.worker:
    print("RESULT " + json.dumps(worker()), flush=True)
    return
  unknown = [s for s in FLAGS.sets if s not in FLAG_SETS]
  if unknown:
    raise app.UsageError(f"unknown flag sets {unknown}; known: {list(FLAG_SETS)}")
  common.print_header(f"XLA:CPU backends per conv, FCN-32s same {FLAGS.size}², batch 1")
  sets = FLAGS.sets
  res = {s: [] for s in sets}
  for r in range(FLAGS.rounds):
    for s in (sets if r % 2 == 0 else sets[::-1]):
      out = run(s)
      res[s].append(out)
      total = sum(sum(v.values()) for v in out["layers"].values())
      print(f"round {r} {s}: convs {total:.2f} s, matmul f32 {out['matmul']['float32']:.0f} / "
            f"bf16 {out['matmul']['bfloat16']:.0f} GFLOP/s (cores ours {out['ours']:.2f} / "
            f"others {out['others']:.2f})", flush=True)
  base = sets[0]
  keys = list(res[base][0]["layers"])
  print(f"\nper conv op: time of each set / time of '{base}', median over {FLAGS.rounds} rounds "
        "(< 1 = faster)\n")
  rows = []
  for key in keys:
    for op in res[base][0]["layers"][key]:
      tb = [x["layers"][key][op] for x in res[base]]
      row = [key, op, f"{1e3 * statistics.median(tb):.1f}"]
      for s in sets[1:]:
        row.append(f"{common.paired_ratio([x['layers'][key][op] for x in res[s]], tb)[0]:.2f}")
      rows.append(row)
  sums = {s: [sum(sum(v.values()) for v in x["layers"].values()) for x in res[s]] for s in sets}
  rows.append(["all convs", "sum", f"{1e3 * statistics.median(sums[base]):.0f}"]
              + [common.fmt_range(*common.paired_ratio(sums[s], sums[base])) for s in sets[1:]])
  for dt in ("float32", "bfloat16"):
    rows.append([f"matmul 4096² {dt}", "GFLOP/s"]
                + [f"{statistics.median(x['matmul'][dt] for x in res[s]):.0f}" for s in sets])
  common.table(["conv", "op", f"{base} ms"] + sets[1:], rows)
  print("\nwhat each set compiled (first round):")
  for s in sets:
    print(f"- {s} (XLA_FLAGS={FLAG_SETS[s] or 'none'}): " + "; ".join(
        f"{k}: {common.describe_backends(v)}" for k, v in res[s][0]["compiled"].items()))
  common.summary("XLA:CPU backends: all convs time / default: " + ", ".join(
      f"{s} {common.paired_ratio(sums[s], sums[base])[0]:.2f}" for s in sets[1:]),
                 **{s: common.paired_ratio(sums[s], sums[base])[0] for s in sets[1:]})


if __name__ == "__main__":
  app.run(main)
