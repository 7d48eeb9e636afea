"""One convention for every command-line tool: absl flags (snake_case), absl logging, and errors
the package raises on purpose (`errors.UserError`) printed once as `error: ...` with exit status 2.

    from pointseg_jax import cli

    def main(argv):
      ...

    if __name__ == "__main__":
      cli.run(main)
"""
import sys

from absl import app
from absl import flags

from pointseg_jax import errors

flags.DEFINE_bool("verbose", False, "Show the full traceback of an error instead of one line.")

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
  """Print `error: message` on stderr once and exit with status 2."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def run(main) -> None:
  """app.run(main), with UserError -> one stderr line and exit 2 (the traceback with --verbose)."""
  def wrapped(argv):
    try:
      return main(argv)
    except errors.UserError as e:
      if flags.FLAGS.verbose:
        raise
      fail(str(e))
  app.run(wrapped)
