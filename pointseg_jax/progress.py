"""Progress bars (tqdm, stderr) that absl log lines print above instead of cutting through.

While a bar is shown, a filter on absl's handler writes each log record with `tqdm.write` (which
clears the bar, prints the line, redraws the bar) and drops the normal emission. The training bar
starts its clock after the first step (`start_after_first`): that step includes compiling, which
would otherwise dominate the rate and the ETA (minutes on a run of seconds).
"""
import logging as std_logging
import sys

from absl import logging
import tqdm


class _LogAboveBar(std_logging.Filter):
  """Write absl's records through tqdm.write (above the bars) and drop the normal emission."""

  def __init__(self, file):
    super().__init__()
    self.file = file

  def filter(self, record):
    tqdm.tqdm.write(logging.get_absl_handler().format(record), file=self.file)
    return False


def _logs_to_terminal() -> bool:
  """absl logs to stderr (its default), not to a log file: the bar shares its stream."""
  stream = getattr(logging.get_absl_handler().python_handler, "stream", None)
  return stream in (sys.stderr, sys.__stderr__)


class Progress:
  """A tqdm bar (context manager); `advance_to(n)` after n units are done."""

  def __init__(self, total=None, *, initial=0, enabled=True, desc=None, unit="step", leave=True,
               start_after_first=False, file=None, postfix=None):
    self.enabled = bool(enabled)
    self._kwargs = dict(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True,
                        file=file or sys.stderr)
    self._bar = None
    self._filter = None
    self._postfix = postfix
    if self.enabled and not start_after_first:
      self._open(initial)

  def _open(self, initial):
    self._bar = tqdm.tqdm(initial=initial, **self._kwargs)
    if self._postfix:
      self._bar.set_postfix_str(self._postfix)
    if _logs_to_terminal():
      self._filter = _LogAboveBar(self._kwargs["file"])
      logging.get_absl_handler().addFilter(self._filter)

  def advance_to(self, n: int) -> None:
    if not self.enabled:
      return
    if self._bar is None:       # start_after_first: the clock starts now, at n
      self._open(n)
      return
    self._bar.update(n - self._bar.n)

  def set_postfix(self, text: str) -> None:
    self._postfix = text
    if self._bar is not None:
      self._bar.set_postfix_str(text)

  def close(self) -> None:
    if self._filter is not None:
      logging.get_absl_handler().removeFilter(self._filter)
      self._filter = None
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
