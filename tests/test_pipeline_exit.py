"""A process that takes one train batch and returns must exit (the #25 hang, docs/pipeline.md).

When tf.data's parallel `map` ran a `tf.numpy_function`, its worker threads needed the GIL while
the main thread, holding it, waited for them in the iterator's destructor at interpreter exit:
most such processes hung forever. Five real processes, started together, each must exit 0 within
EXIT_S of printing its batch.
"""
import os
import subprocess
import sys
import time

import pytest

from helpers import REPO

RUNS = 3
EXIT_S = 120         # the fixed pipeline exits in seconds (8–23 s at load 17); a hung one never
START_S = 600        # imports + first batch, five processes on a busy 2-core box

ONE_BATCH = """
import sys
from pointseg_jax import config_lib
from pointseg_jax.data import pipeline
config = config_lib.get_config("point", "tiny")
config.data.data_dir = sys.argv[1]
batch = next(pipeline.make_dataset(config.data, "train", batch_size=4, train=True, seed=0))
print("batch", batch["example_id"].tolist(), flush=True)
"""


@pytest.mark.e2e
@pytest.mark.timeout(1200)   # five processes at once; START_S + EXIT_S bound it
def test_one_batch_scripts_exit_promptly(tiny_data_dir, tmp_path):
  procs = []
  for i in range(RUNS):
    log = open(tmp_path / f"run{i}.log", "w+")
    procs.append((subprocess.Popen([sys.executable, "-c", ONE_BATCH, tiny_data_dir], cwd=REPO,
                                   stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)),
                  log))
  batches, deadline, done_at = set(), time.time() + START_S, {}
  try:
    while len(done_at) < RUNS or any(p.poll() is None for p, _ in procs):
      now = time.time()
      for i, (proc, log) in enumerate(procs):
        text = (tmp_path / f"run{i}.log").read_text()
        if i not in done_at and "batch [" in text:
          done_at[i] = now
        assert proc.poll() in (None, 0), text[-3000:]
        assert proc.poll() is None or i in done_at, f"process {i} exited without a batch:\n{text}"
        if proc.poll() is None:
          if i in done_at:
            assert now - done_at[i] < EXIT_S, (
                f"process {i} printed its batch {now - done_at[i]:.0f} s ago and has not exited "
                f"(hung at exit); log:\n{text[-3000:]}")
          else:
            assert now < deadline, f"process {i}: no batch after {START_S} s:\n{text[-3000:]}"
      time.sleep(0.2)
  finally:
    for proc, log in procs:
      if proc.poll() is None:
        proc.kill()
      proc.wait()
      log.close()
  for i in range(RUNS):
    line = [l for l in (tmp_path / f"run{i}.log").read_text().splitlines() if l.startswith("batch")]
    batches.add(line[0])
  assert len(batches) == 1, batches    # batch 0 = f(seed 0): the same in every process
