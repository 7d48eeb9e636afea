"""What every benchmark shares: machine facts, the load, the in-process matmul peak, alternating
timings, tables and the one summary line.

On a shared machine an absolute time says little, so each script reports ratios of two things
measured in the same process, alternating (docs/performance.md): FLOP/s over the f32 matmul peak
measured in the same process, a loss over a same-size copy, pipeline images/s over train-step
images/s. Next to each number it reports how busy the machine was *with other work* while it ran
(`Load`): the machine's busy CPU time from /proc/stat minus this process's own, per second.
"""
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Callable, Iterable, Sequence

TCMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
                  "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4")
# The SIMD features that decide XLA:CPU's and oneDNN's kernels (of lscpu's "Flags").
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
              "amx_tile", "amx_bf16", "asimd", "sve")


def cpu_info() -> dict[str, str]:
  """CPU model name and the SIMD flags of /proc/cpuinfo (what `lscpu` prints)."""
  model, flags = platform.processor() or platform.machine(), set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name":
          model = value.strip()
        elif key in ("flags", "Features"):
          flags.update(value.split())
  except OSError:
    pass
  return {"model": model, "simd": " ".join(f for f in SIMD_FLAGS if f in flags) or "none found"}


def allocator() -> str:
  preload = os.environ.get("LD_PRELOAD", "")
  if "tcmalloc" in preload:
    return "tcmalloc (LD_PRELOAD)"
  return "glibc malloc (no tcmalloc preloaded)"


def loadavg() -> str:
  return " ".join(f"{v:.2f}" for v in os.getloadavg())


def machine_lines() -> list[str]:
  """The facts every table of BENCHMARKS.md states: CPU, SIMD flags, cores, allocator, versions."""
  import jax  # pylint: disable=g-import-not-at-top  (callers set XLA_FLAGS before jax loads)
  cpu = cpu_info()
  return [f"cpu: {cpu['model']}, {len(os.sched_getaffinity(0))} usable cores; simd: {cpu['simd']}",
          f"allocator: {allocator()}; python {platform.python_version()}; jax {jax.__version__} "
          f"on {jax.default_backend()} ({jax.device_count()} device(s)); "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '') or '(none)'}",
          f"load average at start: {loadavg()}"]


def print_header(title: str) -> None:
  print(f"# {title}")
  for line in machine_lines():
    print(f"# {line}")
  command = [os.path.basename(sys.executable), "-m", _module_name()] + sys.argv[1:]
  print(f"# command: {' '.join(command)}", flush=True)


def _module_name() -> str:
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  return spec.name if spec else (sys.argv[0] or "?")


def _busy_jiffies() -> int | None:
  """Busy CPU time of the whole machine (all cores) in clock ticks, from /proc/stat."""
  try:
    with open("/proc/stat") as f:
      fields = [int(v) for v in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
  steal = fields[7] if len(fields) > 7 else 0
  return sum(fields[:8]) - idle - steal


def own_cpu_seconds() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  c = resource.getrusage(resource.RUSAGE_CHILDREN)
  return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


class Load:
  """How busy the machine was while a block ran: ours and everyone else's, in cores.

      with Load() as load: ...
      load.ours, load.others   # average busy cores over the block (2.0 = both cores of 2)
  """

  def __enter__(self):
    self._t, self._cpu, self._busy = time.perf_counter(), own_cpu_seconds(), _busy_jiffies()
    self.before = os.getloadavg()[0]
    return self

  def __exit__(self, *exc):
    wall = max(time.perf_counter() - self._t, 1e-9)
    self.wall = wall
    self.ours = (own_cpu_seconds() - self._cpu) / wall
    busy = _busy_jiffies()
    if busy is None or self._busy is None:
      self.others = float("nan")
    else:
      total = (busy - self._busy) / os.sysconf("SC_CLK_TCK") / wall
      self.others = max(0.0, total - self.ours)
    self.after = os.getloadavg()[0]
    return False

  def add_cpu(self, seconds: float) -> None:
    """Count CPU seconds of worker processes not yet waited for (e.g. a live Pool) as ours."""
    moved = min(seconds / self.wall, self.others) if self.others == self.others else 0.0
    self.ours += seconds / self.wall
    self.others -= moved

  def __str__(self):
    return (f"ours {self.ours:.2f} / others {self.others:.2f} cores, "
            f"loadavg {self.before:.1f}->{self.after:.1f}")


def matmul_peak(n: int = 4096, reps: int = 3) -> dict[str, float]:
  """f32 n x n x n matmul GFLOP/s in this process: numpy (BLAS) and jitted jnp.dot; 'peak' = the
  faster of the two (medians of `reps` after a warm-up). The denominator of every 'fraction of
  peak' in BENCHMARKS.md."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  dot = jax.jit(jnp.dot)
  flop = 2.0 * n ** 3
  out = {"numpy": flop / median_time(lambda: a @ b, reps) / 1e9,
         "jax": flop / median_time(lambda: dot(ja, jb), reps) / 1e9}
  out["peak"] = max(out.values())
  return out


def block(x):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.block_until_ready(x)


def median_time(f: Callable[[], object], reps: int, warmup: int = 1) -> float:
  """Median wall seconds of `reps` calls of f (results blocked on) after `warmup` calls."""
  for _ in range(warmup):
    block(f())
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    block(f())
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def alternate(fns: dict[str, Callable[[], object]], rounds: int, reps: int,
              warmup: int = 1) -> dict[str, list[float]]:
  """Per-round median seconds of each fn, the order reversed every round (so a slow phase of the
  machine hits every fn alike). Warm-up calls happen once, before the first round."""
  for f in fns.values():
    for _ in range(warmup):
      block(f())
  names = list(fns)
  times = {k: [] for k in names}
  for r in range(rounds):
    for k in (names if r % 2 == 0 else names[::-1]):
      times[k].append(median_time(fns[k], reps, warmup=0))
  return times


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> tuple[float, float, float]:
  """Median and range of num[i] / den[i] over rounds (ratios of times taken side by side)."""
  ratios = [a / b for a, b in zip(num, den)]
  return statistics.median(ratios), min(ratios), max(ratios)


def min_ratio(num: Sequence[float], den: Sequence[float]) -> float:
  """min(num) / min(den): each side's least-disturbed run, the best estimate for a quiet machine
  when others' work only ever adds time."""
  return min(num) / min(den)


def xla_cost(compiled) -> tuple[float, float]:
  """(flops, bytes accessed) of a compiled executable, from XLA's cost analysis."""
  ca = compiled.cost_analysis()
  if isinstance(ca, (list, tuple)):
    ca = ca[0]
  ca = ca or {}
  return float(ca.get("flops", float("nan"))), float(ca.get("bytes accessed", float("nan")))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
  """A markdown table on stdout (BENCHMARKS.md takes it as printed)."""
  print("| " + " | ".join(headers) + " |")
  print("|" + "---|" * len(headers))
  for row in rows:
    print("| " + " | ".join(_cell(v) for v in row) + " |")
  sys.stdout.flush()


def _cell(v) -> str:
  if isinstance(v, float):
    if v != v:
      return "–"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
  return str(v)


def summary(text: str, **values) -> None:
  """The last line of every benchmark: `SUMMARY <text> {json}`."""
  print(f"SUMMARY {text} " + json.dumps(values, default=float), flush=True)


def fmt_range(med: float, lo: float, hi: float, digits: int = 2) -> str:
  return f"{med:.{digits}f} [{lo:.{digits}f}–{hi:.{digits}f}]"


# ------------------------------------------------------------------- the FCN's convolutions ---

def layer_shapes(size: int, width: float, mode: str):
  """(name, H_in, W_in, Cin, Cout, k, pad) of each conv of the FCN at input size x size."""
  from pointseg_jax.models import vgg16  # pylint: disable=g-import-not-at-top
  out, side, cin = [], size, 3
  for block in vgg16.BLOCKS:
    for name, c in block:
      cout = vgg16.scaled(c, width)
      pad = vgg16.CAFFE_CONV1_PAD if (mode == "caffe" and name == "conv1_1") else 1
      out.append((name, side, side, cin, cout, 3, pad))
      side, cin = side + 2 * pad - 2, cout
    side = -(-side // 2) if mode == "caffe" else side // 2
  f = vgg16.scaled(vgg16.FC_CHANNELS, width)
  out.append(("fc6", side, side, cin, f, 7, 0 if mode == "caffe" else 3))
  side6 = side - 6 if mode == "caffe" else side
  out.append(("fc7", side6, side6, f, f, 1, 0))
  out.append(("score_fr", side6, side6, f, 21, 1, 0))
  return out


# ------------------------------------------------------------------------ the real train step ---

def config_for(name: str, size: int | None = None, mode: str | None = None,
               batch: int | None = None, width: float | None = None):
  """A training config of the repository: 'demo' (configs/point.py, what `make demo` trains) or
  'fcn32s' (configs/full.py:voc, the paper's FCN-32s at full width, batch 1, no weight file),
  with the image size, geometry, batch or width overridden."""
  from pointseg_jax import config_lib  # pylint: disable=g-import-not-at-top
  if name == "demo":
    config = config_lib.get_config("point")
  elif name == "fcn32s":
    config = config_lib.get_config("full", "voc")
    config.model.init_from = None
  else:
    raise ValueError(f"unknown benchmark config {name!r}; use 'demo' or 'fcn32s'")
  if size is not None:
    config.data.image_size = (size, size)
  if mode is not None:
    config.model.mode = mode
  if batch is not None:
    config.train.batch_size = batch
  if width is not None:
    config.model.width = width
  return config


def synthetic_batch(config, seed: int = 0) -> dict:
  """A host batch with every field a step may read, shaped like the pipeline's for `config`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pointseg_jax import NUM_CLASSES  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  b, (h, w) = int(config.train.batch_size), tuple(config.data.image_size)
  labels = rng.integers(0, NUM_CLASSES, (b, 1, 1)).repeat(h, 1).repeat(w, 2).astype(np.int32)
  sparse = np.full((b, h, w), 255, np.int32)
  sparse[:, h // 2, w // 2] = labels[:, 0, 0]
  present = np.zeros((b, NUM_CLASSES), bool)
  present[np.arange(b), labels[:, 0, 0]] = True
  return {"image": rng.uniform(0, 255, (b, h, w, 3)).astype(np.float32),
          "valid": np.ones((b, h, w), bool), "labels": labels, "present": present,
          "known": np.ones((b, NUM_CLASSES), bool), "sparse_labels": sparse, "sparse_weights": (sparse != 255).astype(np.float32),
          "objectness": rng.uniform(0.01, 0.99, (b, h, w)).astype(np.float32)}


class RealStep:
  """The train step `train.py` runs for a config (regime losses, Caffe SGD, data-parallel jit with
  the state donated), with numpy-initialised params: compile once, then call `run()`."""

  def __init__(self, config, mesh=None):
    import jax  # pylint: disable=g-import-not-at-top
    from pointseg_jax import parallel  # pylint: disable=g-import-not-at-top
    from pointseg_jax import state as state_lib  # pylint: disable=g-import-not-at-top
    from pointseg_jax import supervision  # pylint: disable=g-import-not-at-top
    from pointseg_jax import train  # pylint: disable=g-import-not-at-top
    from pointseg_jax.models import fcn  # pylint: disable=g-import-not-at-top
    self.config = config
    self.mesh = mesh or parallel.make_mesh()
    model = state_lib.make_model(config.model)
    opt = state_lib.OptimizerSpec.from_config(config.optimizer)
    terms = supervision.active_terms(dict(config.loss.weights))
    # Same state layout as state.fresh_state, but numpy-drawn params: no RNG compile (seconds at
    # full width) before the step under test.
    params = fcn.init_params(model, seed=0)
    state = {"step": jax.numpy.zeros((), jax.numpy.int32), "params": params,
             "opt_state": state_lib.make_optimizer(0.0, opt).init(params),
             "rng": jax.random.key_data(jax.random.key(0))}
    self.state = parallel.replicate(state, self.mesh)
    host = synthetic_batch(config)
    self.batch = parallel.host_to_global(
        {k: host[k] for k in supervision.needed_fields(terms)}, self.mesh)
    self.hparams = parallel.replicate(
        train.hyperparams(config.optimizer, config.loss.weights), self.mesh)
    self.num_params = fcn.param_count(params)
    step = train.compiled_train_step(model, terms, opt,
                                     supervision.LossOptions.from_config(config.loss), self.mesh,
                                     bool(config.train.fast_compile))
    t = time.perf_counter()
    self.compiled = step.lower(self.state, self.batch, self.hparams).compile()
    self.compile_s = time.perf_counter() - t
    # XLA costs the per-device program of the shard_map: times the devices for the whole step.
    flops, nbytes = xla_cost(self.compiled)
    self.flops, self.bytes = flops * self.mesh.size, nbytes * self.mesh.size

  def run(self):
    """One step (the state is donated and replaced); returns the metrics (not fetched)."""
    self.state, metrics = self.compiled(self.state, self.batch, self.hparams)
    return self.state, metrics

  @property
  def images(self) -> int:
    return int(self.config.train.batch_size)
