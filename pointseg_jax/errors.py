"""The errors the package raises on purpose: each message names the input at fault and the fix.

Command-line tools run through `cli.run`, which turns any `UserError` into one line
`error: <message>` on stderr and exit status 2, without a traceback (`--verbose` shows it).
The subclasses also derive from the builtin a caller would catch (ValueError, FileNotFoundError),
so library users can keep catching those.
"""


class UserError(Exception):
  """Bad input from the user: a config, a file, a path, a workdir. The message is the whole story."""


class ConfigError(UserError, ValueError):
  """A config field, override or variant that cannot work."""


class DataError(UserError, ValueError):
  """A malformed data file (label PNG, click JSON, dataset record); the message names the file."""


class WeightsError(UserError, ValueError):
  """A weights file that is not the VGG16 the converter expects, or cannot be read."""


class WorkdirError(UserError):
  """A workdir that cannot be used as asked (another run's workdir, a file, unwritable)."""


class MissingInputError(UserError, FileNotFoundError):
  """A file or directory the user named (or a step needs) does not exist; says how to make it."""


class Interrupted(Exception):
  """SIGTERM or SIGINT stopped a training run after it saved a checkpoint (not an error: the run
  resumes when the same command runs again). `cli.run` prints the message and exits 128 + signal
  number, the shell's convention (143 for SIGTERM, 130 for Ctrl-C)."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = int(signum)

  @property
  def exit_status(self) -> int:
    return 128 + self.signum
