"""Build voc2012_points: python -m pointseg_jax.data.voc2012_points --manual_dir=DIR [--data_dir=DIR].

(`tfds build` needs apache_beam, which the pinned stack does not install; this is the same call.)
"""

from absl import app
from absl import flags
import tensorflow_datasets as tfds

from pointseg_jax import cli
from pointseg_jax.data.spec import expand_path
from pointseg_jax.data.voc2012_points import Voc2012Points

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  flags.DEFINE_string("manual_dir", None, "Folder laid out as "
                      "Voc2012Points.MANUAL_DOWNLOAD_INSTRUCTIONS says.", flag_values=flag_values)
  flags.DEFINE_string("data_dir", None, "TFDS data dir (default ~/tensorflow_datasets).",
                      flag_values=flag_values)
  flags.mark_flags_as_required(["manual_dir"], flag_values=flag_values)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # `--manual_dir=~/x`: the shell leaves a `~` after `=` alone.
  data_dir = expand_path(FLAGS.data_dir) if FLAGS.data_dir else None
  builder = Voc2012Points(data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=expand_path(FLAGS.manual_dir)))
  print(builder.info.splits)
  print(f"written to {builder.data_dir}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
