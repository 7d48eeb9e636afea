"""bench/: the scripts run and end with their SUMMARY line; vs_pytorch without torch exits 0."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from bench import common

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(args, env_extra=None):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
  env.update(env_extra or {})
  return subprocess.run([sys.executable, "-m"] + args, cwd=REPO, env=env, capture_output=True,
                        text=True, check=False, timeout=600)


def test_paired_and_min_ratios():
  assert common.paired_ratio([2.0, 4.0, 9.0], [1.0, 1.0, 3.0]) == (3.0, 2.0, 4.0)
  assert common.min_ratio([2.0, 4.0], [1.0, 0.5]) == 4.0


def test_load_counts_this_process_as_ours():
  with common.Load() as load:
    sum(i * i for i in range(2_000_000))
  assert load.ours > 0.2 and load.others >= 0.0 and "cores" in str(load)


@pytest.mark.e2e
def test_losses_bench_runs_and_ends_with_its_summary():
  p = _run(["bench.losses", "--batch=1", "--size=16", "--rounds=2"])
  assert p.returncode == 0, p.stderr[-2000:]
  lines = p.stdout.strip().splitlines()
  assert lines[0].startswith("# losses") and any("allocator:" in line for line in lines[:4])
  assert lines[-1].startswith("SUMMARY losses:")
  assert "| objectness (Eq. 4) |" in p.stdout


@pytest.mark.e2e
def test_vs_pytorch_without_torch_says_so_and_exits_0(tmp_path):
  (tmp_path / "torch.py").write_text("raise ImportError('torch hidden by the test')\n")
  p = _run(["bench.vs_pytorch"], {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})
  assert p.returncode == 0, p.stderr[-2000:]
  assert "torch is not installed" in p.stdout
  assert p.stdout.strip().splitlines()[-1].startswith("SUMMARY vs PyTorch: skipped")


@pytest.mark.e2e
def test_wgrad_dots_checks_every_formulation_against_lax_and_ends_with_its_summary():
  p = _run(["bench.wgrad_dots", "--size=16", "--cin=4", "--cout=8", "--rounds=1", "--reps=1"])
  assert p.returncode == 0, p.stderr[-2000:]
  assert "| wgrad: wgmm (layers.py) |" in p.stdout and "| bare: the 9 TN dots alone |" in p.stdout
  summary = p.stdout.strip().splitlines()[-1]
  assert summary.startswith("SUMMARY wgrad_dots GFLOP/s: lax ") and "matmul peak" in summary


def test_xla_backends_report_names_the_backend_and_the_bfloat16_upcast():
  """What bench/ reports as 'what XLA compiled': a float32 dot runs in float32 with no convert; a
  bfloat16 dot is converted to float32 before the dot on XLA:CPU (jax 0.10.2: no bf16 kernel
  reaches the CPU's avx512_bf16 units, docs/performance.md); a conv is a conv."""
  import jax
  import jax.numpy as jnp
  if jax.default_backend() != "cpu":
    return
  a32 = jnp.ones((64, 64), jnp.float32)
  f32 = common.xla_compiled_backends(jax.jit(jnp.dot).lower(a32, a32).compile())
  assert not f32["bf16_upcast"] and any("f32" in op for op in f32["xla_ops"]), f32
  a16 = a32.astype(jnp.bfloat16)
  bf16 = common.xla_compiled_backends(jax.jit(jnp.dot).lower(a16, a16).compile())
  assert bf16["bf16_upcast"] and "dot f32" in bf16["xla_ops"], bf16
  conv = jax.jit(lambda x, w: jax.lax.conv(x, w, (1, 1), "SAME"))
  x, w = jnp.ones((1, 4, 8, 8)), jnp.ones((4, 4, 3, 3))
  c = common.xla_compiled_backends(conv.lower(x, w).compile())
  assert "convolution f32" in c["xla_ops"] or c["fusions"], c
  assert "bf16 converted to f32" in common.describe_backends(bf16)
  assert "bf16" not in common.describe_backends(f32)


@pytest.mark.e2e
def test_xla_backends_lists_its_flag_sets():
  p = _run(["bench.xla_backends", "--list"])
  assert p.returncode == 0, p.stderr[-2000:]
  assert "onednn" in p.stdout and "--xla_cpu_use_onednn=true" in p.stdout


FAKE_WORKERS = """
from absl import flags
from bench import common, vs_pytorch
flags.FLAGS(["vs_pytorch", "--sizes=256", "--dtypes=float32,bfloat16", "--rounds=2"])
SECS = {("jax", "float32"): 2.0, ("torch", "float32"): 1.0, ("jax", "bfloat16"): 2.5,
        ("torch", "bfloat16"): 0.5}
def fake_worker(side, size, mode, dtype="float32"):
  t = SECS[side, dtype]
  return dict(times=[t, t, 3 * t], flops=1e11, params=7, first_loss=3.0445, version="x",
              ours=1.0, others=0.0, cpu_s=2 * t, isa=f"{side}-{dtype}-isa")
vs_pytorch.run_worker = fake_worker
common.matmul_peak = lambda dtype="float32", with_torch=False: {
    "jax": 100.0, "peak": 100.0 if dtype == "float32" else 200.0}
vs_pytorch.whole_step(common)
"""


@pytest.mark.e2e
def test_vs_pytorch_table_pairs_each_dtype_with_its_own_peak():
  """The driver's arithmetic on fixed worker results (a subprocess: absl flags are global): per
  (size, dtype) the paired ratio t_torch / t_ours, the fraction of *that dtype's* matmul peak,
  bfloat16 also against torch float32, and the ISA lines."""
  p = subprocess.run([sys.executable, "-c", FAKE_WORKERS], cwd=REPO, capture_output=True,
                     text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
  assert p.returncode == 0, p.stderr[-2000:]
  out = p.stdout
  summary = json.loads("{" + out.strip().splitlines()[-1].split(" {", 1)[1])
  assert summary["same-256"] == 0.5 and summary["same-256-bfloat16"] == 0.2
  assert summary["same-256-bfloat16-vs-torch-float32"] == 0.4
  # ours float32: 1e11 / 2 s = 50 GFLOP/s = 50 % of 100; ours bfloat16: 40 GFLOP/s = 20 % of 200
  assert "| same 256² float32 | ours (JAX, train.py step) | 2.000 [2.000–2.000] | 50.0 | 50 % |" in out
  assert "| same 256² bfloat16 | ours (JAX, train.py step) | 2.500 [2.500–2.500] | 40.0 | 20 % |" in out
  assert "PyTorch x eager + autocast" in out and "- same-256-bfloat16 torch: torch-bfloat16-isa" in out


@pytest.mark.e2e
def test_dtype_peak_runs_and_ends_with_its_summary():
  p = _run(["bench.dtype_peak", "--n=64", "--rounds=1", "--reps=1"])
  assert p.returncode == 0, p.stderr[-2000:]
  assert "| jax bfloat16 |" in p.stdout
  assert p.stdout.strip().splitlines()[-1].startswith("SUMMARY bf16 / f32 speed: jax ")
