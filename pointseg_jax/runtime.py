"""Process-wide setup every entry point does once (the main CLI, the demo, the experiment runners).

TensorFlow only feeds data here (tf.data runs on the CPU): it must not take the GPU memory JAX
needs (flax issue #445), so it is told to see no accelerator before it touches one. Orbax logs a
dozen INFO lines per checkpoint through absl; only its warnings are kept.
"""
import logging as std_logging

from absl import logging


def hide_accelerators_from_tensorflow() -> None:
  """Keep TensorFlow (tf.data) off every GPU; a no-op once TF has initialised its devices."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (paid only by data users)
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:   # TF already initialised its devices: too late, and already decided
    pass


def quiet_orbax_info() -> None:
  """Orbax's INFO lines go; its warnings and everything else stay."""
  handler = logging.get_absl_handler()
  handler.addFilter(lambda r: r.levelno >= std_logging.WARNING or "orbax" not in r.pathname)


def setup_process() -> None:
  """Both of the above: what a command that trains or evaluates calls first in its main()."""
  quiet_orbax_info()
  hide_accelerators_from_tensorflow()
