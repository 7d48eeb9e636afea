"""Objectness maps for a whole dataset: one grayscale PNG of o (0..255) per image, P = (o+1)/257.

    python -m pointseg_jax.objectness.precompute --images=DIR --out=DIR [--workers=N]
    python -m pointseg_jax.objectness.precompute --tfds=voc2012_points --split=train --out=DIR

(`python -m pointseg_jax.objectness precompute ...` is the same program.)

Output `<out>/<image stem or example id>.png` — the layout `voc2012_points` reads from
`manual_dir/objectness/`. Resumable: files already in `--out` are skipped and every PNG is written
atomically (temp file + rename), so an interrupted run leaves no half-written map. Each image gets
its own seed derived from `--seed` and its name, so maps do not depend on worker count or order.
Unreadable images are counted, logged and skipped (exit status 1 when any failed). The inputs are
checked before `--out` is created: a missing `--images` folder or an unprepared `--tfds` dataset
leaves the file system as it was.
"""
import multiprocessing as mp
import os
import pathlib
import zlib

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from tqdm import tqdm

from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax import image_io
from pointseg_jax.data.prepare import get_builder
from pointseg_jax.objectness import pipeline

FLAGS = flags.FLAGS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


def image_seed(seed: int, name: str) -> np.random.Generator:
  """A generator that depends only on (seed, name)."""
  return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def write_png_atomic(path: pathlib.Path, o: np.ndarray) -> None:
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  Image.fromarray(o, mode="L").save(tmp, format="PNG")
  os.replace(tmp, path)


def _compute(job):
  """Worker: (name, path or image array, out path, options) -> (name, error or None)."""
  name, source, out_path, opts = job
  try:
    if isinstance(source, np.ndarray):
      image = source
    else:
      image = image_io.read_rgb(source)   # any PIL mode -> RGB; a truncated file fails here
    o = pipeline.heatmap(image, rng=image_seed(opts["seed"], name),
                         num_windows=opts["num_windows"], max_side=opts["max_side"])
    write_png_atomic(pathlib.Path(out_path), o)
    return name, None
  except Exception as e:  # pylint: disable=broad-except
    return name, f"{type(e).__name__}: {e}"


def list_images(images_dir, recursive: bool = False):
  """(name = relative path without suffix, path) of every image file, sorted."""
  root = pathlib.Path(images_dir)
  if not root.is_dir():
    raise errors.MissingInputError(f"--images {root} is not a folder")
  files = root.rglob("*") if recursive else root.glob("*")
  out = [(str(p.relative_to(root).with_suffix("")), p) for p in files
         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
  names = [n for n, _ in out]
  dup = {n for n in names if names.count(n) > 1} if len(set(names)) != len(names) else set()
  if dup:
    raise errors.DataError(f"{root}: several images share a name but differ in suffix: "
                           f"{sorted(dup)[:5]}; rename them (the output is <name>.png)")
  return sorted(out)


def _tfds_examples(name, split, data_dir):
  """The examples of a prepared TFDS split; a MissingInputError when it is not built."""
  # TensorFlow is imported only in --tfds mode: the spawned workers import this module too, and
  # TensorFlow would add seconds and hundreds of MB to each of them.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = get_builder(name, data_dir)
  if not builder.is_prepared():
    raise errors.MissingInputError(
        f"--tfds {name} is not prepared in {builder.data_dir_root}; build it first "
        "(pointseg_jax.data.prepare) or pass --data_dir")
  return tfds.as_numpy(builder.as_dataset(split=split))


def _tfds_jobs(examples, out, opts):
  for ex in examples:
    ex_id = ex["id"].decode("utf-8") if isinstance(ex["id"], bytes) else str(ex["id"])
    target = out / f"{ex_id}.png"
    if not target.exists():
      yield ex_id, ex["image"], str(target), opts


def run(out, images=None, tfds_name=None, split=None, data_dir=None, workers=None, seed=0,
        num_windows=1000, max_side=None, recursive=False, progress=True, names=None):
  """Compute the missing maps; returns {"done": n, "skipped": n, "failed": {name: error}}.

  The inputs are checked (and listed) before `out` is created. `names` (with `images`): only the
  images of these names (the custom_points builder computes maps for the images it uses only).
  """
  out = pathlib.Path(out)
  opts = {"seed": seed, "num_windows": num_windows,
          "max_side": pipeline.DEFAULT_MAX_SIDE if max_side is None else max_side}
  if (images is None) == (tfds_name is None):
    raise errors.ConfigError("give exactly one of --images DIR or --tfds NAME")
  if images is not None:
    listing = list_images(images, recursive)
    if names is not None:
      names = set(names)
      listing = [(n, p) for n, p in listing if n in names]
  else:
    examples = _tfds_examples(tfds_name, split, data_dir)
  out.mkdir(parents=True, exist_ok=True)
  skipped = 0
  if images is not None:
    jobs = []
    for name, path in listing:
      target = out / f"{name}.png"
      if target.exists():
        skipped += 1
        continue
      target.parent.mkdir(parents=True, exist_ok=True)
      jobs.append((name, str(path), str(target), opts))
    total = len(jobs)
    job_iter = iter(jobs)
  else:
    total = None
    job_iter = _tfds_jobs(examples, out, opts)
  workers = workers or len(os.sched_getaffinity(0))
  if total is not None:
    workers = min(workers, total)   # no pool of idle processes for a handful of maps
  failed, done = {}, 0
  bar = tqdm(total=total, desc="objectness", unit="img", disable=not progress)
  if workers <= 1:
    results = map(_compute, job_iter)
    pool = None
  else:
    # spawn: safe even when the parent already runs TensorFlow (TFDS mode).
    pool = mp.get_context("spawn").Pool(workers)
    results = pool.imap_unordered(_compute, job_iter, chunksize=1)
  try:
    for name, err in results:
      bar.update(1)
      if err is None:
        done += 1
      else:
        failed[name] = err
        bar.set_postfix(failed=len(failed))
  finally:
    bar.close()
    if pool is not None:
      pool.close()
      pool.join()
  for name, err in sorted(failed.items()):   # after the bar, so no line cuts through it
    logging.warning("objectness: skipped %s: %s", name, err)
  if images is None:
    skipped = sum(1 for _ in out.glob("*.png")) - done
  return {"done": done, "skipped": skipped, "failed": failed}


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("images", None, "Folder of images (jpg/png/...).", **fv)
  flags.DEFINE_string("tfds", None, "TFDS dataset name whose examples have 'id' and 'image'.", **fv)
  flags.DEFINE_string("split", "train", "TFDS split (with --tfds).", **fv)
  flags.DEFINE_string("data_dir", None, "TFDS data_dir (with --tfds).", **fv)
  flags.DEFINE_string("out", None, "Output folder of <name>.png maps.", **fv)
  flags.DEFINE_integer("workers", None, "Processes (default: all cores).", lower_bound=1, **fv)
  flags.DEFINE_integer("seed", 0, "Base seed; each image gets (seed, crc32(name)).", **fv)
  flags.DEFINE_integer("num_windows", 1000, "Scored windows per image.", lower_bound=1, **fv)
  flags.DEFINE_integer("max_side", None, "Long side the cues are computed at (default "
                       f"{pipeline.DEFAULT_MAX_SIDE}).", lower_bound=1, **fv)
  flags.DEFINE_bool("recursive", False, "Also images in sub-folders.", **fv)
  flags.mark_flags_as_required(["out"], flag_values=flag_values)
  flags.mark_flags_as_mutual_exclusive(["images", "tfds"], required=True, flag_values=flag_values)


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  res = run(FLAGS.out, images=FLAGS.images, tfds_name=FLAGS.tfds, split=FLAGS.split,
            data_dir=FLAGS.data_dir, workers=FLAGS.workers, seed=FLAGS.seed,
            num_windows=FLAGS.num_windows, max_side=FLAGS.max_side, recursive=FLAGS.recursive)
  print(f"objectness: {res['done']} written, {res['skipped']} already there, "
        f"{len(res['failed'])} failed -> {FLAGS.out}")
  return 1 if res["failed"] else 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)
