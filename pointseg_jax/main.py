r"""Train, evaluate or draw predictions for one supervision regime.

  python -m pointseg_jax.main --config=configs/point.py                # train (or resume), eval
  python -m pointseg_jax.main --config=configs/point.py --mode=eval    # latest checkpoint
  python -m pointseg_jax.main --config=configs/point.py --mode=predict # PNGs in predictions/
  python -m pointseg_jax.main --config=configs/point.py:voc,tpu --workdir=gs://... \
      --config.train.num_steps=20000

Kept short on purpose (flax examples): the logic lives in train.py / evaluate.py / predict.py,
importable from a notebook. The workdir defaults to runs/<config file stem>.
"""
import logging as std_logging
import os
import pathlib

from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import tensorflow as tf

from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax import evaluate
from pointseg_jax import predict
from pointseg_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/point.py or configs/point.py:voc,tpu.",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config file stem>).")
flags.DEFINE_enum("mode", "train", ["train", "eval", "predict"],
                  "train (and evaluate), eval (latest checkpoint), predict (PNG panels).")
flags.DEFINE_integer("num_images", None, "predict: how many val images (default "
                     "config.predict.num_images).")
flags.DEFINE_string("coordinator_address", None,
                    "Several processes without a cluster manager: host:port of process 0, with "
                    "--num_processes and --process_id (and --config.distributed=True). Cloud TPU, "
                    "SLURM and Open MPI need none of the three.")
flags.DEFINE_integer("num_processes", None, "See --coordinator_address.")
flags.DEFINE_integer("process_id", None, "See --coordinator_address.")
flags.mark_flags_as_required(["config"])


def default_workdir(config_path: str) -> str:
  """runs/<config file stem>: configs/point.py:voc -> runs/point."""
  return os.path.join("runs", pathlib.Path(config_path.split(":", 1)[0]).stem)


def quiet_orbax_info() -> None:
  """Orbax logs a dozen INFO lines per checkpoint through absl; keep its warnings only."""
  handler = logging.get_absl_handler()
  handler.addFilter(lambda r: r.levelno >= std_logging.WARNING or "orbax" not in r.pathname)


def hide_accelerators_from_tensorflow() -> None:
  """tf.data runs on the CPU; keep TensorFlow from grabbing GPU memory JAX needs (flax#445)."""
  tf.config.set_visible_devices([], "GPU")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  config = FLAGS.config
  quiet_orbax_info()
  explicit = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if config.distributed:
    jax.distributed.initialize(*explicit)   # before any device is touched
  elif any(x is not None for x in explicit):
    raise errors.ConfigError("--coordinator_address / --num_processes / --process_id need "
                             "--config.distributed=True (or the tpu config variant)")
  hide_accelerators_from_tensorflow()

  workdir = FLAGS.workdir or default_workdir(config_flags.get_config_filename(FLAGS["config"]))
  logging.info("JAX process %d/%d, %d local / %d global devices (%s); workdir %s",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.default_backend(), workdir)
  try:
    if FLAGS.mode == "train":
      summary = train.train_and_evaluate(config, workdir)
      print(f"step {summary['step']}: eval mIoU {summary['eval/miou']:.4f} "
            f"-> {os.path.join(workdir, 'summary.json')}")
    elif FLAGS.mode == "eval":
      result = evaluate.evaluate_checkpoint(config, workdir)
      print(f"step {result['step']}: eval mIoU {result['eval/miou']:.4f} "
            f"-> {os.path.join(workdir, 'eval.json')}")
    else:
      paths = predict.write_predictions(config, workdir, num_images=FLAGS.num_images)
      print(f"wrote {len(paths)} prediction panels to {os.path.join(workdir, 'predictions')}")
  except train.NonFiniteLossError as e:   # the run stopped itself; its checkpoints are kept
    cli.fail(str(e))


if __name__ == "__main__":
  cli.run(main)
