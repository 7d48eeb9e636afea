"""Helpers shared by several test files (no test file imports another: they import this)."""
import dataclasses
import os
import pathlib
import re
from typing import Callable

from pointseg_jax import config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name="point", arg="tiny", **overrides):
  config = config_lib.get_config(name, arg)
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split("__")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def tiny_config(data_dir, name="point", **overrides):
  return load_config(name, "tiny", data__data_dir=data_dir, train__progress_bar=False,
                     **overrides)


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  does: str                      # what the user does (the docs' first column)
  shows: str                     # the stderr line; paths as <tmp> (the case's dir) and <cwd>
  exit_status: int = 2
  argv: tuple[str, ...] = ()     # a flag case: the command line after the program name
  run: Callable | None = None    # a run case: run(tmp) calls main.run(...)
  setup: Callable | None = None  # setup(tmp): what the user has before the command (a run, a file)

  def render(self, line: str, tmp) -> str:
    """line with the case's paths written as placeholders (longest first)."""
    for path, name in sorted([(str(tmp), "<tmp>"), (os.getcwd(), "<cwd>")], key=lambda p: -len(p[0])):
      line = line.replace(path, name)
    return line


# Not an error: what a stopped training run prints (tests/test_train.py sends the SIGTERM, and
# test_robust_runs.py the Ctrl-C, and check their line against these).
SIGTERM = Case("sigterm", "SIGTERM during training (`kill <pid>`, a preempted spot VM, a batch "
               "scheduler)",
               "interrupted at step <N>; checkpoint saved to <tmp>/run/checkpoints; rerun the "
               "same command to resume", exit_status=143)
SIGINT = Case("sigint", "Ctrl-C during training (a second Ctrl-C stops without saving)",
              "interrupted at step <N>; checkpoint saved to <tmp>/run/checkpoints; rerun the same "
              "command to resume", exit_status=130)
CTRL_C_OUTSIDE = Case("ctrl_c_elsewhere", "Ctrl-C while building data, evaluating or predicting",
                      "interrupted (Ctrl-C); rerun the same command to continue", exit_status=130,
                      run=lambda tmp: (_ for _ in ()).throw(KeyboardInterrupt()))
STOPS = [SIGTERM, SIGINT, CTRL_C_OUTSIDE]


def matches_stop_line(case: Case, line: str, tmp) -> int:
  """Check a stopped run's line against case.shows; returns the step N it names."""
  pattern = re.escape(case.shows).replace(re.escape("<N>"), r"(\d+)")
  found = re.fullmatch(pattern, case.render(line, tmp))
  assert found, f"{line!r} does not match {case.shows!r}"
  return int(found.group(1))
