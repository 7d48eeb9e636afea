#!/usr/bin/env bash
# Table 1 v2 on a 2-core box: one of its two processes, pinned to one core, through all of its
# work in order (docs/experiments.md, "Parts"): its share of part 1 (the paper's findings), the
# post hoc full_gap arms registered for after part 1, its shares of parts 2 and 3, then its arm
# of full_gap's val stage (rule 7, post hoc). Each
# command resumes (finished runs are kept summaries; a stopped run continues from its checkpoint)
# and commits every finished run (--git_commit), so rerun it as it is after any stop.
#
#   launch/table1_v2_parts.sh [--dry-run] A|B     # A on core 1, B on core 0
#
# Run A and B each in its own git worktree (their commits touch the same table files):
#   git worktree add -b v2 ../wt/v2 && cd ../wt/v2 && nohup launch/table1_v2_parts.sh A > ../v2A.log 2>&1 &
# Stop (a run saves its step on SIGTERM, and the script stops before the next command):
#   pkill -TERM -f pointseg_jax.experiments
# tcmalloc is preloaded when installed: same params bit for bit, 1.5x the steps/s (docs/experiments.md).
set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$LAUNCH_DIR")"
# shellcheck source=launch/lib.sh
source "$LAUNCH_DIR/lib.sh"
PYTHON="${PYTHON:-python}"

usage() { echo "usage: launch/table1_v2_parts.sh [--dry-run] A|B" >&2; exit 2; }
[[ "${1:-}" == --dry-run ]] && { DRY_RUN=1; shift; }
(( $# == 1 )) || usage
case "$1" in
  A) core=1; gap_arms=point,full,full_lr0.01; val_arms=val_point_lr0.01 ;;
  B) core=0; gap_arms=full_lr0.03,full_img,point_lr0.01,point_lr0.03; val_arms=val_full_lr0.03 ;;
  *) usage ;;
esac
process="$1"

prefix=(taskset -c "$core")
for lib in /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
           /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4; do
  if [[ -f "$lib" ]]; then prefix=(env "LD_PRELOAD=$lib" "${prefix[@]}"); break; fi
done

cd "$REPO_DIR"
sweep() {
  run "${prefix[@]}" "$PYTHON" -m pointseg_jax.experiments.table1_v2 \
    --out=experiments_results/v2 --git_commit "--part=$1$process"
}
sweep 1
run "${prefix[@]}" "$PYTHON" -m pointseg_jax.experiments.full_gap \
  --out=experiments_results/full_gap --git_commit "--arms=$gap_arms"
sweep 2
sweep 3
run "${prefix[@]}" "$PYTHON" -m pointseg_jax.experiments.full_gap \
  --out=experiments_results/full_gap --git_commit --stage=val "--arms=$val_arms"
