"""Objectness maps for a whole dataset: one grayscale PNG of o (0..255) per image, P = (o+1)/257.

    python -m pointseg_jax.objectness.precompute --images=DIR --out=DIR [--workers=N]

(`python -m pointseg_jax.objectness precompute ...` is the same program.) The maps of a TFDS
split's examples: `python -m pointseg_jax.data.objectness_maps` (the prior sits below the data
package and never imports it).

Output `<out>/<image stem or example id>.png` — the layout `voc2012_points` reads from
`manual_dir/objectness/`. Resumable: files already in `--out` are skipped and every PNG is written
atomically (temp file + rename), so an interrupted run leaves no half-written map. Each image gets
its own seed derived from `--seed` and its name, so maps do not depend on worker count or order.
Unreadable images are counted, logged and skipped (exit status 1 when any failed). The inputs are
checked before `--out` is created: a missing `--images` folder leaves the file system as it was.
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
from pointseg_jax import files
from pointseg_jax import image_io
from pointseg_jax.objectness import pipeline

FLAGS = flags.FLAGS



def image_seed(seed: int, name: str) -> np.random.Generator:
  """A generator that depends only on (seed, name)."""
  return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


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
    files.save_image(out_path, Image.fromarray(o, mode="L"))
    return name, None
  except Exception as e:  # pylint: disable=broad-except
    return name, f"{type(e).__name__}: {e}"


def list_images(images_dir, recursive: bool = False):
  """(name = relative path without suffix, path) of every image file, sorted (files.list_images)."""
  return files.list_images(images_dir, recursive=recursive, what="--images")


def compute_maps(jobs, *, total=None, workers=None, progress=True):
  """Run (name, path or image array, out path, options) jobs, in parallel processes when there
  are several cores; returns (maps written, {name: error}). The images mode below and the TFDS
  mode (data/objectness_maps.py) share it."""
  workers = workers or len(os.sched_getaffinity(0))
  if total is not None:
    workers = min(workers, total)   # no pool of idle processes for a handful of maps
  failed, done = {}, 0
  bar = tqdm(total=total, desc="objectness", unit="img", disable=not progress)
  if workers <= 1:
    results = map(_compute, jobs)
    pool = None
  else:
    # spawn: safe even when the parent already runs TensorFlow (TFDS mode).
    pool = mp.get_context("spawn").Pool(workers)
    results = pool.imap_unordered(_compute, jobs, chunksize=1)
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
  return done, failed


def options(seed=0, num_windows=1000, max_side=None) -> dict:
  """The per-job options of `_compute`."""
  return {"seed": seed, "num_windows": num_windows,
          "max_side": pipeline.DEFAULT_MAX_SIDE if max_side is None else max_side}


def run(out, images, workers=None, seed=0, num_windows=1000, max_side=None, recursive=False,
        progress=True, names=None):
  """Compute the missing maps of a folder's images; returns {"done", "skipped", "failed"}.

  The folder is listed before `out` is created. `names`: only the images of these names (the
  custom_points builder computes maps for the images it uses only).
  """
  out = pathlib.Path(out)
  if images is None:
    raise errors.ConfigError("--images DIR is required (the maps of a TFDS split: python -m "
                             "pointseg_jax.data.objectness_maps)")
  listing = list_images(images, recursive)
  if names is not None:
    names = set(names)
    listing = [(n, p) for n, p in listing if n in names]
  out.mkdir(parents=True, exist_ok=True)
  opts = options(seed, num_windows, max_side)
  jobs, skipped = [], 0
  for name, path in listing:
    target = out / f"{name}.png"
    if target.exists():
      skipped += 1
      continue
    target.parent.mkdir(parents=True, exist_ok=True)
    jobs.append((name, str(path), str(target), opts))
  done, failed = compute_maps(iter(jobs), total=len(jobs), workers=workers, progress=progress)
  return {"done": done, "skipped": skipped, "failed": failed}


def define_map_flags(flag_values: flags.FlagValues) -> None:
  """--out and how maps are computed: shared with data/objectness_maps.py's command."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("out", None, "Output folder of <name>.png maps.", **fv)
  flags.DEFINE_integer("workers", None, "Processes (default: all cores).", lower_bound=1, **fv)
  flags.DEFINE_integer("seed", 0, "Base seed; each image gets (seed, crc32(name)).", **fv)
  flags.DEFINE_integer("num_windows", 1000, "Scored windows per image.", lower_bound=1, **fv)
  flags.DEFINE_integer("max_side", None, "Long side the cues are computed at (default "
                       f"{pipeline.DEFAULT_MAX_SIDE}).", lower_bound=1, **fv)


def map_options(flag_values) -> dict:
  """The keyword arguments `run` and `objectness_maps.run` take from define_map_flags' flags."""
  return {"workers": flag_values.workers, "seed": flag_values.seed,
          "num_windows": flag_values.num_windows, "max_side": flag_values.max_side}


def report(res: dict, out) -> int:
  """The command's last line; exit status 1 when any image failed (each was logged)."""
  print(f"objectness: {res['done']} written, {res['skipped']} already there, "
        f"{len(res['failed'])} failed -> {out}")
  return 1 if res["failed"] else 0


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  flags.DEFINE_string("images", None, "Folder of images (jpg/png/...).", flag_values=flag_values)
  define_map_flags(flag_values)
  flags.DEFINE_bool("recursive", False, "Also images in sub-folders.", flag_values=flag_values)
  flags.mark_flags_as_required(["images", "out"], flag_values=flag_values)


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  return report(run(FLAGS.out, images=FLAGS.images, recursive=FLAGS.recursive,
                    **map_options(FLAGS)), FLAGS.out)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
