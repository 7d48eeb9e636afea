"""python -m pointseg_jax.objectness <command> [flags]

commands:
  precompute   objectness PNG per image of a folder or a TFDS split (resumable, parallel)
  evaluate     AUC / P inside vs outside objects on VOC samples, against two baselines
  learn        relearn the cue likelihoods from images with boxes
  convert      objectness v2.2 Data/*.mat -> model .npz

Each command is also a program of its own, `python -m pointseg_jax.objectness.<command>`, with the
same flags; `python -m pointseg_jax.objectness <command> --help` lists them.
"""
import sys

from absl import flags

from pointseg_jax import cli
from pointseg_jax.objectness import convert
from pointseg_jax.objectness import evaluate
from pointseg_jax.objectness import learn
from pointseg_jax.objectness import precompute

COMMANDS = {"precompute": precompute, "evaluate": evaluate, "learn": learn, "convert": convert}
# The TFDS modes (--tfds) of two commands moved under data/ (the prior never imports data).
MOVED_TFDS = {"evaluate": "pointseg_jax.data.objectness_eval --dataset=<name> --split=val",
              "learn": "pointseg_jax.data.objectness_learn --dataset=<name> --split=train"}


def main() -> None:
  args = sys.argv[1:]
  if not args or args[0] in ("-h", "--help", "--helpfull", "--helpshort"):
    print(__doc__)
    sys.exit(0 if args else cli.EXIT_USER_ERROR)
  command = args[0]
  if command not in COMMANDS:
    cli.fail(f"unknown command {command!r}: one of {', '.join(COMMANDS)} "
             "(python -m pointseg_jax.objectness --help)")
  if command in MOVED_TFDS and any(a == "--tfds" or a.startswith("--tfds=") for a in args[1:]):
    cli.fail(f"`objectness {command} --tfds` moved: run `python -m {MOVED_TFDS[command]}` "
             "(--tfds is now --dataset; the other flags are unchanged)")
  module = COMMANDS[command]
  sys.argv = [f"{sys.argv[0]} {command}", *args[1:]]
  module.define_flags()
  # absl's --help lists the key flags of the program named by sys.argv[0]: make them the command's.
  flags.adopt_module_key_flags(module)
  cli.run(module.main)


if __name__ == "__main__":
  main()
