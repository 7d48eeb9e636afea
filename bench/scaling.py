"""The shape of the cost curve: train-step time against image size and batch, on 1 and on 8 CPU
devices (or the accelerator's devices, where it prints absolute images/s).

    python -m bench.scaling [--config demo] [--sizes 256,384,512] [--batches 1,8] [--devices 1,8]

Each device count runs in its own fresh process (the CPU device count is fixed when jax starts;
`--xla_force_host_platform_device_count`), the processes alternate over `--rounds`. Per case:
the step `train.py` compiles for the config at that size and global batch, median of `--reps`
steps after one warm-up. The table normalises by the first case of the 1-device process: 'time
ratio / work ratio' is 1.0 when the step time grows exactly like pixels x images, < 1 when bigger
inputs use the machine better. On CPU, 8 devices split the 2 cores' threads 8 ways: the step is
the same math, the comparison prices the data-parallel (shard_map + pmean) path, not a speed-up.
"""
import json
import os
import statistics
import subprocess
import sys

from absl import app
from absl import flags

flags.DEFINE_string("config", "demo",
                    "'demo' (configs/point.py) or 'fcn32s' (configs/full.py:voc).")
flags.DEFINE_float("width", None, "Override the model's width multiplier.")
flags.DEFINE_list("sizes", ["256", "384", "512"], "Image sides.")
flags.DEFINE_list("batches", ["1", "8"], "Global batch sizes (each must divide by the devices).")
flags.DEFINE_list("devices", ["1", "8"], "CPU device counts, one fresh process each.")
flags.DEFINE_integer("reps", 3, "Timed steps per case (median).")
flags.DEFINE_integer("rounds", 1, "Alternating rounds over the device counts.")
flags.DEFINE_integer("child_devices", 0, "Internal: run the cases in this process and print JSON.")
FLAGS = flags.FLAGS


def child(devices: int) -> None:
  """Measure every (size, batch) case on this process's devices; one RESULT line per case."""
  import jax  # pylint: disable=g-import-not-at-top
  from bench import common  # pylint: disable=g-import-not-at-top
  assert jax.device_count() == devices or jax.default_backend() != "cpu", jax.devices()
  for size in map(int, FLAGS.sizes):
    for batch in map(int, FLAGS.batches):
      if batch % jax.device_count():
        continue
      config = common.config_for(FLAGS.config, size=size, batch=batch, width=FLAGS.width)
      step = common.RealStep(config)
      common.block(step.run())
      with common.Load() as load:
        t = common.median_time(step.run, FLAGS.reps, warmup=0)
      print("RESULT " + json.dumps(dict(
          devices=jax.device_count(), backend=jax.default_backend(), size=size, batch=batch,
          step_s=t, gflop=step.flops / 1e9, compile_s=step.compile_s, ours=load.ours,
          others=load.others)), flush=True)


def run_child(devices: int) -> list[dict]:
  env = dict(os.environ)
  flags_ = [f for f in env.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags_ + [f"--xla_force_host_platform_device_count={devices}"])
  cmd = [sys.executable, "-m", "bench.scaling", f"--child_devices={devices}",
         f"--config={FLAGS.config}", f"--sizes={','.join(FLAGS.sizes)}",
         f"--batches={','.join(FLAGS.batches)}", f"--reps={FLAGS.reps}"]
  if FLAGS.width is not None:
    cmd.append(f"--width={FLAGS.width}")
  p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  rows = [json.loads(line[7:]) for line in p.stdout.splitlines() if line.startswith("RESULT ")]
  if p.returncode or not rows:
    sys.stderr.write(p.stderr[-3000:])
    raise RuntimeError(f"{devices}-device process failed (exit {p.returncode})")
  return rows


def main(argv):
  del argv
  if FLAGS.child_devices:
    child(FLAGS.child_devices)
    return
  from bench import common  # pylint: disable=g-import-not-at-top
  common.print_header("scaling: step time vs image size, batch and device count")
  results = {}
  for r in range(FLAGS.rounds):
    order = FLAGS.devices if r % 2 == 0 else FLAGS.devices[::-1]
    for d in map(int, order):
      for row in run_child(d):
        results.setdefault((row["devices"], row["size"], row["batch"]), []).append(row)
  keys = sorted(results)
  base = results[keys[0]]
  base_t = statistics.median(x["step_s"] for x in base)
  base_work = keys[0][1] ** 2 * keys[0][2]
  rows = []
  for key in keys:
    d, size, batch = key
    rs = results[key]
    t = statistics.median(x["step_s"] for x in rs)
    work = size ** 2 * batch
    rows.append((d, rs[0]["backend"], f"{size}²", batch, f"{t:.3f}", f"{batch / t:.2f}",
                 f"{rs[0]['gflop'] / t:.1f}", f"{(t / base_t) / (work / base_work):.2f}",
                 f"{statistics.median(x['compile_s'] for x in rs):.1f}",
                 f"{statistics.median(x['ours'] for x in rs):.2f} / "
                 f"{statistics.median(x['others'] for x in rs):.2f}"))
  common.table(("devices", "backend", "size", "global batch", "s/step (median)", "images/s",
                "GFLOP/s", "time ratio / work ratio", "compile s", "cores: ours / others"), rows)
  per_dev = {}
  for (d, size, batch), rs in results.items():
    per_dev.setdefault((size, batch), {})[d] = statistics.median(x["step_s"] for x in rs)
  both = {k: v for k, v in per_dev.items() if len(v) > 1}
  text = f"scaling ({FLAGS.config}): {len(keys)} cases"
  if both:
    ratios = [v[min(v)] / v[max(v)] for v in both.values()]
    text += (f"; {max(map(int, FLAGS.devices))} vs {min(map(int, FLAGS.devices))} devices at the "
             f"same batch: speed ratio {min(ratios):.2f}-{max(ratios):.2f}")
  largest = rows[-1]
  common.summary(text, largest_case_images_s=float(largest[5]))


if __name__ == "__main__":
  app.run(main)
