"""Test-wide setup: 8 fake CPU devices, set before jax is imported anywhere; one XLA compilation
cache for the session; the tiny dataset and tiny run built once for all pytest-xdist workers."""
import fcntl
import json
import os
import shutil
import tempfile

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keep TensorFlow (tf.data, TFDS) off any accelerator and from grabbing all host threads.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pathlib
import subprocess
import sys

import pytest

# `pytest --cpu-times`: CPU seconds per test file (tests/cpu_times.py; its hooks, imported here).
from cpu_times import (pytest_addoption, pytest_runtest_call, pytest_runtest_logreport,  # noqa: F401
                       pytest_runtest_setup, pytest_runtest_teardown, pytest_terminal_summary)


def pytest_configure(config):
  """One persistent XLA compilation cache per test session, in a temporary folder removed at the
  end, shared through the environment by the xdist workers and every process a test starts.

  Most of the suite's CPU time is XLA compiling the same tiny train / eval steps again in each
  worker and each training subprocess (docs/training.md, "Test speed"); a cache hit loads the
  executable XLA wrote for the identical program and options, so results are unchanged (the
  kill / resume tests compare params bit for bit across processes that compiled and that loaded).
  A user's own $JAX_COMPILATION_CACHE_DIR is kept.
  """
  if hasattr(config, "workerinput") or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return   # an xdist worker: the controller set it before starting the workers
  cache = tempfile.mkdtemp(prefix="pointseg-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))

# Real data for the tests that need it: 14 PASCAL VOC 2012 val photos with masks and predictions
# (voc_val_samples/<n>_{image,target,pred}.png) and the objectness v2.2 release's reference run and
# model (alexe_objectness_v2.2/). Not part of the repository: $POINTSEG_TESTDATA, else a
# `shared/testdata` folder next to the clone.
TESTDATA = pathlib.Path(os.environ.get(
    "POINTSEG_TESTDATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata"))


@pytest.fixture(scope="session")
def testdata_dir():
  """The real data folder (TESTDATA); tests that need it skip, saying why, when it is absent."""
  if not TESTDATA.is_dir():
    pytest.skip(f"real test data not found at {TESTDATA} (set $POINTSEG_TESTDATA to the folder "
                "holding voc_val_samples/ and alexe_objectness_v2.2/)")
  return TESTDATA


REPO = pathlib.Path(__file__).resolve().parents[1]


class Cli:
  """Runs `python -m MODULE ARGS...` in a subprocess from the repository root, as a user would."""

  def __call__(self, module: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)

  @staticmethod
  def error(proc: subprocess.CompletedProcess) -> str:
    """The one `error: ...` line of a refused run (exit 2, no traceback); asserts exactly that."""
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, (
        proc.returncode, proc.stderr[-3000:])
    return lines[0]


@pytest.fixture(scope="session")
def run_cli():
  return Cli()


def build_once(tmp_path_factory, name: str, build) -> dict:
  """build(path) -> JSON-able result, run once per test session for all pytest-xdist workers.

  The first worker to ask builds `name` in the session's common temporary folder under a file
  lock; the others wait on the lock and reuse it (each would otherwise build its own copy). What
  is built must only be read by the tests that share it.
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent   # pytest-N/, the parent of every worker's popen-gwK/
  done = root / f"{name}.json"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes, also if build raises
    if not done.exists():
      result = build(root / name)
      done.write_text(json.dumps(result))
  return json.loads(done.read_text())


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """synthetic_points/tiny built once per session (seconds) in a private TFDS data dir."""
  def build(path):
    from pointseg_jax import data  # pylint: disable=g-import-not-at-top  (TensorFlow: paid only when used)
    data.prepare("synthetic_points/tiny", str(path))
    return str(path)
  return build_once(tmp_path_factory, "tfds_tiny", build)


@pytest.fixture(scope="session")
def tiny_run(tiny_data_dir, tmp_path_factory):
  """A finished configs/point.py:tiny run of 6 steps on 8 CPU devices -> (workdir, stdout).

  Made by `launch/gpu_check.sh --tiny`, so that script runs end to end too (test_launch.py checks
  its output); the notebook and prediction tests inspect the run (read only: it is shared).
  """
  def build(path):
    path.mkdir()
    workdir = path / "run"
    proc = subprocess.run(
        ["bash", str(REPO / "launch" / "gpu_check.sh"), "--tiny", "--steps", "6", "--workdir",
         str(workdir), "--data_dir", tiny_data_dir],
        env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [str(workdir), proc.stdout]
  workdir, stdout = build_once(tmp_path_factory, "tiny_run", build)
  return pathlib.Path(workdir), stdout


# The longest test files first (CPU seconds per file in a `make test` run with the plugin of
# docs/training.md "Test speed"): under pytest-xdist (--dist loadfile) a long file collected last
# would run alone at the end while the other worker idles. test_launch.py leads because its
# gpu_check test builds the shared tiny run (`build_once`), which the notebook and predict tests,
# collected later, then find ready instead of waiting for it. Only the order changes.
LONGEST_FIRST = ("test_launch.py", "test_train.py", "test_multiprocess.py", "test_parallel.py",
                 "test_pipeline_exit.py", "test_experiments.py", "test_losses.py",
                 "test_models.py", "test_pairwise_loss.py", "test_bench.py",
                 "test_mixed_precision.py", "test_custom_points.py", "test_weights.py",
                 "test_robust_runs.py", "test_synthetic_points.py", "test_pipeline.py")


# What leaves `make test-fast` by the fixtures a test uses (marked here so that a new test using
# them needs no mark of its own): a CLI or the tiny run in a subprocess is `e2e`; the tiny TFDS
# set, or a module fixture that builds a dataset of its own, is `integration`.
E2E_FIXTURES = ("run_cli", "tiny_run")
DATASET_FIXTURES = ("tiny_data_dir", "data_dir", "built", "tiny")


@pytest.hookimpl(tryfirst=True)   # before `-m` deselects by these marks
def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if any(name in item.fixturenames for name in E2E_FIXTURES):
      item.add_marker(pytest.mark.e2e)
    elif any(name in item.fixturenames for name in DATASET_FIXTURES):
      item.add_marker(pytest.mark.integration)
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: file order kept
