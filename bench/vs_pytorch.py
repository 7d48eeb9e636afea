"""The same FCN-32s train step in PyTorch eager and in ours, alternating fresh processes:
t_torch / t_ours per image size (target >= 1.0).

    pip install -e '.[bench]'        # torch (CPU build); without it this script says so, exits 0
    python -m bench.vs_pytorch [--sizes 256,512] [--modes same] [--dtypes float32,bfloat16]
                               [--rounds 3] [--reps 3] [--xla_flags='--xla_cpu_use_onednn=true']
    python -m bench.vs_pytorch --per_layer --sizes 512     # where the time goes, conv by conv

The step on both sides: FCN-32s VGG16 at width 1 (134,346,581 params), batch 1,
dropout 0.5 after fc6/fc7, mean cross-entropy over the labelled pixels (our Eq. 1 `pixel_loss`,
torch `F.cross_entropy(ignore_index=255)`), Caffe SGD (momentum 0.9, weight decay 5e-4 on
weights, biases at 2x lr without decay: torch.optim.SGD with two parameter groups). Ours is the
step train.py compiles (configs/full.py:voc at that geometry). 'same' = padded convs, floor
pooling, bilinear resize; 'caffe' = the released deploy geometry (conv1_1 pad 100, ceil pooling,
VALID fc6, fixed bilinear deconvolution + crop, done as the same two matmuls on both sides).

Every measurement is a fresh process: per round and case, ours then torch (reversed every other
round); each process times `--reps` steps after 2 warm-ups and reports the median, its CPU
seconds per step and how busy the machine was with other work. On a loaded machine the CPU-time
ratio is the steadier of the two (it still counts threads spinning while descheduled). FLOPs are
XLA's count of our step, used for both.

Dtypes: 'float32' is float32 on both sides; 'bfloat16' is ours with config.model.compute_dtype =
bfloat16 (float32 params, losses, optimiser) against torch eager under
`torch.autocast('cpu', torch.bfloat16)`, the same split. Each row's rate is compared with the
matmul peak of its own dtype, measured in the driver after the rounds (the fastest of jitted
jnp.dot, torch.mm and, for float32, numpy). Which ISA each side used: torch's
`torch.backends.cpu.get_cpu_capability()` and the oneDNN primitives of one step (ONEDNN_VERBOSE:
implementation names such as `brg_conv_fwd:avx512_core_bf16` name the ISA); ours: the backends
and dtypes in the compiled step (XLA:CPU converts bfloat16 convolutions and dots to float32).
"""
import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_list("sizes", ["256", "512"], "Image sides.")
flags.DEFINE_list("modes", ["same"], "Geometries: same and/or caffe.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds (fresh processes each).")
flags.DEFINE_integer("reps", 3, "Timed steps per process (median), after 2 warm-ups.")
flags.DEFINE_bool("per_layer", False, "Time every conv's forward, input and weight gradient on "
                  "both sides instead of the whole step.")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes: float32 and/or bfloat16.")
flags.DEFINE_string("xla_flags", "", "Extra XLA_FLAGS for our side's processes.")
flags.DEFINE_string("worker", "", "Internal: 'jax' or 'torch', measure one case and print JSON.")
flags.DEFINE_string("dtype", "float32", "Internal (worker): compute dtype.")
flags.DEFINE_integer("size", 256, "Internal (worker): image side.")
flags.DEFINE_string("mode", "same", "Internal (worker): geometry.")
FLAGS = flags.FLAGS
NUM_CLASSES = 21
LR = 1e-5   # configs/full.py:voc


def torch_available() -> bool:
  try:
    import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


# ------------------------------------------------------------------------------- torch side ---

def torch_fcn32s(mode: str, size: int):
  """FCN-32s VGG16 in torch, layer for layer our `FCN(variant='32s', mode=mode)`."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from pointseg_jax.models import fcn  # numpy-only helpers (upsample_matrix); jax is not started
  from pointseg_jax.models import vgg16
  caffe = mode == "caffe"

  class FCN32s(nn.Module):

    def __init__(self):
      super().__init__()
      layers, cin = [], 3
      for block in vgg16.BLOCKS:
        for name, cout in block:
          pad = vgg16.CAFFE_CONV1_PAD if (caffe and name == "conv1_1") else 1
          layers += [nn.Conv2d(cin, cout, 3, padding=pad), nn.ReLU(inplace=True)]
          cin = cout
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=caffe))
      self.features = nn.Sequential(*layers)
      self.head = nn.Sequential(
          nn.Conv2d(512, 4096, 7, padding=0 if caffe else 3), nn.ReLU(inplace=True),
          nn.Dropout(0.5), nn.Conv2d(4096, 4096, 1), nn.ReLU(inplace=True), nn.Dropout(0.5),
          nn.Conv2d(4096, NUM_CLASSES, 1))
      side = vgg16.feature_size(size, mode) - (6 if caffe else 0)
      if caffe:
        u = torch.from_numpy(fcn.upsample_matrix(side, 32, fcn.CAFFE_OFFSETS["32s"][2], size))
        self.register_buffer("up", u)

    def forward(self, x):
      s = self.head(self.features(x))
      if caffe:   # U_h s U_w^T per channel, the separable bilinear deconvolution + crop
        return torch.einsum("oh,nchw,pw->ncop", self.up, s, self.up)
      return F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False)

  return FCN32s()


def onednn_primitives(fn) -> list[str]:
  """The oneDNN primitives (kind and implementation, e.g. 'convolution brg_conv_fwd:avx512_core')
  that fn() runs, from oneDNN's verbose lines on stdout (captured at the file descriptor)."""
  import tempfile  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  sys.stdout.flush()
  saved = os.dup(1)
  with tempfile.TemporaryFile(mode="w+") as tmp:
    os.dup2(tmp.fileno(), 1)
    try:
      with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        fn()
    finally:
      sys.stdout.flush()
      os.dup2(saved, 1)
      os.close(saved)
    tmp.seek(0)
    found = set()
    for line in tmp:
      parts = line.strip().split(",")
      if line.startswith("onednn_verbose") and "exec" in parts and len(parts) > 6:
        i = parts.index("exec")
        found.add(f"{parts[i + 2]} {parts[i + 3]}")   # primitive kind, implementation
  return sorted(found)


def torch_worker(size: int, mode: str, reps: int, dtype: str = "float32") -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from bench import common  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  torch.manual_seed(0)
  model = torch_fcn32s(mode, size).train()
  score = model.head[-1]     # score layers start at zero, as ours (FCN): first loss = ln 21
  torch.nn.init.zeros_(score.weight)
  torch.nn.init.zeros_(score.bias)
  weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
  biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
  opt = torch.optim.SGD([{"params": weights, "weight_decay": 5e-4},
                         {"params": biases, "lr": 2 * LR, "weight_decay": 0.0}],
                        lr=LR, momentum=0.9)
  x = torch.rand(1, 3, size, size) * 255
  y = torch.randint(0, NUM_CLASSES, (1, size, size))

  autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")

  def step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      logits = model(x)
    loss = F.cross_entropy(logits.float(), y, ignore_index=255)   # float32 loss, as ours
    loss.backward()
    opt.step()
    return loss

  first_loss = float(step())
  primitives = onednn_primitives(step)
  times = []
  with common.Load() as load:
    for _ in range(reps):
      t = time.perf_counter()
      step()
      times.append(time.perf_counter() - t)
  return dict(side="torch", version=torch.__version__, threads=torch.get_num_threads(),
              params=sum(p.numel() for p in model.parameters()), times=times,
              first_loss=first_loss, ours=load.ours, others=load.others,
              cpu_s=load.ours * load.wall / reps,
              isa=f"capability {torch.backends.cpu.get_cpu_capability()}; oneDNN: "
                  + ", ".join(primitives))


def jax_worker(size: int, mode: str, reps: int, dtype: str = "float32") -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from bench import common  # pylint: disable=g-import-not-at-top
  step = common.RealStep(common.config_for("fcn32s", size=size, mode=mode, dtype=dtype))
  first_loss = float(step.run()[1]["train/loss"])
  common.block(step.run())
  times = []
  with common.Load() as load:
    for _ in range(reps):
      t = time.perf_counter()
      common.block(step.run())
      times.append(time.perf_counter() - t)
  return dict(side="jax", version=jax.__version__, params=step.num_params, times=times,
              flops=step.flops, first_loss=first_loss, ours=load.ours, others=load.others,
              cpu_s=load.ours * load.wall / reps,
              isa=f"XLA_FLAGS={os.environ.get('XLA_FLAGS') or '(none)'}; "
                  + common.describe_backends(common.xla_compiled_backends(step.compiled)))


# ---------------------------------------------------------------------------- per-layer side ---

def conv_layers(size: int, mode: str):
  """(name, H_in, W_in, Cin, Cout, k, pad) of every conv of FCN-32s at this input size."""
  from bench import common  # pylint: disable=g-import-not-at-top
  return common.layer_shapes(size, 1.0, mode)


def torch_layers_worker(size: int, mode: str, reps: int) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from bench import common  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  cb = torch.ops.aten.convolution_backward
  out = {}
  with torch.no_grad(), common.Load() as load:
    for name, h, w, cin, cout, k, pad in conv_layers(size, mode):
      x, wt = torch.randn(1, cin, h, w), torch.randn(cout, cin, k, k) * 0.01
      g = torch.randn(1, cout, h + 2 * pad - k + 1, w + 2 * pad - k + 1)
      ops = {"fwd": lambda: F.conv2d(x, wt, padding=pad),
             "dgrad": lambda: cb(g, x, wt, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1,
                                 [True, False, False]),
             "wgrad": lambda: cb(g, x, wt, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1,
                                 [False, True, False])}
      out[name] = {op: _median(f, reps) for op, f in ops.items()}
  return dict(side="torch", layers=out, ours=load.ours, others=load.others)


def jax_layers_worker(size: int, mode: str, reps: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bench import common  # pylint: disable=g-import-not-at-top
  from pointseg_jax.models import layers  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  out = {}
  with common.Load() as load:
    for name, h, w, cin, cout, k, pad in conv_layers(size, mode):
      x = jnp.asarray(rng.standard_normal((1, h, w, cin)), jnp.float32)
      wt = jnp.asarray(rng.standard_normal((k, k, cin, cout)) * 0.01, jnp.float32)
      g = jnp.asarray(rng.standard_normal((1, h + 2 * pad - k + 1, w + 2 * pad - k + 1, cout)),
                      jnp.float32)
      f = lambda x, wt: layers.conv(x, wt, pad, "auto")
      fwd = jax.jit(f)
      dgr = jax.jit(lambda x, wt, g: jax.vjp(lambda x: f(x, wt), x)[1](g)[0])
      wgr = jax.jit(lambda x, wt, g: jax.vjp(lambda wt: f(x, wt), wt)[1](g)[0])
      impl = layers.resolve_impl("auto", wt.shape, g.shape[1:3])
      out[name] = {"fwd": _median(lambda: common.block(fwd(x, wt)), reps),
                   "dgrad": _median(lambda: common.block(dgr(x, wt, g)), reps),
                   "wgrad": _median(lambda: common.block(wgr(x, wt, g)), reps), "impl": impl}
  return dict(side="jax", layers=out, ours=load.ours, others=load.others)


def _median(f, reps):
  for _ in range(2):
    f()
  ts = []
  for _ in range(reps):
    t = time.perf_counter()
    f()
    ts.append(time.perf_counter() - t)
  return statistics.median(ts)


# ----------------------------------------------------------------------------------- driver ---

def run_worker(side: str, size: int, mode: str, dtype: str = "float32") -> dict:
  cmd = [sys.executable, "-m", "bench.vs_pytorch", f"--worker={side}", f"--size={size}",
         f"--mode={mode}", f"--reps={FLAGS.reps}", f"--dtype={dtype}"] + (
             ["--per_layer"] if FLAGS.per_layer else [])
  env = dict(os.environ)
  if side == "jax" and FLAGS.xla_flags:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + FLAGS.xla_flags).strip()
  from bench import common  # pylint: disable=g-import-not-at-top
  return common.run_json_worker(cmd, env)


def whole_step(common) -> None:
  cases = [(m, int(s), d) for m in FLAGS.modes for s in FLAGS.sizes for d in FLAGS.dtypes]
  res = {(c, side): [] for c in cases for side in ("jax", "torch")}
  for r in range(FLAGS.rounds):
    for case in cases:
      for side in (("jax", "torch") if r % 2 == 0 else ("torch", "jax")):
        out = run_worker(side, case[1], case[0], case[2])
        res[case, side].append(out)
        print(f"round {r} {case[0]} {case[1]}² {case[2]} {side}: median "
              f"{statistics.median(out['times']):.3f} s/step (cores ours {out['ours']:.2f} / "
              f"others {out['others']:.2f})", flush=True)
  peaks = {d: common.matmul_peak(dtype=d, with_torch=True) for d in FLAGS.dtypes}
  rows, ratios, isa = [], {}, {}
  for mode, size, dtype in cases:
    j, t = res[(mode, size, dtype), "jax"], res[(mode, size, dtype), "torch"]
    tj = [statistics.median(x["times"]) for x in j]
    tt = [statistics.median(x["times"]) for x in t]
    flops, peak = j[0]["flops"], peaks[dtype]["peak"]
    paired = common.paired_ratio(tt, tj)
    cpu = common.paired_ratio([x["cpu_s"] for x in t], [x["cpu_s"] for x in j])
    key = f"{mode}-{size}" + ("" if dtype == "float32" else f"-{dtype}")
    ratios[key], ratios[f"{key}-cpu"] = paired[0], cpu[0]
    isa[f"{key} ours"], isa[f"{key} torch"] = j[0]["isa"], t[0]["isa"]
    if dtype != "float32" and ((mode, size, "float32"), "torch") in res:   # vs torch float32
      t32 = [statistics.median(x["times"]) for x in res[(mode, size, "float32"), "torch"]]
      ratios[f"{key}-vs-torch-float32"] = common.paired_ratio(t32, tj)[0]
    for side, ts, xs in (("ours (JAX, train.py step)", tj, j),
                         (f"PyTorch {t[0]['version']} eager"
                          + (" + autocast" if dtype == "bfloat16" else ""), tt, t)):
      med = statistics.median(ts)
      rows.append((f"{mode} {size}² {dtype}", side, f"{med:.3f} [{min(ts):.3f}–{max(ts):.3f}]",
                   f"{flops / med / 1e9:.1f}", f"{100 * flops / med / 1e9 / peak:.0f} %",
                   common.fmt_range(*paired) if side.startswith("ours") else "",
                   f"{statistics.median(x['cpu_s'] for x in xs):.2f}",
                   common.fmt_range(*cpu) if side.startswith("ours") else "",
                   f"{statistics.median(x['others'] for x in xs):.2f}"))
  print(f"\nparams: ours {j[0]['params']:,}, torch {t[0]['params']:,}; first-step loss: ours "
        f"{j[0]['first_loss']:.4f}, torch {t[0]['first_loss']:.4f} (ln 21 = 3.0445); XLA FLOPs "
        "of our step used for both; matmul peaks (this process, after the rounds, GFLOP/s): "
        + "; ".join(f"{d} " + ", ".join(f"{k} {v:.0f}" for k, v in p.items())
                    for d, p in peaks.items()) + "\n")
  common.table(("case", "step", "s/step: median [min–max] over processes", "GFLOP/s",
                "of its dtype's matmul peak", "t_torch / t_ours per round: median [range]",
                "CPU s/step", "CPU-time ratio torch / ours", "cores used by others"), rows)
  print("\nwhat each side ran (ISA):")
  for k, v in isa.items():
    print(f"- {k}: {v}")
  common.summary("vs PyTorch eager: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
                 + " (t_torch / t_ours, wall and CPU time; target >= 1.0)", **ratios)


def per_layer(common) -> None:
  for mode in FLAGS.modes:
    for size in map(int, FLAGS.sizes):
      res = {"jax": [], "torch": []}
      for r in range(FLAGS.rounds):
        for side in (("jax", "torch") if r % 2 == 0 else ("torch", "jax")):
          res[side].append(run_worker(side, size, mode))
      rows, total = [], {"jax": 0.0, "torch": 0.0}
      for name, h, w, cin, cout, k, pad in conv_layers(size, mode):
        for op in ("fwd", "dgrad", "wgrad"):
          if name == "conv1_1" and op == "dgrad":
            continue   # the image needs no gradient
          tj = statistics.median(x["layers"][name][op] for x in res["jax"])
          tt = statistics.median(x["layers"][name][op] for x in res["torch"])
          total["jax"] += tj
          total["torch"] += tt
          rows.append((name, f"{h}x{w}x{cin}→{cout}, {k}x{k}", op,
                       res["jax"][0]["layers"][name]["impl"], f"{1e3 * tj:.1f}",
                       f"{1e3 * tt:.1f}", f"{tj / tt:.2f}", f"{1e3 * (tj - tt):+.0f}"))
      print(f"\nper conv, {mode} {size}² (ms, median over {FLAGS.rounds} processes per side)\n")
      common.table(("layer", "input, kernel", "op", "our formulation", "ours ms", "torch ms",
                    "ours / torch", "excess ms"), rows)
      common.summary(f"per-layer {mode} {size}²: convs sum to {total['jax']:.2f} s (ours) vs "
                     f"{total['torch']:.2f} s (torch)", ours_s=total["jax"],
                     torch_s=total["torch"])


def main(argv):
  del argv
  if FLAGS.worker:
    fn = {("jax", False): jax_worker, ("torch", False): torch_worker,
          ("jax", True): jax_layers_worker, ("torch", True): torch_layers_worker}
    args = (FLAGS.size, FLAGS.mode, FLAGS.reps) + (() if FLAGS.per_layer else (FLAGS.dtype,))
    print("RESULT " + json.dumps(fn[FLAGS.worker, FLAGS.per_layer](*args)), flush=True)
    return
  from bench import common  # pylint: disable=g-import-not-at-top
  common.print_header("vs PyTorch eager: the same FCN-32s train step")
  if not torch_available():
    print("torch is not installed: this comparison needs the [bench] extra "
          "(pip install -e '.[bench]'); nothing measured.")
    common.summary("vs PyTorch: skipped, torch not installed")
    return
  if FLAGS.per_layer:
    per_layer(common)
  else:
    whole_step(common)


if __name__ == "__main__":
  app.run(main)
