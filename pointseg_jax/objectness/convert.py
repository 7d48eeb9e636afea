"""Convert the objectness v2.2 release (`Data/params.mat`, `Data/*likelihood.mat`) to a model .npz.

    python -m pointseg_jax.objectness.convert --release_dir=DIR [--out=model.npz]

(`python -m pointseg_jax.objectness convert ...` is the same program.) Without `--out` it rewrites
the packaged `alexe_v22.npz`; tests hold that file equal to the release's .mat files.
"""
import pathlib

from absl import app
from absl import flags

from pointseg_jax import cli
from pointseg_jax.objectness import model as model_lib

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  flags.DEFINE_string("release_dir", None, "Objectness v2.2 folder holding Data/params.mat.",
                      flag_values=flag_values)
  packaged = pathlib.Path(model_lib.__file__).with_name(model_lib.DEFAULT_MODEL)
  flags.DEFINE_string("out", str(packaged), "Model .npz to write (default: the packaged one).",
                      flag_values=flag_values)
  flags.mark_flags_as_required(["release_dir"], flag_values=flag_values)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  written = model_lib.save(model_lib.from_release(FLAGS.release_dir), FLAGS.out)
  print(f"wrote {written}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
