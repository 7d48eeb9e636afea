# Shared by launch/tpu.sh and launch/gpu_check.sh: print every command, run it unless --dry-run.
# shellcheck shell=bash

DRY_RUN=0

# One word for a shell: as is when it is plain, else in single quotes.
shell_word() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# A command line (to print, or to hand to a remote shell), every word quoted as needed.
shell_line() {
  local out="" word
  for word in "$@"; do
    out+="$(shell_word "$word") "
  done
  printf '%s' "${out% }"
}

# Print a command as one line after '+' (paste it into a shell to run it); run it unless DRY_RUN=1.
run() {
  echo "+ $(shell_line "$@")"
  if (( ! DRY_RUN )); then
    "$@"
  fi
}

# Like run, but the command's stdout is stored in the variable named $1 (empty on a dry run, where
# nothing runs); returns the command's status.
run_output() {
  local -n _run_output_into="$1"
  shift
  echo "+ $(shell_line "$@")"
  _run_output_into=""
  if (( ! DRY_RUN )); then
    _run_output_into="$("$@")"
  fi
}
