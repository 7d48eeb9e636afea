#!/usr/bin/env bash
# Size a real run on one GPU: train the paper's model as the `voc` variant builds it (full-width
# FCN-32s on VGG16, Caffe geometry, images padded to 500x500) on the embedded synthetic data for a
# few hundred steps, then print images/s and the step time.
#
#   pip install '.[gpu]'
#   launch/gpu_check.sh [--dry-run] [--tiny] [--dtype D] [--steps N] [--batch N] [--workdir DIR]
#                       [--data_dir DIR]
#
#   --dtype D      float32 or bfloat16: the model's compute dtype (--config.model.compute_dtype;
#                  parameters and optimiser state stay float32); default: the config's own
#   --steps N      training steps (default 300; logged every 50, the first 50 include compiling)
#   --batch N      global batch size (default 8; the paper's effective batch is 20)
#   --workdir DIR  a new or empty run directory (default: a fresh temporary one)
#   --data_dir DIR TFDS data dir (default ~/tensorflow_datasets; synthetic_points/default is built
#                  there on first use, about 2 min on 2 CPU cores)
#   --tiny         the `tiny` config instead (seconds on a CPU: tests the script itself)
#   --dry-run      print the commands, run nothing
#
# Steps/s come from the run's own log (metrics.jsonl); docs/cloud_tpu.md turns them into a budget.
set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$LAUNCH_DIR")"
# shellcheck source=launch/lib.sh
source "$LAUNCH_DIR/lib.sh"
PYTHON="${PYTHON:-python}"
STEPS=300
BATCH=8
LOG_EVERY=""
WORKDIR=""
DATA_DIR=""
DTYPE=""
TINY=0

die() { echo "launch/gpu_check.sh: error: $*" >&2; exit 2; }

while (( $# )); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --tiny) TINY=1 ;;
    --steps) STEPS="${2:?--steps needs a value}"; shift ;;
    --batch) BATCH="${2:?--batch needs a value}"; shift ;;
    --workdir) WORKDIR="${2:?--workdir needs a value}"; shift ;;
    --data_dir) DATA_DIR="${2:?--data_dir needs a value}"; shift ;;
    --dtype) DTYPE="${2:?--dtype needs a value}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see launch/gpu_check.sh --help)" ;;
  esac
  shift
done
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || die "--steps must be a positive integer, got '$STEPS'"
[[ "$BATCH" =~ ^[1-9][0-9]*$ ]] || die "--batch must be a positive integer, got '$BATCH'"
[[ -z "$DTYPE" || "$DTYPE" == float32 || "$DTYPE" == bfloat16 ]] ||
  die "--dtype must be float32 or bfloat16, got '$DTYPE'"

if (( TINY )); then
  CONFIG=(--config=configs/point.py:tiny)
  LOG_EVERY=$(( STEPS >= 4 ? STEPS / 4 : 1 ))
else
  # The voc variant's model and input size; its dataset swapped for the embedded one and no
  # ImageNet init (throughput does not depend on the weights).
  CONFIG=(--config=configs/point.py:voc --config.data.dataset=synthetic_points/default
          --config.model.init_from=)
  LOG_EVERY=$(( STEPS >= 100 ? 50 : (STEPS >= 4 ? STEPS / 4 : 1) ))
fi

if [[ -z "$WORKDIR" ]]; then
  if (( DRY_RUN )); then
    WORKDIR="${TMPDIR:-/tmp}/pointseg_gpu_check.XXXXXX"
  else
    WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/pointseg_gpu_check.XXXXXX")"
  fi
elif [[ -e "$WORKDIR" && -n "$(ls -A "$WORKDIR")" ]]; then
  # A workdir with a checkpoint would resume the old run and measure nothing.
  die "--workdir $WORKDIR is not empty: give a new directory"
fi

TRAIN=("$PYTHON" -m pointseg_jax.main "${CONFIG[@]}" "--workdir=$WORKDIR"
       "--config.train.batch_size=$BATCH" "--config.eval.batch_size=$BATCH"
       "--config.train.num_steps=$STEPS" "--config.train.log_every=$LOG_EVERY"
       "--config.train.eval_every=$STEPS" "--config.train.checkpoint_every=$STEPS"
       --config.train.keep_checkpoints=1 --config.train.progress_bar=False)
[[ -n "$DATA_DIR" ]] && TRAIN+=("--config.data.data_dir=$DATA_DIR")
[[ -n "$DTYPE" ]] && TRAIN+=("--config.model.compute_dtype=$DTYPE")
REPORT=("$PYTHON" -m pointseg_jax.run_logs "--workdir=$WORKDIR")

cd "$REPO_DIR"   # `python -m` puts the current directory on sys.path: configs/ imports from here
run "${TRAIN[@]}"
run "${REPORT[@]}"
