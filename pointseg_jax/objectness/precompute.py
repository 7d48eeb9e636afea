"""Objectness maps for a whole dataset: one grayscale PNG of o (0..255) per image, P = (o+1)/257.

    python -m pointseg_jax.objectness precompute --images DIR --out DIR [--workers N]
    python -m pointseg_jax.objectness precompute --tfds voc2012_points --split train --out DIR

Output `<out>/<image stem or example id>.png` — the layout `voc2012_points` reads from
`manual_dir/objectness/`. Resumable: files already in `--out` are skipped and every PNG is written
atomically (temp file + rename), so an interrupted run leaves no half-written map. Each image gets
its own seed derived from `--seed` and its name, so maps do not depend on worker count or order.
Unreadable images are counted, listed and skipped (exit status 1 when any failed).
"""
import argparse
import multiprocessing as mp
import os
import pathlib
import sys
import zlib

import numpy as np
from PIL import Image

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
  from pointseg_jax.objectness import pipeline  # pylint: disable=import-outside-toplevel
  name, source, out_path, opts = job
  try:
    if isinstance(source, np.ndarray):
      image = source
    else:
      with Image.open(source) as im:
        image = np.asarray(im.convert("RGB"))  # any PIL mode (L, P, RGBA, CMYK) -> RGB
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
    raise FileNotFoundError(f"--images {root} is not a folder")
  files = root.rglob("*") if recursive else root.glob("*")
  out = [(str(p.relative_to(root).with_suffix("")), p) for p in files
         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
  names = [n for n, _ in out]
  dup = {n for n in names if names.count(n) > 1} if len(set(names)) != len(names) else set()
  if dup:
    raise ValueError(f"{root}: several images share a name but differ in suffix: {sorted(dup)[:5]}")
  return sorted(out)


def _tfds_jobs(name, split, data_dir, out, opts):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  ds = tfds.load(name, split=split, data_dir=data_dir)
  for ex in tfds.as_numpy(ds):
    ex_id = ex["id"].decode("utf-8") if isinstance(ex["id"], bytes) else str(ex["id"])
    target = out / f"{ex_id}.png"
    if not target.exists():
      yield ex_id, ex["image"], str(target), opts


def run(out, images=None, tfds_name=None, split=None, data_dir=None, workers=None, seed=0,
        num_windows=1000, max_side=None, recursive=False, progress=True):
  """Compute the missing maps; returns {"done": n, "skipped": n, "failed": {name: error}}."""
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  from pointseg_jax.objectness import pipeline  # pylint: disable=import-outside-toplevel
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  opts = {"seed": seed, "num_windows": num_windows,
          "max_side": pipeline.DEFAULT_MAX_SIDE if max_side is None else max_side}
  if (images is None) == (tfds_name is None):
    raise ValueError("give exactly one of --images DIR or --tfds NAME")
  skipped = 0
  if images is not None:
    listing = list_images(images, recursive)
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
    job_iter = _tfds_jobs(tfds_name, split, data_dir, out, opts)
  workers = workers or len(os.sched_getaffinity(0))
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
        bar.write(f"objectness: skipped {name}: {err}")
  finally:
    bar.close()
    if pool is not None:
      pool.close()
      pool.join()
  if images is None:
    skipped = sum(1 for _ in out.glob("*.png")) - done
  return {"done": done, "skipped": skipped, "failed": failed}


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m pointseg_jax.objectness precompute",
                                   description=__doc__.split("\n\n")[0])
  src = parser.add_mutually_exclusive_group(required=True)
  src.add_argument("--images", help="folder of images (jpg/png/...)")
  src.add_argument("--tfds", help="TFDS dataset name whose examples have 'id' and 'image'")
  parser.add_argument("--split", default="train", help="TFDS split (with --tfds)")
  parser.add_argument("--data-dir", default=None, help="TFDS data_dir (with --tfds)")
  parser.add_argument("--out", required=True, help="output folder of <name>.png maps")
  parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num-windows", type=int, default=1000)
  parser.add_argument("--max-side", type=int, default=None,
                      help="long side the cues are computed at (default 250)")
  parser.add_argument("--recursive", action="store_true", help="also images in sub-folders")
  args = parser.parse_args(argv)
  res = run(args.out, images=args.images, tfds_name=args.tfds, split=args.split,
            data_dir=args.data_dir, workers=args.workers, seed=args.seed,
            num_windows=args.num_windows, max_side=args.max_side, recursive=args.recursive)
  print(f"objectness: {res['done']} written, {res['skipped']} already there, "
        f"{len(res['failed'])} failed -> {args.out}")
  for name, err in sorted(res["failed"].items()):
    print(f"  FAILED {name}: {err}", file=sys.stderr)
  return 1 if res["failed"] else 0
