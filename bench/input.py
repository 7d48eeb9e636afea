"""Is the input ever the bottleneck? Pipeline images/s per regime against the train step's, and
objectness maps images/s (the offline prior) on both cores.

    python -m bench.input [--batches 20] [--objectness_images 14 --workers 2 --photos_dir DIR]
    python -m bench.input --parts=pipeline --baseline_ref=main   # did a pipeline change slow it?

1. Pipeline: for every label kind of the regime table (regimes that share one produce the
   same batches), tf.data train batches of the demo config (configs/point.py: 128², batch 8,
   augmentation on) from the built `synthetic_points/default` set; images/s over `--batches`
   after 3 warm-up batches.
2. The demo's train step (the same config, compiled as train.py does) in the same process,
   alternating with the pipeline; ratio = pipeline images/s / step images/s (target >= 5: the
   input never makes the step wait, even when both share the cores).
   With --baseline_ref, `pointseg_jax/data/pipeline.py` as of that git ref is timed too, in the
   same process, alternating with the working tree's: the ratio now / baseline per label kind.
3. Objectness maps (`pointseg_jax.objectness.heatmap`) on 500×375 photos: one process, then
   `--workers` processes; target >= 5 images/s with 2 workers. Photos: the *_image.png files of
   --photos_dir resized to 500×375, else random textured images (a flag says which).
"""
import importlib.util
import multiprocessing as mp
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from bench import common

flags.DEFINE_integer("batches", 40, "Timed pipeline batches per label kind.")
flags.DEFINE_integer("rounds", 2, "Alternating rounds of (pipeline, step) measurements.")
flags.DEFINE_integer("objectness_images", 14, "Photos per objectness measurement (0 = skip).")
flags.DEFINE_integer("workers", 2, "Processes for the parallel objectness measurement.")
flags.DEFINE_string("photos_dir", "", "Folder of *_image.png photos for the objectness part "
                    "(default: random textured images).")
flags.DEFINE_list("label_kinds", [], "Only these label kinds (default: every one).")
flags.DEFINE_list("parts", ["pipeline", "objectness"], "What to measure.")
flags.DEFINE_integer("objectness_max_side", None, "Objectness working resolution (default: the "
                     "package's DEFAULT_MAX_SIDE).")
flags.DEFINE_string("baseline_ref", "", "Also time pointseg_jax/data/pipeline.py as of this git "
                    "ref (e.g. main), alternating with the working tree's; prints now / baseline.")
FLAGS = flags.FLAGS
PIPELINE_TARGET = 5.0
OBJECTNESS_TARGET = 5.0
PHOTO_SIZE = (500, 375)   # PIL (width, height): a typical VOC photo


def regimes_by_label_kind() -> dict[str, list[str]]:
  from pointseg_jax import supervision  # pylint: disable=g-import-not-at-top
  out = {}
  for name, regime in supervision.REGIMES.items():
    out.setdefault(regime.label_kind, []).append(name)
  return out


def pipeline_at(ref: str):
  """pointseg_jax/data/pipeline.py as of git `ref`, imported as its own module (from a file, so
  that tf.data's autograph can read its functions' source)."""
  repo = pathlib.Path(__file__).resolve().parents[1]
  source = subprocess.run(["git", "show", f"{ref}:pointseg_jax/data/pipeline.py"], cwd=repo,
                          capture_output=True, text=True, check=True).stdout
  name = "pipeline_at_" + "".join(c if c.isalnum() else "_" for c in ref)
  path = pathlib.Path(tempfile.mkdtemp()) / f"{name}.py"
  path.write_text(source)
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module    # dataclasses look their module up
  spec.loader.exec_module(module)
  return module


def pipeline_rate(config, regime: str, batches: int, pipeline=None) -> float:
  """Train images/s of the config's pipeline for `regime`'s label kind (after 3 warm-ups).
  pipeline: the module to time (default: the installed pointseg_jax.data.pipeline)."""
  from pointseg_jax import supervision  # pylint: disable=g-import-not-at-top
  if pipeline is None:
    from pointseg_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from pointseg_jax.data import spec as spec_lib  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  config.regime = regime
  config.data.label_kind = supervision.get_regime(regime).label_kind
  it = pipeline.make_dataset(spec_lib.DataSpec.from_config(config.data), "train",
                             batch_size=int(config.train.batch_size), train=True, seed=0)
  for _ in range(3):
    next(it)
  t = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * int(config.train.batch_size) / (time.perf_counter() - t)


def step_rate(step, reps: int = 5) -> float:
  return step.images / common.median_time(step.run, reps, warmup=0)


def load_photos(n: int, photos_dir: str):
  paths = sorted(pathlib.Path(photos_dir).glob("*_image.png")) if photos_dir else []
  if paths:
    photos = [np.asarray(Image.open(p).convert("RGB").resize(PHOTO_SIZE, Image.BILINEAR))
              for p in paths]
    source = f"{len(paths)} photos from {photos_dir}"
  else:
    rng = np.random.default_rng(0)
    photos = []
    for _ in range(n):
      small = rng.integers(0, 256, (PHOTO_SIZE[1] // 25, PHOTO_SIZE[0] // 25, 3), dtype=np.uint8)
      photos.append(np.asarray(Image.fromarray(small).resize(PHOTO_SIZE, Image.BICUBIC)))
    source = "random textured images (no --photos_dir)"
  return [photos[i % len(photos)] for i in range(n)], source


def _heatmap(args):
  image, seed, max_side = args
  from pointseg_jax import objectness  # pylint: disable=g-import-not-at-top
  timings = {}
  kwargs = {} if max_side is None else {"max_side": max_side}
  objectness.heatmap(image, rng=seed, timings=timings, **kwargs)
  return timings


def objectness_rates(n: int, workers: int, photos_dir: str, max_side: int | None) -> dict:
  """Objectness images/s: serial (wall and per busy core, with the CPU split per stage) and with
  `workers` processes."""
  photos, source = load_photos(n, photos_dir)
  _heatmap((photos[0], 0, max_side))   # imports, interval tables
  totals = {}
  with common.Load() as serial_load:
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    for i, image in enumerate(photos):
      for k, v in _heatmap((image, i, max_side)).items():
        totals[k] = totals.get(k, 0.0) + v
    wall = (time.perf_counter() - t_wall) / n
    cpu = (time.process_time() - t_cpu) / n
  with mp.get_context("spawn").Pool(workers) as pool:
    pool.map(_heatmap, [(photos[0], 0, max_side)] * workers)   # start and warm the workers
    with common.Load() as par_load:
      t = time.perf_counter()
      worker_timings = pool.map(_heatmap, [(im, i, max_side) for i, im in enumerate(photos)],
                                chunksize=1)
      par = time.perf_counter() - t
    par_load.add_cpu(sum(sum(d.values()) for d in worker_timings))
  staged = sum(totals.values()) or 1.0
  return {"source": source, "serial": 1 / wall, "per_core": 1 / cpu, "parallel": n / par,
          "serial_load": serial_load, "parallel_load": par_load,
          "split": ", ".join(f"{k} {100 * v / staged:.0f} %" for k, v in
                             sorted(totals.items(), key=lambda kv: -kv[1]))}


def pipeline_part() -> tuple[str, dict]:
  config = common.config_for("demo")
  step = common.RealStep(config)
  common.block(step.run())
  groups = regimes_by_label_kind()
  chosen = FLAGS.label_kinds or list(groups)
  pipe = {s: [] for s in chosen}
  base = {s: [] for s in chosen}
  baseline = pipeline_at(FLAGS.baseline_ref) if FLAGS.baseline_ref else None
  steps = []
  with common.Load() as load:
    for r in range(FLAGS.rounds):
      steps.append(step_rate(step))
      for s in (chosen if r % 2 == 0 else chosen[::-1]):
        pipe[s].append(pipeline_rate(config, groups[s][0], FLAGS.batches))
        if baseline is not None:
          base[s].append(pipeline_rate(config, groups[s][0], FLAGS.batches, baseline))
  step_ips = statistics.median(steps)
  print(f"\ndemo config: {config.data.dataset}, {config.data.image_size[0]}², batch "
        f"{config.train.batch_size}, augment {config.data.augment}; train step "
        f"(FCN-{config.model.variant} w{config.model.width:g}, {config.regime}): "
        f"{step_ips:.1f} images/s (rounds {[round(v, 1) for v in steps]}); load: {load}\n")
  rows, worst = [], None
  for s in chosen:
    ips = statistics.median(pipe[s])
    ratio = ips / step_ips
    worst = ratio if worst is None else min(worst, ratio)
    rows.append((s, ", ".join(groups[s]), f"{ips:.0f}", f"{ratio:.1f}",
                 "yes" if ratio >= PIPELINE_TARGET else "**no**"))
  common.table(("label kind", "regimes", "pipeline images/s", "/ train-step images/s",
                f">= {PIPELINE_TARGET:g}x"), rows)
  values = {"pipeline_worst_ratio": worst, "pipeline_others_cores": load.others}
  if baseline is not None:
    ratios = {s: [a / b for a, b in zip(pipe[s], base[s])] for s in chosen}
    print(f"\npipeline now / at {FLAGS.baseline_ref} (same process, alternating):\n")
    common.table(("label kind", f"{FLAGS.baseline_ref} images/s", "now images/s",
                  "now / baseline per round"),
                 [(s, f"{statistics.median(base[s]):.0f}", f"{statistics.median(pipe[s]):.0f}",
                   ", ".join(f"{v:.2f}" for v in ratios[s])) for s in chosen])
    values["pipeline_vs_baseline"] = statistics.median(v for s in chosen for v in ratios[s])
  return (f"pipeline >= {worst:.1f}x the demo train step (others used {load.others:.2f} cores)",
          values)


def objectness_part() -> tuple[str, dict]:
  o = objectness_rates(FLAGS.objectness_images, FLAGS.workers, FLAGS.photos_dir,
                       FLAGS.objectness_max_side)
  print(f"\nobjectness maps, {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, {o['source']}, max_side "
        f"{FLAGS.objectness_max_side or 'default'}; CPU split: {o['split']}\n")
  common.table(("objectness", "images/s", f">= {OBJECTNESS_TARGET:g}", "cores: ours / others"), [
      ("1 process, wall", f"{o['serial']:.2f}", "",
       f"{o['serial_load'].ours:.2f} / {o['serial_load'].others:.2f}"),
      ("1 process, per busy core (CPU time)", f"{o['per_core']:.2f}", "", ""),
      (f"{FLAGS.workers} processes, wall", f"{o['parallel']:.2f}",
       "yes" if o["parallel"] >= OBJECTNESS_TARGET else "**no**",
       f"{o['parallel_load'].ours:.2f} / {o['parallel_load'].others:.2f}")])
  return (f"objectness {o['parallel']:.2f} images/s on {FLAGS.workers} processes "
          f"({o['per_core']:.2f} per busy core; others used {o['parallel_load'].others:.2f} cores)",
          {"objectness_images_s": o["parallel"], "objectness_per_core": o["per_core"]})


def main(argv):
  del argv
  common.print_header("input: pipeline and objectness images/s vs the train step")
  texts, values = [], {}
  for part, fn in (("pipeline", pipeline_part), ("objectness", objectness_part)):
    if part in FLAGS.parts:
      text, vals = fn()
      texts.append(text)
      values.update(vals)
  common.summary("input: " + "; ".join(texts), **values)


if __name__ == "__main__":
  app.run(main)
