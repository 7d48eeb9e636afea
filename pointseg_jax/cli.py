"""One convention for every command-line tool: absl flags (snake_case), absl logging, and errors
the package raises on purpose (`errors.UserError`) printed once as `error: ...` with exit status 2.

    from pointseg_jax import cli

    def main(argv):
      ...

    if __name__ == "__main__":
      cli.run(main)

Bad flags count as bad input too: a missing config file, a typo'd `--config.<field>` override
(with ml_collections' "did you mean" suggestion) or an unknown config variant are raised inside
absl's flag parsing, before `main` runs; `parse_flags` turns them into the same one line. Exit
statuses (docs/errors.md): 0 done, 2 bad input, 128 + signal number when SIGTERM (143) or Ctrl-C
(130) stopped a run (a training run saves a checkpoint first), 1 a bug (with its traceback).
"""
import os
import re
import sys

from absl import app
from absl import flags
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import is_config_flag  # public, not re-exported

from pointseg_jax import errors

flags.DEFINE_bool("verbose", False, "Show the full traceback of an error instead of one line.")

EXIT_USER_ERROR = 2
EXIT_CTRL_C = 130   # 128 + SIGINT


def define_config_flag(flag_values=flags.FLAGS, *, default=None, help_text=None,
                       sys_argv=None) -> None:
  """`--config=configs/<regime>.py[:variant,...]` with `--config.<field>=value` overrides, locked
  (a typo'd field is an error, not a new field). One definition for every tool that trains."""
  config_flags.DEFINE_config_file(
      "config", default, help_text or "Config file, e.g. configs/point.py or configs/point.py:tiny.",
      flag_values=flag_values, lock_config=True, sys_argv=sys_argv)


def define_dataset_flags(flag_values=flags.FLAGS, *, dataset_help: str, split: str,
                         split_help: str = "TFDS split, e.g. val or train[:100].") -> None:
  """`--dataset`, `--split`, `--data_dir`: the prepared TFDS split a data command reads (the
  objectness maps, their evaluation and the cue learning on a click dataset)."""
  flags.DEFINE_string("dataset", None, dataset_help, flag_values=flag_values)
  flags.DEFINE_string("split", split, split_help, flag_values=flag_values)
  flags.DEFINE_string("data_dir", None, "TFDS data dir (default ~/tensorflow_datasets).",
                      flag_values=flag_values)


def fail(message: str) -> None:
  """Print `error: message` on stderr once and exit with status 2."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def exit_on_error(fn, *args, verbose: bool = False):
  """fn(*args), with the package's errors turned into one line on stderr and an exit status:
  UserError -> `error: ...`, 2; Interrupted (a run saved and stopped) -> its message, 128 + signal;
  Ctrl-C anywhere else -> one line, 130. verbose: re-raise instead (the full traceback)."""
  try:
    return fn(*args)
  except errors.UserError as e:
    if verbose:
      raise
    fail(str(e))
  except errors.Interrupted as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(e.exit_status)
  except KeyboardInterrupt:
    if verbose:
      raise
    print("interrupted (Ctrl-C); rerun the same command to continue", file=sys.stderr, flush=True)
    sys.exit(EXIT_CTRL_C)


def run(main, argv=None) -> None:
  """app.run(main) with `parse_flags` and `exit_on_error` (the traceback with --verbose)."""
  def wrapped(args):
    return exit_on_error(main, args, verbose=flags.FLAGS.verbose)
  app.run(wrapped, argv=argv, flags_parser=parse_flags)


# ----------------------------------------------------------------------------------------------
# Flag parsing.

# What ml_collections' config flag raises for a bad file, override or value (besides flags.Error).
_FLAG_ERRORS = (flags.Error, OSError, KeyError, AttributeError, TypeError, ValueError)


def parse_flags(argv, flag_values=flags.FLAGS):
  """absl's flag parsing; any error in it (unknown flag, bad value, missing config file, unknown
  config field or variant) is one `error: ...` line and exit 2 (`--verbose`: the traceback)."""
  try:
    rest = flag_values(argv)
    for name in _config_flag_names(flag_values):
      config = flag_values[name].value
      if config is not None:
        getattr(config, "keys")   # a config file that failed to load raises its OSError here
    return rest
  except _FLAG_ERRORS as e:
    if _asks_verbose(argv):   # flags are not parsed: read --verbose from argv itself
      raise
    fail(flag_error_message(e, argv, _config_flag_names(flag_values)))


def _asks_verbose(argv) -> bool:
  values = [a.split("=", 1)[1].lower() if "=" in a else "true" for a in argv
            if a.split("=", 1)[0] in ("--verbose", "-verbose")]
  return bool(values) and values[-1] in ("true", "1", "yes")


def _config_flag_names(flag_values) -> list[str]:
  return [name for name in flag_values if is_config_flag(flag_values[name])]


def _chain(e: BaseException) -> list[BaseException]:
  """e and its causes / contexts, outermost first."""
  out = []
  while e is not None and e not in out:
    out.append(e)
    e = e.__cause__ or e.__context__
  return out


def _one_line(text: str) -> str:
  return " ".join(str(text).split())


def _arg_value(argv, name: str) -> str | None:
  """The value of --name=value (or --name value) in argv, the last one given."""
  value = None
  for i, arg in enumerate(argv):
    for prefix in (f"--{name}", f"-{name}"):
      if arg.startswith(prefix + "="):
        value = arg[len(prefix) + 1:]
      elif arg == prefix and i + 1 < len(argv):
        value = argv[i + 1]
  return value


def flag_error_message(e: BaseException, argv, config_names=("config",)) -> str:
  """The one line a user sees for an error raised while parsing flags."""
  chain = _chain(e)
  name = config_names[0] if config_names else "config"
  config_arg = _arg_value(argv, name)
  # 1. Our own check inside the config file (unknown variant, bad regime argument): its message.
  user = [x for x in chain if isinstance(x, errors.UserError)]
  if user:
    return f"--{name}={config_arg}: {_one_line(user[-1])}"
  # 2. An override names a field the config does not have (ml_collections suggests one).
  for x in chain:
    if isinstance(x, KeyError) and x.args:
      text = str(x.args[0])
      key = text.splitlines()[0].strip("'\"")
      override = next((a.split("=", 1)[0] for a in argv
                       if re.match(rf"-{{1,2}}{name}\.", a) and key in a.split("=", 1)[0].split(".")),
                      f"--{name}.{key}")
      hint = re.search(r'Did you mean "([^"]+)"', text)
      return (f"{override}: the config has no field {key!r}"
              + (f" (did you mean {hint.group(1)!r}?)" if hint else "")
              + "; the fields and their defaults are in pointseg_jax/config_lib.py")
  # 3. The config file itself cannot be read.
  if any(isinstance(x, OSError) and "config file" in str(x) for x in chain):
    if any(isinstance(x, FileNotFoundError) or "No such file" in str(x) for x in chain):
      path = (config_arg or "").split(":", 1)[0]
      return (f"--{name}={config_arg}: no such config file {path!r} (relative paths start in "
              f"{os.getcwd()}); the regime configs are configs/<regime>.py in the repository")
    return f"--{name}={config_arg}: {_one_line(chain[-1])}"
  # 4. A Python error inside a config file (ml_collections wraps it with a traceback text).
  if "Error whilst parsing config file" in str(e):
    inner = chain[-1]
    return f"--{name}={config_arg}: {type(inner).__name__}: {_one_line(inner)} (--verbose: traceback)"
  # 5. absl's own errors (unknown flag, bad value) are one line already.
  return f"{_one_line(e)} (--helpshort lists the flags)"
