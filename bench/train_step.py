"""The whole train step against the machine: XLA's FLOP count, achieved FLOP/s and the fraction of
the f32 matmul peak measured in the same process.

    python -m bench.train_step [--cases fcn32s-same-256,fcn32s-same-512,fcn32s-caffe-256,...,demo]

Each case is the step `train.py` compiles for a repository config: 'fcn32s-<mode>-<size>' is
configs/full.py:voc (the paper's FCN-32s, width 1, batch 1, pixel cross-entropy, Caffe SGD) at
that geometry and image size; 'demo' is configs/point.py, what `make demo` trains (FCN-8s width
1/8, 128², batch 8, Img + Obj + 1Point). The peak is measured before and after each case (numpy
BLAS and jitted jnp.dot on 4096² f32, the faster of the two); the fraction uses the higher of
the two peaks, so a busy machine lowers the fraction rather than raising it. Each case runs in a
fresh process (the full-width caffe 512² step peaks at ~12 GB; nothing carries over).
"""
import json
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

from bench import common

flags.DEFINE_list("cases", ["demo", "fcn32s-same-256", "fcn32s-same-512", "fcn32s-caffe-256",
                            "fcn32s-caffe-512"], "Which steps to measure.")
flags.DEFINE_integer("reps", 3, "Timed steps per case (median), after 1 warm-up step.")
flags.DEFINE_string("child_case", "", "Internal: measure this case in this process, print JSON.")
FLAGS = flags.FLAGS


def parse_case(case: str):
  if case == "demo":
    return common.config_for("demo")
  parts = case.split("-")
  if len(parts) != 3 or parts[0] != "fcn32s" or parts[1] not in ("same", "caffe"):
    raise app.UsageError(f"case {case!r}: use demo or fcn32s-<same|caffe>-<size>")
  return common.config_for("fcn32s", size=int(parts[2]), mode=parts[1])


def measure(case: str, reps: int) -> dict:
  config = parse_case(case)
  peak0 = common.matmul_peak()["peak"]
  step = common.RealStep(config)
  common.block(step.run())   # warm-up (first call allocates)
  with common.Load() as load:
    times = []
    for _ in range(reps):
      t = time.perf_counter()
      common.block(step.run())
      times.append(time.perf_counter() - t)
  peak1 = common.matmul_peak()["peak"]
  t_step = statistics.median(times)
  gflops = step.flops / t_step / 1e9
  peak = max(peak0, peak1)
  m = config.model
  return dict(case=case, model=f"FCN-{m.variant} w{m.width:g} {m.mode}",
              peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
              input=f"{config.train.batch_size}x{config.data.image_size[0]}²",
              params=step.num_params, gflop=step.flops / 1e9, gbytes=step.bytes / 1e9,
              compile_s=step.compile_s, step_s=t_step, min_s=min(times),
              images_s=step.images / t_step, gflops=gflops, peak=peak, peak0=peak0, peak1=peak1,
              fraction=gflops / peak, load=str(load), others=load.others, ours=load.ours)


def measure_in_child(case: str, reps: int) -> dict:
  cmd = [sys.executable, "-m", "bench.train_step", f"--child_case={case}", f"--reps={reps}"]
  p = subprocess.run(cmd, capture_output=True, text=True, check=False)
  lines = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
  if p.returncode or not lines:
    sys.stderr.write(p.stderr[-3000:])
    raise RuntimeError(f"case {case} failed (exit {p.returncode}; -9 = killed, e.g. out of memory)")
  return json.loads(lines[-1][7:])


def main(argv):
  del argv
  if FLAGS.child_case:
    print("RESULT " + json.dumps(measure(FLAGS.child_case, FLAGS.reps)), flush=True)
    return
  common.print_header("train step: XLA FLOPs, FLOP/s and the in-process matmul peak")
  rows = []
  for case in FLAGS.cases:
    r = measure_in_child(case, FLAGS.reps)
    rows.append(r)
    print(f"{case}: {r['step_s']:.3f} s/step, {r['gflops']:.1f} GFLOP/s = "
          f"{100 * r['fraction']:.0f} % of {r['peak']:.0f} (load: {r['load']})", flush=True)
  print()
  common.table(
      ("case", "model", "batch x size", "XLA GFLOP/step", "XLA GB accessed", "compile s",
       "s/step (median)", "images/s", "GFLOP/s", "matmul peak GFLOP/s (before / after)",
       "fraction of peak", "cores: ours / others", "peak RSS GB"),
      [(r["case"], r["model"], r["input"], f"{r['gflop']:.1f}", f"{r['gbytes']:.1f}",
        f"{r['compile_s']:.1f}", f"{r['step_s']:.3f}", f"{r['images_s']:.2f}",
        f"{r['gflops']:.1f}", f"{r['peak0']:.0f} / {r['peak1']:.0f}",
        f"{100 * r['fraction']:.0f} %", f"{r['ours']:.2f} / {r['others']:.2f}",
        f"{r['peak_rss_gb']:.1f}") for r in rows])
  common.summary(", ".join(f"{r['case']} {100 * r['fraction']:.0f} % of peak" for r in rows),
                 **{r["case"]: round(r["fraction"], 3) for r in rows})


if __name__ == "__main__":
  app.run(main)
