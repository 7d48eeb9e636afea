"""`python -m pointseg_jax.objectness <command>`: precompute | evaluate | learn | convert."""
import sys

USAGE = """usage: python -m pointseg_jax.objectness <command> [options]

commands:
  precompute   objectness PNG per image of a folder or a TFDS split (resumable, parallel)
  evaluate     AUC / P inside vs outside objects on VOC samples, against two baselines
  learn        relearn the cue likelihoods from images with boxes
  convert      objectness v2.2 Data/*.mat -> model .npz
"""


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ("-h", "--help"):
    print(USAGE)
    return 0 if argv else 2
  command, rest = argv[0], argv[1:]
  if command == "precompute":
    from pointseg_jax.objectness import precompute  # pylint: disable=import-outside-toplevel
    return precompute.main(rest)
  if command == "evaluate":
    from pointseg_jax.objectness import evaluate  # pylint: disable=import-outside-toplevel
    evaluate.main(rest)
    return 0
  if command == "learn":
    from pointseg_jax.objectness import learn  # pylint: disable=import-outside-toplevel
    learn.main(rest)
    return 0
  if command == "convert":
    from pointseg_jax.objectness import model  # pylint: disable=import-outside-toplevel
    model.main(rest)
    return 0
  print(f"unknown command {command!r}\n{USAGE}", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
