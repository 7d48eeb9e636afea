"""Stop a training run cleanly on SIGTERM / SIGINT: finish the step, save it, exit.

A preempted Cloud TPU spot VM, a batch scheduler or `kill` sends SIGTERM some seconds before the
process is killed; Ctrl-C sends SIGINT. Inside `StopSignals` both only set a flag, so a train step,
a metrics fetch or a checkpoint save is never cut in half; the loop asks `requested(step)` after
each step and then saves that step (docs/training.md, "Preemption"). Evaluation has nothing to
finish: it polls `stopping` between batches and raises StopNow. A second Ctrl-C stops without
saving.

With several processes (multi-host TPU) every process must save the same step: there JAX's
preemption service (started by jax.distributed.initialize) owns SIGTERM and
`multihost_utils.reached_preemption_sync_point` names a step all processes agree on.
"""
import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils


class StopNow(BaseException):
  """Raised by a loop that saw `stopping` (evaluation); a BaseException so no `except Exception`
  on the way swallows it (like KeyboardInterrupt)."""


class StopSignals:
  """Context manager: while active, SIGTERM / SIGINT request a stop instead of killing."""

  def __init__(self):
    self.signum = None          # the first signal received
    self._previous = {}

  def _signals(self):
    if jax.process_count() > 1:   # SIGTERM is JAX's (sync point); a lone SIGINT cannot be agreed
      return ()
    return (signal.SIGTERM, signal.SIGINT)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():   # signal.signal's requirement
      for s in self._signals():
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt          # a second Ctrl-C: stop now, without saving
    if self.signum is None:
      self.signum = signum
      logging.warning("%s received: stopping after this step, which will be saved (Ctrl-C again "
                      "stops without saving)", signal.Signals(signum).name)

  def stopping(self) -> bool:
    """A signal arrived (this process); loops with nothing to finish poll it and stop."""
    return self.signum is not None

  def requested(self, step: int) -> bool:
    """True once a stop was asked for; call once per step (the multi-process sync point)."""
    if self.signum is not None:
      return True
    if jax.process_count() > 1:
      try:
        if multihost_utils.reached_preemption_sync_point(step):
          self.signum = signal.SIGTERM
          return True
      except RuntimeError:   # the preemption service is off (jax_enable_preemption_service)
        pass
    return False
