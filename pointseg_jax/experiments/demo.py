r"""`make demo`: build the embedded benchmark, fine-tune Img+Obj+1Point on it, evaluate, draw pictures.

  python -m pointseg_jax.experiments.demo --workdir=runs/demo
  python -m pointseg_jax.experiments.demo --workdir=runs/demo --config.train.num_steps=500     # shorter
  python -m pointseg_jax.experiments.demo --workdir=runs/demo_cmp --compare=image_obj          # + a baseline

Every knob is a config field (`--config=configs/demo.py` by default: `configs/point.py:pretrained`
at the schedule chosen for the demo on the train hold-out), so the demo is exactly what
`python -m pointseg_jax.main --config=configs/demo.py` trains; `--config=configs/point.py` trains
the from-scratch default instead. Running it again resumes (or, when
finished, only re-evaluates). Results: <workdir>/RESULTS.md, summary.json, metrics.jsonl,
TensorBoard events, predictions/*.png.
"""
import os
import pathlib
import platform
import time

from absl import flags
from absl import logging
import jax

from pointseg_jax import CLASS_NAMES
from pointseg_jax import cli
from pointseg_jax import config_lib
from pointseg_jax import files
from pointseg_jax import runtime
from pointseg_jax import supervision
from pointseg_jax import workdir as workdir_lib
from pointseg_jax.data import spec as spec_lib
from pointseg_jax.data.prepare import prepare_spec
from pointseg_jax.experiments import runs

FLAGS = flags.FLAGS
DEFAULT_CONFIG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "demo.py")


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """--config, --workdir (the trainer's names and meaning) and --compare; defined only when the
  demo runs as a program (absl flags are global)."""
  cli.define_config_flag(flag_values, default=DEFAULT_CONFIG)
  flags.DEFINE_string("workdir", "runs/demo", "Where the demo's run, pictures and RESULTS.md go.",
                      flag_values=flag_values)
  flags.DEFINE_list("compare", [], "Other regimes to train the same way for a comparison table "
                    "(e.g. image_obj,point_noobj); each gets <workdir>/<regime>/. The whole "
                    "Table 1 with seeds: python -m pointseg_jax.experiments.table1.",
                    flag_values=flag_values)


def _init_words(config) -> str:
  if not config.model.init_from:
    return "from scratch"
  if config.model.init_from == config_lib.PRETRAINED_INIT_FROM:
    return "from the backbone pretrained on synthetic_classes"
  return f"from {config.model.init_from}"


def results_markdown(config, rows, build_seconds, workdir) -> str:
  """RESULTS.md: what was trained, the numbers, where the pictures are, how long it took."""
  cores = os.cpu_count()
  lines = [
      "# Demo results",
      "",
      f"Embedded benchmark `{config.data.dataset}` (val split, every image), "
      f"FCN-{config.model.variant} width {config.model.width:g} ({config.model.mode} mode) "
      f"trained {_init_words(config)}: {config.train.num_steps} steps of "
      f"{config.train.batch_size} images at {config.data.image_size[0]} px, "
      f"{config.optimizer.name.upper()} peak lr {config.optimizer.learning_rate:g}, "
      f"{config.optimizer.get('schedule', 'constant')} (momentum "
      f"{config.optimizer.momentum}, biases 2x lr, weight decay "
      f"{config.optimizer.weight_decay:g}).",
      "",
      "| regime | paper name | terms | mIoU | pixel acc. | train + eval wall time |",
      "|---|---|---|---|---|---|",
  ]
  for regime, summary, seconds, _ in rows:
    r = supervision.get_regime(regime)
    terms = " + ".join(supervision.active_terms(r.weights))
    lines.append(f"| `{regime}` | {r.paper} | {terms} | {100 * summary['eval/miou']:.1f} % | "
                 f"{100 * summary['eval/pixel_accuracy']:.1f} % | {seconds / 60:.1f} min |")
  lines += ["", "Per-class IoU (%):", "",
            "| class | " + " | ".join(f"`{r[0]}`" for r in rows) + " |",
            "|---|" + "---|" * len(rows)]
  for name in CLASS_NAMES:
    cells = []
    for _, summary, _, _ in rows:
      iou = summary["eval/iou_per_class"][name]
      cells.append("–" if iou is None else f"{100 * iou:.1f}")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines += [
      "",
      f"Dataset build: {build_seconds / 60:.1f} min (0 when already built). Machine: {cores} CPU "
      f"core(s), {platform.processor() or platform.machine()}, JAX {jax.__version__} on "
      f"{jax.default_backend()} ({jax.device_count()} device(s)).",
      "",
      "Pictures (image | prediction | ground truth | clicks + objectness prior in red):",
      "",
  ]
  for regime, _, _, paths in rows:
    for p in paths[:4]:
      lines.append(f"![{regime}]({os.path.relpath(p, workdir)})")
  lines += ["", "Numbers per step: `metrics.jsonl`, TensorBoard: `tensorboard --logdir "
            f"{workdir}`. Mean IoU leaves out classes absent from both prediction and truth."]
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
  runtime.setup_process()
  config = FLAGS.config
  workdir = workdir_lib.resolve(FLAGS.workdir)   # `~` expanded; a file: one line
  config_lib.validate(config)                     # bad input fails before the dataset build
  workdir_lib.check_matches(config, workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  print(f"[demo] 1/3 dataset {config.data.dataset} (built on first use) ...", flush=True)
  t = time.time()
  prepare_spec(spec_lib.DataSpec.from_config(config.data))
  build_seconds = time.time() - t

  rows = []
  regimes = [config.regime] + [r for r in FLAGS.compare if r != config.regime]
  for i, regime in enumerate(regimes):
    cfg = config if regime == config.regime else config_lib.with_regime(config, regime)
    run_dir = workdir if i == 0 else workdir / regime
    print(f"[demo] 2/3 training {regime} ({supervision.get_regime(regime).paper}) for "
          f"{cfg.train.num_steps} steps in {run_dir} ...", flush=True)
    rows.append((regime, *runs.run_regime(cfg, run_dir)))

  print("[demo] 3/3 writing RESULTS.md ...", flush=True)
  files.write_text(workdir / "RESULTS.md", results_markdown(config, rows, build_seconds, workdir))
  for regime, summary, seconds, paths in rows:
    logging.info("%s: mIoU %.4f", regime, summary["eval/miou"])
    print(f"[demo] {regime}: mIoU {100 * summary['eval/miou']:.1f} % on the val split after "
          f"{summary['step']} steps ({seconds / 60:.1f} min train + eval)")
  print(f"[demo] numbers:  {workdir / 'RESULTS.md'}  {workdir / 'summary.json'}  "
        f"{workdir / 'metrics.jsonl'}")
  print(f"[demo] pictures: {workdir / 'predictions'}/ ({len(rows[0][3])} PNGs)")
  print(f"[demo] curves:   tensorboard --logdir {workdir}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
