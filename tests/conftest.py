"""Test-wide setup: 8 fake CPU devices, set before jax is imported anywhere."""
import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keep TensorFlow (tf.data, TFDS) off any accelerator and from grabbing all host threads.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pathlib

import pytest

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
TESTDATA = SHARED / "testdata"


@pytest.fixture(scope="session")
def testdata_dir():
  """The real data folder beside the project (../shared/testdata); tests skip without it."""
  if not TESTDATA.is_dir():
    pytest.skip(f"real test data not found at {TESTDATA} (clone the project next to shared/)")
  return TESTDATA
