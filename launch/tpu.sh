#!/usr/bin/env bash
# Train on a Cloud TPU VM (one host or a pod slice) with `gcloud compute tpus`.
#
#   launch/tpu.sh [--dry-run] [--all-checkpoints] [--delete-when-done] COMMAND [-- MAIN FLAGS]
#
#   init     once per project: enable the Cloud TPU API, create BUCKET (in ZONE's region) if it
#            does not exist, grant the TPU VM's service account roles/storage.objectAdmin on it;
#            checks first that gcloud is logged in
#   create   get the slice: tpu-vm create (PROVISIONING=on-demand|spot) or a queued resource
#            (queued|queued-spot), waiting until it is ACTIVE
#   setup    copy this checkout's HEAD to every worker, install Python + `pip install .[tpu]` and
#            gcsfuse, mount the bucket, print each worker's global device count
#   run      mount the bucket where it is not (a restarted VM), then start
#            `python -m pointseg_jax.main` on every worker (--worker=all) in the background with the
#            workdir in the mounted bucket; flags after `--` are appended (e.g.
#            -- --config.train.num_steps=20000)
#   watch    start and leave: create / setup / run as needed, then poll every POLL_SECONDS; on a
#            preempted, terminated, suspended or deleted slice recreate it and run the same command
#            again (it resumes from the last checkpoint in the bucket), at most WATCH_RETRIES times
#            with a doubling backoff; one log line per event; ends when training exits 0
#            (--delete-when-done: then delete the slice) or with an error that a rerun cannot fix
#   logs     follow worker 0's log (LOG_WORKER=N for another worker)
#   status   the TPU's (or queued resource's) state: READY / ACTIVE, PREEMPTED, SUSPENDED, ...
#   fetch    copy the run's results from the bucket to runs/$RUN_NAME here: metrics, summary /
#            eval json, TensorBoard events, config.json and the LAST checkpoint only
#            (--all-checkpoints: every kept checkpoint, ~1.1 GB each for the voc model)
#   delete   delete the TPU VM (and its queued resource)
#   resume   after a preemption, once: delete, create, setup and run again with the same workdir
#
# --dry-run prints every command (one per line, prefixed with '+', shell-quoted) and runs none.
# Settings: launch/settings.sh (or LAUNCH_SETTINGS=FILE); environment variables override them.
# Walk-through, one-time setup, budget and preemption: docs/cloud_tpu.md.
set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$LAUNCH_DIR")"
# shellcheck source=launch/lib.sh
source "$LAUNCH_DIR/lib.sh"
# shellcheck source=launch/settings.sh
source "${LAUNCH_SETTINGS:-$LAUNCH_DIR/settings.sh}"
# Defaults for settings a copy of settings.sh made before they existed may lack.
: "${SERVICE_ACCOUNT:=}" "${POLL_SECONDS:=60}" "${WATCH_RETRIES:=8}" "${WATCH_BACKOFF:=60}"
: "${WATCH_BACKOFF_MAX:=1800}"

REMOTE_DIR="pointseg_jax"            # on every worker, under the login user's home
REMOTE_STEM="pointseg_run"            # ditto: the run's log, and main's exit status written when
REMOTE_LOG="$REMOTE_STEM.log"          # it ends (watch reads it)
REMOTE_RC="$REMOTE_STEM.rc"
# BUCKET mounted with gcsfuse on every worker: the run's workdir is a folder in it, because main
# writes the workdir with local-file calls (it refuses a gs:// workdir) and every worker of a pod
# slice must see the same one (docs/cloud_tpu.md, "The workdir").
REMOTE_MOUNT="/mnt/pointseg_bucket"
# gcsfuse renames a folder only when it has fewer descendants than this; orbax finalises every
# checkpoint by renaming its temporary folder (params + momentum: tens of files per process).
RENAME_DIR_LIMIT=100000
: "${LOG_WORKER:=0}"
ALL_CHECKPOINTS=0
DELETE_WHEN_DONE=0

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

# Ask for the slice: a queued-resource request (returns once filed) or a TPU VM (returns when it
# is READY, or fails at once when the zone has no capacity).
create_request() {
  local spot=() account=()
  [[ "$PROVISIONING" == spot || "$PROVISIONING" == queued-spot ]] && spot=(--spot)
  [[ -n "$SERVICE_ACCOUNT" ]] && account=("--service-account=$SERVICE_ACCOUNT")
  if is_queued; then
    local until=()
    [[ -n "$QUEUE_TIMEOUT" ]] && until=("--valid-until-duration=$QUEUE_TIMEOUT")
    run gcloud compute tpus queued-resources create "$TPU_NAME" "--node-id=$TPU_NAME" "${LOC[@]}" \
      "--accelerator-type=$ACCELERATOR_TYPE" "--runtime-version=$RUNTIME_VERSION" \
      "${account[@]}" "${spot[@]}" "${until[@]}"
  else
    run gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOC[@]}" \
      "--accelerator-type=$ACCELERATOR_TYPE" "--version=$RUNTIME_VERSION" "${account[@]}" "${spot[@]}"
  fi
}

cmd_create() {
  create_request
  if is_queued; then
    wait_active
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

# Once per project (docs/cloud_tpu.md, "Once per project"): the API, the bucket in the TPU's
# region, and the bucket role of the service account the TPU VMs run as. Safe to run again.
cmd_init() {
  local account bucket_name="${BUCKET#gs://}" region="${ZONE%-*}" found number sa
  bucket_name="${bucket_name%%/*}"
  if (( ! DRY_RUN )); then
    account="$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null || true)"
    [[ -n "$account" ]] || die "gcloud is not logged in: run 'gcloud auth login' first"
    echo "# gcloud account: $account"
    gcloud auth application-default print-access-token >/dev/null 2>&1 ||
      echo "launch/tpu.sh: warning: no application-default credentials: run" \
           "'gcloud auth application-default login' before building a dataset into gs://" >&2
  fi
  run gcloud services enable tpu.googleapis.com "--project=$PROJECT"
  if run_output found gcloud storage buckets describe "gs://$bucket_name" "--format=value(name)" &&
      [[ -n "$found" ]]; then
    echo "# bucket gs://$bucket_name exists"
  else
    (( DRY_RUN )) && echo "# only when the bucket does not exist yet:"
    run gcloud storage buckets create "gs://$bucket_name" "--project=$PROJECT" \
      "--location=$region" --uniform-bucket-level-access
  fi
  if [[ -n "$SERVICE_ACCOUNT" ]]; then
    sa="$SERVICE_ACCOUNT"
  else   # the default Compute Engine service account: PROJECT_NUMBER-compute@...
    run_output number gcloud projects describe "$PROJECT" "--format=value(projectNumber)" ||
      die "cannot read the project number of PROJECT=$PROJECT (gcloud's error above)"
    (( DRY_RUN )) || [[ "$number" =~ ^[0-9]+$ ]] ||
      die "PROJECT=$PROJECT: expected a project number from gcloud, got '$number'"
    sa="${number:-PROJECT_NUMBER}-compute@developer.gserviceaccount.com"
  fi
  run gcloud storage buckets add-iam-policy-binding "gs://$bucket_name" \
    "--member=serviceAccount:$sa" --role=roles/storage.objectAdmin
  echo "# next: TPU quota for $ACCELERATOR_TYPE in $ZONE (docs/cloud_tpu.md, 'Quota'), then launch/tpu.sh create"
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
  # setsid + nohup: training outlives the ssh session; stdin closed so ssh returns at once. The
  # wrapper shell records main's exit status in ~/$REMOTE_RC when it ends (watch reads it; a VM
  # that vanishes writes none).
  local wrapped
  wrapped="$(shell_word "$main; echo \$? > ~/$REMOTE_RC")"
  tpu_ssh all "set -e; $(mount_command); cd $REMOTE_DIR && rm -f ~/$REMOTE_RC && TF_CPP_MIN_LOG_LEVEL=2 setsid nohup bash -c $wrapped > ~/$REMOTE_LOG 2>&1 < /dev/null &"
  echo "# started on $WORKERS worker(s); follow with: launch/tpu.sh logs"
}

cmd_logs() {
  tpu_ssh "$LOG_WORKER" "tail -n 200 -F ~/$REMOTE_LOG"
}

# The newest committed step among `gcloud storage ls` lines (.../checkpoints/<step>/); orbax's
# unfinished <step>.orbax-checkpoint-tmp-* folders are not steps. Empty when there is none.
latest_step_of() {
  local line name best=""
  while IFS= read -r line; do
    name="${line%/}"
    name="${name##*/}"
    if [[ "$name" =~ ^[0-9]+$ ]] && { [[ -z "$best" ]] || (( 10#$name > 10#$best )); }; then
      best="$name"
    fi
  done <<< "$1"
  echo "$best"
}

# Results and the last checkpoint (every checkpoint with --all-checkpoints). The exclude pattern
# matches checkpoints/ whether gcloud matches it against the path below the source or the whole
# URL (tests/test_launch.py checks both).
cmd_fetch() {
  local dest="$REPO_DIR/runs/$RUN_NAME" listing step
  run mkdir -p "$dest"
  if (( ALL_CHECKPOINTS )); then
    run gcloud storage rsync --recursive "$WORKDIR" "$dest"
    return
  fi
  run gcloud storage rsync --recursive "--exclude=(.*/)?checkpoints/.*" "$WORKDIR" "$dest"
  if ! run_output listing gcloud storage ls "$WORKDIR/checkpoints/"; then
    echo "# no checkpoint in $WORKDIR/checkpoints/ (results copied)"
    return
  fi
  if (( DRY_RUN )); then
    step="LAST_STEP"
    echo "# LAST_STEP = the highest numbered folder listed:"
  else
    step="$(latest_step_of "$listing")"
    [[ -n "$step" ]] || { echo "# no committed checkpoint in $WORKDIR/checkpoints/ (results copied)"; return; }
  fi
  run gcloud storage rsync --recursive "$WORKDIR/checkpoints/$step" "$dest/checkpoints/$step"
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
# watch: keep a spot / queued run going until it finishes.
# ---------------------------------------------------------------------------------------------

watch_log() { echo "$(date -u +%H:%M:%S) watch: $*"; }

# What worker 0 says about training, first line: `running`, `exited N` (then the log's last lines),
# `idle` (installed, nothing running: e.g. the VM restarted) or `new` (setup never ran here).
# Running = run's wrapper shell is alive (its command line names the rc file; it lives exactly as
# long as main). The probe never spells that name out (it writes \$f.rc and a bracketed pattern),
# so that pgrep does not find the probe's own shell.
probe_command() {
  echo "f=~/$REMOTE_STEM; if [ -f \$f.rc ]; then echo exited \$(cat \$f.rc); tail -n 5 \$f.log;" \
       "elif pgrep -f '${REMOTE_STEM}[.]rc' >/dev/null; then echo running;" \
       "elif [ -x ~/$REMOTE_DIR/.venv/bin/python ]; then echo idle; else echo new; fi"
}

# The slice's state in one word, into SLICE_STATE: READY, WAIT (queued, being created, repaired,
# ...), LOST (preempted, terminated, suspended, failed or deleted), STOPPED, or ERROR (gcloud
# failed for another reason); SLICE_DETAIL: the state as gcloud spells it, for the log.
slice_state() {
  local out err
  err="$(mktemp)"
  if is_queued; then
    if ! out="$(gcloud compute tpus queued-resources describe "$TPU_NAME" "${LOC[@]}" \
                "--format=value(state.state)" 2>"$err")"; then
      slice_error "$err" "queued resource"
      return
    fi
    SLICE_DETAIL="queued resource $out"
    case "$out" in
      ACTIVE) ;;
      SUSPENDING|SUSPENDED|FAILED) SLICE_STATE=LOST; rm -f "$err"; return ;;
      *) SLICE_STATE=WAIT; rm -f "$err"; return ;;
    esac
  fi
  if ! out="$(gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOC[@]}" "--format=value(state)" \
              2>"$err")"; then
    slice_error "$err" "TPU VM"
    return
  fi
  rm -f "$err"
  SLICE_DETAIL="TPU VM $out"
  case "$out" in
    READY) SLICE_STATE=READY ;;
    PREEMPTED|TERMINATED) SLICE_STATE=LOST ;;
    STOPPING|STOPPED) SLICE_STATE=STOPPED ;;
    *) SLICE_STATE=WAIT ;;
  esac
}

slice_error() {   # slice_error STDERR_FILE WHAT: a describe failed; NOT_FOUND = deleted
  if grep -q NOT_FOUND "$1"; then
    SLICE_DETAIL="$2 $TPU_NAME not found"
    SLICE_STATE=LOST
  else
    SLICE_DETAIL="$2: gcloud failed: $(tr '\n' ' ' < "$1")"
    SLICE_STATE=ERROR
  fi
  rm -f "$1"
}

# Worker 0's answer to probe_command, from its status line on (gcloud's own lines dropped); empty
# when it did not answer.
probe_worker() {
  tpu_ssh 0 "$(probe_command)" 2>/dev/null |
    awk 'found || /^(running|idle|new|exited [0-9]+)$/ { found = 1; print }' || true
}

# Count one recovery (a recreate or a rerun), give up past WATCH_RETRIES, else wait the backoff.
# The first start of this watch is free.
watch_recovery() {
  if (( ! WATCH_STARTED )); then
    WATCH_STARTED=1
    watch_log "$1"
    return
  fi
  WATCH_EVENTS=$(( WATCH_EVENTS + 1 ))
  if (( WATCH_EVENTS > WATCH_RETRIES )); then
    watch_log "$1"
    die "watch gave up after $WATCH_RETRIES recoveries (WATCH_RETRIES); the checkpoints stay in $WORKDIR"
  fi
  watch_log "$1: recovery $WATCH_EVENTS of $WATCH_RETRIES in ${WATCH_DELAY} s"
  sleep "$WATCH_DELAY"
  WATCH_DELAY=$(( WATCH_DELAY * 2 > WATCH_BACKOFF_MAX ? WATCH_BACKOFF_MAX : WATCH_DELAY * 2 ))
}

# Exit 2 of main because another process holds the workdir lock: its one line names the lock or
# the other process (docs/cloud_tpu.md, "watch and the workdir lock").
is_lock_message() { grep -qiE 'lock|in use by|already running' <<< "$1"; }

watch_dry_run() {
  echo "# every ${POLL_SECONDS} s: the slice's state"
  if is_queued; then
    run gcloud compute tpus queued-resources describe "$TPU_NAME" "${LOC[@]}" "--format=value(state.state)"
  fi
  run gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOC[@]}" "--format=value(state)"
  echo "# READY: whether training runs on worker 0"
  tpu_ssh 0 "$(probe_command)"
  echo "# preempted / terminated / suspended / deleted: after the backoff, recreate"
  cmd_delete
  create_request
  echo "# READY again (new VM): setup, then the same run; it resumes from the last checkpoint"
  cmd_setup
  cmd_run "$@"
}

cmd_watch() {
  if (( DRY_RUN )); then
    watch_dry_run "$@"
    return
  fi
  # WATCH_PENDING: a recreate was done and its setup + run are still to come (same recovery).
  WATCH_STARTED=0 WATCH_EVENTS=0 WATCH_DELAY="$WATCH_BACKOFF" WATCH_PENDING=0
  local probe answer status last="" tail_lines
  watch_log "watching $TPU_NAME every $POLL_SECONDS s (at most $WATCH_RETRIES recoveries)"
  while true; do
    SLICE_STATE="" SLICE_DETAIL=""
    slice_state
    status="$SLICE_DETAIL"
    case "$SLICE_STATE" in
      READY)
        probe="$(probe_worker)"
        answer="${probe%%$'\n'*}"
        tail_lines=""
        [[ "$probe" != *$'\n'* ]] || tail_lines="${probe#*$'\n'}"
        status="$SLICE_DETAIL, training ${answer:-not answering (ssh to worker 0 failed)}"
        if [[ "$answer" == exited* ]] && (( ! WATCH_STARTED )); then
          # An exit status from before this watch: a finished or failed earlier run (watch is
          # started again after a fix, or with more steps). Start this one.
          answer=previous
        fi
        case "$answer" in
          previous)
            watch_recovery "$SLICE_DETAIL, the last run there has ended: run"
            cmd_run "$@" || watch_log "run failed; trying again"
            status=""
            ;;
          ""|running)
            if [[ "$answer" == running ]]; then
              WATCH_STARTED=1 WATCH_PENDING=0
              WATCH_DELAY="$WATCH_BACKOFF"   # running again: the next backoff starts small
            fi
            ;;
          new|idle)
            if (( WATCH_PENDING )); then
              WATCH_PENDING=0
              watch_log "$SLICE_DETAIL: setup and run the same command"
            elif [[ "$answer" == new ]]; then
              watch_recovery "$SLICE_DETAIL, nothing installed: setup and run"
            else
              watch_recovery "$SLICE_DETAIL, training not running: run again"
            fi
            if [[ "$answer" == new ]]; then
              { cmd_setup && cmd_run "$@"; } || watch_log "setup or run failed; trying again"
            else
              cmd_run "$@" || watch_log "run failed; trying again"
            fi
            status=""
            ;;
          "exited 0")
            watch_log "training finished (exit 0); results: launch/tpu.sh fetch"
            if (( DELETE_WHEN_DONE )); then
              cmd_delete
            fi
            return 0
            ;;
          "exited 130"|"exited 137"|"exited 143")
            watch_recovery "training was stopped by a signal (${answer}) on a $SLICE_DETAIL: run again"
            cmd_run "$@" || watch_log "run failed; trying again"
            status=""
            ;;
          "exited 2")
            if is_lock_message "$tail_lines"; then
              watch_recovery "the workdir is locked: $(tail -n 1 <<< "$tail_lines")"
              cmd_run "$@" || watch_log "run failed; trying again"
              status=""
            else
              watch_log "training stopped on an error (exit 2); worker 0's log ends:"
              echo "$tail_lines"
              die "not rerun (a rerun would fail the same way): fix it, then launch/tpu.sh watch again"
            fi
            ;;
          *)
            watch_log "training failed (${answer}); worker 0's log ends:"
            echo "$tail_lines"
            die "not rerun: see launch/tpu.sh logs, fix, then launch/tpu.sh watch again"
            ;;
        esac
        ;;
      LOST)
        watch_recovery "$SLICE_DETAIL: recreate"
        cmd_delete || true   # gone already, or a preempted VM / suspended request to clear first
        create_request || watch_log "create failed (capacity or quota?); trying again"
        WATCH_PENDING=1
        status=""
        ;;
      STOPPED)
        die "$SLICE_DETAIL: someone stopped it; start or delete it, then launch/tpu.sh watch again"
        ;;
    esac
    if [[ -n "$status" && "$status" != "$last" ]]; then
      watch_log "$status"
    fi
    last="$status"
    sleep "$POLL_SECONDS"
  done
}

# ---------------------------------------------------------------------------------------------

main() {
  local command=""
  while (( $# )); do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      --all-checkpoints) ALL_CHECKPOINTS=1 ;;
      --delete-when-done) DELETE_WHEN_DONE=1 ;;
      -h|--help) usage; exit 0 ;;
      --) shift; break ;;
      -*) die "unknown option $1 (see launch/tpu.sh --help)" ;;
      *) [[ -z "$command" ]] || die "one command at a time (got '$command' and '$1')"; command="$1" ;;
    esac
    shift
  done
  [[ -n "$command" ]] || { usage >&2; exit 2; }
  if (( $# )) && [[ "$command" != run && "$command" != resume && "$command" != watch ]]; then
    die "flags after -- are for 'run', 'resume' and 'watch' only"
  fi
  (( ! ALL_CHECKPOINTS )) || [[ "$command" == fetch ]] || die "--all-checkpoints is an option of 'fetch'"
  (( ! DELETE_WHEN_DONE )) || [[ "$command" == watch ]] || die "--delete-when-done is an option of 'watch'"

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
    init|create|setup|run|watch|logs|status|fetch|delete|resume) "cmd_$command" "$@" ;;
    *) die "unknown command '$command' (init, create, setup, run, watch, logs, status, fetch, delete, resume)" ;;
  esac
}

main "$@"
