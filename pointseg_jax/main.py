r"""Train, evaluate or draw predictions for one supervision regime.

  python -m pointseg_jax.main --config=configs/point.py                # train (or resume), eval
  python -m pointseg_jax.main --workdir=runs/point --mode=eval         # the run's config.json
  python -m pointseg_jax.main --workdir=runs/point --mode=predict      # PNGs in predictions/
  python -m pointseg_jax.main --config=configs/point.py:voc,tpu --workdir=/mnt/bucket/runs/point \
      --config.train.num_steps=20000

Kept short on purpose (flax examples): the logic lives in train.py / evaluate.py / predict.py,
importable from a notebook. The workdir defaults to runs/<config file stem>. Bad input is one
`error: ...` line and exit status 2; SIGTERM / Ctrl-C save the current step and exit 143 / 130
(docs/errors.md, docs/training.md "Preemption").
"""
import os
import pathlib

from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax import runtime
from pointseg_jax import workdir as workdir_lib

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS, sys_argv=None) -> None:
  """This tool's flags (tests define them on a fresh FlagValues, with their own argv)."""
  cli.define_config_flag(
      flag_values, help_text="Config file, e.g. configs/point.py or configs/point.py:voc,tpu. "
      "--mode=eval|predict: optional (default: the run's config.json in --workdir).",
      sys_argv=sys_argv)
  flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config file stem>).",
                      flag_values=flag_values)
  flags.DEFINE_enum("mode", "train", ["train", "eval", "predict"],
                    "train (and evaluate), eval (latest checkpoint), predict (PNG panels).",
                    flag_values=flag_values)
  flags.DEFINE_integer("num_images", None, "predict: how many val images (default "
                       "config.predict.num_images).", lower_bound=1, flag_values=flag_values)
  flags.DEFINE_string("eval_split", None, "eval / predict: the split to evaluate or draw (default "
                      "config.eval.split / config.predict.split).", flag_values=flag_values)
  flags.DEFINE_string("coordinator_address", None,
                      "Several processes without a cluster manager: host:port of process 0, with "
                      "--num_processes and --process_id (and --config.distributed=True). Cloud "
                      "TPU, SLURM and Open MPI need none of the three.", flag_values=flag_values)
  flags.DEFINE_integer("num_processes", None, "See --coordinator_address.",
                       flag_values=flag_values)
  flags.DEFINE_integer("process_id", None, "See --coordinator_address.", flag_values=flag_values)


define_flags()


def default_workdir(config_path: str) -> str:
  """runs/<config file stem>: configs/point.py:voc -> runs/point."""
  return os.path.join("runs", pathlib.Path(config_path.split(":", 1)[0]).stem)


def run(config, workdir, mode="train", num_images=None, split=None) -> None:
  """One mode on one workdir; prints the result line. config: the --config (None for eval /
  predict: the run's config.json)."""
  # Imported here, past the flag and config checks: TensorFlow and the net cost ~10 CPU-seconds
  # of imports, which a typo'd flag should not wait for.
  from pointseg_jax import evaluate  # pylint: disable=g-import-not-at-top
  from pointseg_jax import predict  # pylint: disable=g-import-not-at-top
  from pointseg_jax import train  # pylint: disable=g-import-not-at-top
  if mode == "train":
    if config is None:
      raise errors.ConfigError("--mode=train needs --config, e.g. --config=configs/point.py")
    try:
      summary = train.train_and_evaluate(config, workdir)
    except train.NonFiniteLossError as e:   # the run stopped itself; its checkpoints are kept
      cli.fail(str(e))
    print(f"step {summary['step']}: eval mIoU {summary['eval/miou']:.4f} "
          f"-> {os.path.join(workdir, 'summary.json')}")
  elif mode == "eval":
    result = evaluate.evaluate_checkpoint(config, workdir, split=split)
    print(f"step {result['step']}: {result['split']} mIoU {result['eval/miou']:.4f} "
          f"-> {os.path.join(workdir, 'eval.json')}")
  else:
    paths = predict.write_predictions(config, workdir, num_images=num_images, split=split)
    print(f"wrote {len(paths)} prediction panels to {os.path.join(workdir, 'predictions')}")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  config = FLAGS.config
  config_path = config_flags.get_config_filename(FLAGS["config"]) if config is not None else None
  if FLAGS.workdir is None and config_path is None:
    raise errors.ConfigError(f"--mode={FLAGS.mode} needs --workdir=<run directory> or --config")
  workdir = str(workdir_lib.resolve(FLAGS.workdir or default_workdir(config_path)))
  explicit = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if config is not None and config.distributed:
    jax.distributed.initialize(*explicit)   # before any device is touched
  elif any(x is not None for x in explicit):
    raise errors.ConfigError("--coordinator_address / --num_processes / --process_id need "
                             "--config.distributed=True (or the tpu config variant)")
  runtime.setup_process()   # before jax.distributed: TF must not take a GPU first
  logging.info("JAX process %d/%d, %d local / %d global devices (%s); workdir %s",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.default_backend(), workdir)
  run(config, workdir, FLAGS.mode, FLAGS.num_images, FLAGS.eval_split)


if __name__ == "__main__":
  cli.run(main)
