#!/usr/bin/env bash
# Train on a Cloud TPU VM (one host or a pod slice) with `gcloud compute tpus`.
#
#   launch/tpu.sh [--dry-run] COMMAND [-- EXTRA FLAGS FOR pointseg_jax.main]
#
#   create   get the slice: tpu-vm create (PROVISIONING=on-demand|spot) or a queued resource
#            (queued|queued-spot), waiting until it is ACTIVE
#   setup    copy this checkout's HEAD to every worker, install Python + `pip install .[tpu]` and
#            gcsfuse, mount the bucket, print each worker's global device count
#   run      mount the bucket where it is not (a restarted VM), then start
#            `python -m pointseg_jax.main` on every worker (--worker=all) in the background with the
#            workdir in the mounted bucket; flags after `--` are appended (e.g.
#            -- --config.train.num_steps=20000)
#   logs     follow worker 0's log (LOG_WORKER=N for another worker)
#   status   the TPU's (or queued resource's) state: READY / ACTIVE, PREEMPTED, SUSPENDED, ...
#   fetch    copy the run's workdir from the bucket (gs://) to runs/$RUN_NAME here
#   delete   delete the TPU VM (and its queued resource)
#   resume   after a preemption: delete, create, setup and run again with the same workdir; the
#            run continues from its last checkpoint
#
# --dry-run prints every command (one per line, prefixed with '+', shell-quoted) and runs none.
# Settings: launch/settings.sh (or LAUNCH_SETTINGS=FILE); environment variables override them.
# Walk-through, data on GCS, throughput and preemption: docs/cloud_tpu.md.
set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$LAUNCH_DIR")"
# shellcheck source=launch/lib.sh
source "$LAUNCH_DIR/lib.sh"
# shellcheck source=launch/settings.sh
source "${LAUNCH_SETTINGS:-$LAUNCH_DIR/settings.sh}"

REMOTE_DIR="pointseg_jax"            # on every worker, under the login user's home
REMOTE_LOG="pointseg_run.log"        # ditto
# BUCKET mounted with gcsfuse on every worker: the run's workdir is a folder in it, because main
# writes the workdir with local-file calls (it refuses a gs:// workdir) and every worker of a pod
# slice must see the same one (docs/cloud_tpu.md, "The workdir").
REMOTE_MOUNT="/mnt/pointseg_bucket"
# gcsfuse renames a folder only when it has fewer descendants than this; orbax finalises every
# checkpoint by renaming its temporary folder (params + momentum: tens of files per process).
RENAME_DIR_LIMIT=100000
: "${LOG_WORKER:=0}"
: "${POLL_SECONDS:=60}"

die() { echo "launch/tpu.sh: error: $*" >&2; exit 2; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------------------------------------
# The slice: hosts (= gcloud workers), JAX devices and runtime image per accelerator type.
# ---------------------------------------------------------------------------------------------

accel_family() { echo "${1%-*}"; }
accel_size() { echo "${1##*-}"; }

check_accelerator() {
  local family size
  family="$(accel_family "$1")"
  size="$(accel_size "$1")"
  [[ "$size" =~ ^[0-9]+$ ]] || die "ACCELERATOR_TYPE=$1: expected gcloud's form FAMILY-SIZE, e.g. v4-8 or v5litepod-16"
  case "$family" in
    v2|v3|v4|v5p|v5litepod|v6e) ;;
    v5e) die "ACCELERATOR_TYPE=$1: gcloud calls TPU v5e 'v5litepod' (use v5litepod-$size)" ;;
    *) die "ACCELERATOR_TYPE=$1: unknown TPU family '$family' (v2, v3, v4, v5p, v5litepod, v6e)" ;;
  esac
}

# Number of TPU VM hosts. v2/v3/v4/v5p names count TensorCores, 8 per host (4 chips of 2 cores);
# v5e/v6e names count chips: up to 8 chips are one host, larger slices have 4 chips per host.
num_workers() {
  local family size
  family="$(accel_family "$1")"
  size="$(accel_size "$1")"
  case "$family" in
    v2|v3|v4|v5p) echo $(( size > 8 ? size / 8 : 1 )) ;;
    v5litepod|v6e) echo $(( size > 8 ? size / 4 : 1 )) ;;
  esac
}

# Devices JAX sees over the whole slice: one per TensorCore on v2/v3, one per chip elsewhere (v4
# and v5p chips are 'megacore': their two TensorCores form one device).
num_devices() {
  local family size
  family="$(accel_family "$1")"
  size="$(accel_size "$1")"
  case "$family" in
    v2|v3|v5litepod|v6e) echo "$size" ;;
    v4|v5p) echo $(( size / 2 )) ;;
  esac
}

default_runtime() {
  case "$(accel_family "$1")" in
    v2|v3|v4) echo "tpu-ubuntu2204-base" ;;
    v5litepod) echo "v2-alpha-tpuv5-lite" ;;
    v5p) echo "v2-alpha-tpuv5" ;;
    v6e) echo "v2-alpha-tpuv6e" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# gcloud helpers.
# ---------------------------------------------------------------------------------------------

is_queued() { [[ "$PROVISIONING" == queued || "$PROVISIONING" == queued-spot ]]; }

tpu_ssh() {   # tpu_ssh WORKER REMOTE_COMMAND
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOC[@]}" "--worker=$1" "--command=$2"
}

# Google's apt route for gcsfuse (Cloud Storage FUSE docs, "Install Cloud Storage FUSE"): the
# gcsfuse-<codename> repository (gcsfuse-jammy on the ubuntu 22.04 TPU images), signed with the
# packages.cloud.google.com key. Skipped when gcsfuse is already installed.
gcsfuse_install_command() {
  local keyring=/usr/share/keyrings/cloud.google.asc
  local repo="deb [signed-by=$keyring] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main"
  echo "(command -v gcsfuse >/dev/null || (curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee $keyring >/dev/null" \
       "&& echo \"$repo\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null" \
       "&& sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcsfuse))"
}

# Mount BUCKET at REMOTE_MOUNT as the login user, unless something is mounted there already (setup
# mounts; run checks again, since a restarted VM comes back without the mount). A BUCKET with a
# folder (gs://name/prefix) mounts only that folder. --implicit-dirs: folders that exist only as
# object-name prefixes (written through gs://, e.g. by `gcloud storage cp`) are listed too.
mount_command() {
  local rest="${BUCKET#gs://}" only_dir=()
  [[ "$rest" == */* ]] && only_dir=("--only-dir=${rest#*/}")
  local gcsfuse
  gcsfuse="$(shell_line gcsfuse --implicit-dirs "--rename-dir-limit=$RENAME_DIR_LIMIT" \
             "${only_dir[@]}" "${rest%%/*}" "$REMOTE_MOUNT")"
  echo "mountpoint -q $REMOTE_MOUNT || { sudo mkdir -p $REMOTE_MOUNT" \
       "&& sudo chown \"\$(id -u):\$(id -g)\" $REMOTE_MOUNT && $gcsfuse; }"
}

# ---------------------------------------------------------------------------------------------
# Commands.
# ---------------------------------------------------------------------------------------------

cmd_create() {
  local spot=()
  [[ "$PROVISIONING" == spot || "$PROVISIONING" == queued-spot ]] && spot=(--spot)
  if is_queued; then
    local until=()
    [[ -n "$QUEUE_TIMEOUT" ]] && until=("--valid-until-duration=$QUEUE_TIMEOUT")
    run gcloud compute tpus queued-resources create "$TPU_NAME" "--node-id=$TPU_NAME" "${LOC[@]}" \
      "--accelerator-type=$ACCELERATOR_TYPE" "--runtime-version=$RUNTIME_VERSION" \
      "${spot[@]}" "${until[@]}"
    wait_active
  else
    run gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOC[@]}" \
      "--accelerator-type=$ACCELERATOR_TYPE" "--version=$RUNTIME_VERSION" "${spot[@]}"
  fi
}

# Poll the queued resource until it is ACTIVE (its TPU VM exists); FAILED / SUSPENDED end here.
wait_active() {
  local state
  local describe=(gcloud compute tpus queued-resources describe "$TPU_NAME" "${LOC[@]}"
                  "--format=value(state.state)")
  if (( DRY_RUN )); then
    echo "# every ${POLL_SECONDS} s until the state is ACTIVE:"
    run "${describe[@]}"
    return
  fi
  while true; do
    state="$("${describe[@]}")"
    echo "$(date +%H:%M:%S) queued resource $TPU_NAME: $state"
    case "$state" in
      ACTIVE) return ;;
      FAILED|SUSPENDED|SUSPENDING) die "queued resource $TPU_NAME is $state: see" \
        "'gcloud compute tpus queued-resources describe $TPU_NAME --zone=$ZONE'; launch/tpu.sh delete, then create again" ;;
    esac
    sleep "$POLL_SECONDS"
  done
}

cmd_status() {
  if is_queued; then
    run gcloud compute tpus queued-resources describe "$TPU_NAME" "${LOC[@]}" "--format=value(state.state)"
  fi
  run gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOC[@]}" "--format=value(state,health)"
}

cmd_setup() {
  local tarball="${TMPDIR:-/tmp}/pointseg_jax-src.tar.gz"
  if (( ! DRY_RUN )) && [[ -n "$(git -C "$REPO_DIR" status --porcelain --untracked-files=no)" ]]; then
    echo "launch/tpu.sh: warning: uncommitted changes are not copied (setup ships HEAD)" >&2
  fi
  run git -C "$REPO_DIR" archive --format=tar.gz "--output=$tarball" HEAD
  run gcloud compute tpus tpu-vm scp "$tarball" "$TPU_NAME:pointseg_jax-src.tar.gz" "${LOC[@]}" \
    --worker=all
  local steps=(
    "set -e"
    "(command -v $PYTHON >/dev/null || (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PYTHON $PYTHON-venv))"
    "rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf pointseg_jax-src.tar.gz -C $REMOTE_DIR"
    "cd $REMOTE_DIR && $PYTHON -m venv .venv && .venv/bin/pip install -q --upgrade pip"
    ".venv/bin/pip install -q '.[tpu]'"
    "$(gcsfuse_install_command)"
    "$(mount_command)"
    ".venv/bin/python -c 'import jax; print(\"worker\", jax.process_index(), \"sees\", jax.device_count(), \"devices\")'"
  )
  local remote
  remote="$(printf '%s; ' "${steps[@]}")"
  tpu_ssh all "${remote%; }"
}

# The training command every worker runs: the same on each (jax.distributed.initialize() finds the
# other workers itself on Cloud TPU; config variant `tpu` turns it on).
main_command() {
  local cmd=(.venv/bin/python -m pointseg_jax.main "--config=$CONFIG"
             "--workdir=$RUN_WORKDIR" "--config.data.data_dir=$DATA_DIR")
  [[ -n "$INIT_FROM" ]] && cmd+=("--config.model.init_from=$INIT_FROM")
  cmd+=("$@")
  shell_line "${cmd[@]}"
}

cmd_run() {
  local main
  if (( WORKERS > 1 )) && [[ ! "$CONFIG" =~ :(.*,)?tpu(,|$) && " $* " != *" --config.distributed=True "* ]]; then
    die "$ACCELERATOR_TYPE has $WORKERS hosts: CONFIG=$CONFIG needs the 'tpu' variant (or" \
        "--config.distributed=True) so that the workers join with jax.distributed.initialize()"
  fi
  main="$(main_command "$@")"
  # setsid + nohup: training outlives the ssh session; stdin closed so ssh returns at once.
  tpu_ssh all "set -e; $(mount_command); cd $REMOTE_DIR && TF_CPP_MIN_LOG_LEVEL=2 setsid nohup $main > ~/$REMOTE_LOG 2>&1 < /dev/null &"
  echo "# started on $WORKERS worker(s); follow with: launch/tpu.sh logs"
}

cmd_logs() {
  tpu_ssh "$LOG_WORKER" "tail -n 200 -F ~/$REMOTE_LOG"
}

cmd_fetch() {
  run mkdir -p "$REPO_DIR/runs/$RUN_NAME"
  run gcloud storage rsync --recursive "$WORKDIR" "$REPO_DIR/runs/$RUN_NAME"
}

cmd_delete() {
  if is_queued; then
    run gcloud compute tpus queued-resources delete "$TPU_NAME" "${LOC[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${LOC[@]}" --quiet
  fi
}

cmd_resume() {
  cmd_delete
  cmd_create
  cmd_setup
  cmd_run "$@"
}

# ---------------------------------------------------------------------------------------------

main() {
  local command=""
  while (( $# )); do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      -h|--help) usage; exit 0 ;;
      --) shift; break ;;
      -*) die "unknown option $1 (see launch/tpu.sh --help)" ;;
      *) [[ -z "$command" ]] || die "one command at a time (got '$command' and '$1')"; command="$1" ;;
    esac
    shift
  done
  [[ -n "$command" ]] || { usage >&2; exit 2; }
  if (( $# )) && [[ "$command" != run && "$command" != resume ]]; then
    die "flags after -- are for 'run' and 'resume' only"
  fi

  check_accelerator "$ACCELERATOR_TYPE"
  RUNTIME_VERSION="${RUNTIME_VERSION:-$(default_runtime "$ACCELERATOR_TYPE")}"
  WORKERS="$(num_workers "$ACCELERATOR_TYPE")"
  [[ "$BUCKET" == gs://* ]] || die "BUCKET=$BUCKET must be a gs:// URL (launch/settings.sh)"
  BUCKET="${BUCKET%/}"
  WORKDIR="$BUCKET/runs/$RUN_NAME"           # the run's workdir in the bucket (fetch reads it)
  RUN_WORKDIR="$REMOTE_MOUNT/runs/$RUN_NAME"  # the same folder on the workers, through the mount
  LOC=("--zone=$ZONE" "--project=$PROJECT")
  DATA_DIR="$BUCKET/tensorflow_datasets"
  case "$PROVISIONING" in
    on-demand|spot|queued|queued-spot) ;;
    *) die "PROVISIONING=$PROVISIONING: use on-demand, spot, queued or queued-spot" ;;
  esac
  if (( ! DRY_RUN )); then
    [[ "$PROJECT" != my-gcp-project && "$BUCKET" != gs://my-bucket ]] ||
      die "set PROJECT and BUCKET in launch/settings.sh (or the environment) first"
    command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI"
  fi

  echo "# TPU $TPU_NAME: $ACCELERATOR_TYPE, $WORKERS worker(s), $(num_devices "$ACCELERATOR_TYPE") JAX devices," \
       "runtime $RUNTIME_VERSION, $PROVISIONING; zone $ZONE, project $PROJECT; workdir $WORKDIR" \
       "(on the workers: $RUN_WORKDIR)"
  case "$command" in
    create|setup|run|logs|status|fetch|delete|resume) "cmd_$command" "$@" ;;
    *) die "unknown command '$command' (create, setup, run, logs, status, fetch, delete, resume)" ;;
  esac
}

main "$@"
