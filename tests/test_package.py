"""The package imports and the test environment gives 8 CPU devices (conftest)."""
import jax

import pointseg_jax


def test_eight_cpu_devices():
  assert jax.device_count() == 8


def test_class_table():
  assert len(pointseg_jax.CLASS_NAMES) == pointseg_jax.NUM_CLASSES == 21
  assert pointseg_jax.CLASS_NAMES[15] == "person"
