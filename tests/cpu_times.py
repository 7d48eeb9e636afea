"""`pytest --cpu-times`: CPU seconds per test file, printed at the end of the run.

Each test's CPU time is its process's own plus that of the subprocesses it waited for (a training
CLI, a notebook kernel), measured in the pytest-xdist worker that ran it and summed over the
workers. On a shared machine this is the number to compare, not wall time (`--durations`), which
the other users' load changes; docs/training.md "Test speed" has the measurements. Collection
(importing the test modules, ~16 s of CPU per worker) is not in it. conftest.py imports the hooks.
"""
import collections
import resource

import pytest

_KEY = "cpu_s"
_FILES = collections.Counter()   # test file -> CPU seconds, in the process that writes the report


def pytest_addoption(parser):
  parser.addoption("--cpu-times", action="store_true",
                   help="print CPU seconds per test file (process + waited-for subprocesses)")


def _cpu() -> float:
  own = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(item):
  if not item.config.getoption("cpu_times"):
    yield
    return
  start = _cpu()
  yield
  item.user_properties.append((_KEY, _cpu() - start))   # reaches the controller in the report


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
  yield from _timed(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
  yield from _timed(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
  yield from _timed(item)


def pytest_runtest_logreport(report):
  if report.when == "teardown":   # the last report of a test holds all three phases
    seconds = sum(v for k, v in report.user_properties if k == _KEY)
    if seconds:
      _FILES[report.nodeid.split("::")[0]] += seconds


def pytest_terminal_summary(terminalreporter, config):
  if not config.getoption("cpu_times") or not _FILES:
    return
  terminalreporter.write_sep("=", f"CPU seconds per test file (total {sum(_FILES.values()):.0f})")
  for name, seconds in _FILES.most_common():
    terminalreporter.write_line(f"{seconds:8.1f}  {name}")
