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
