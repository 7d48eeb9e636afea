"""Build voc2012_points: python -m pointseg_jax.data.voc2012_points --manual_dir=DIR [--data_dir=DIR].

(`tfds build` needs apache_beam, which the pinned stack does not install; this is the same call.)
"""
import argparse
import logging

import tensorflow_datasets as tfds

from pointseg_jax.data.voc2012_points import Voc2012Points


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--manual_dir", required=True, help="folder laid out as "
                      "Voc2012Points.MANUAL_DOWNLOAD_INSTRUCTIONS says")
  parser.add_argument("--data_dir", default=None, help="TFDS data dir (default ~/tensorflow_datasets)")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
  builder = Voc2012Points(data_dir=args.data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir))
  print(builder.info.splits)
  print(f"written to {builder.data_dir}")


if __name__ == "__main__":
  main()
