"""Objectness throughput on 500×375 photos: images/s on N cores and the share of time per cue.

    .venv/bin/python bench/bench_objectness.py [--images 14] [--workers 2] [--max-side 250]

Photos: the VOC val samples of ../shared/testdata resized to 500×375 (random textured images when
that folder is absent). Three numbers from one run:
- serial: one process, wall time per image, and CPU seconds per image with the per-stage split
  (CPU time, so the split stays right on a busy machine);
- parallel: `--workers` processes (multiprocessing, as the precompute CLI), wall images/s;
- the load average before the run, because on a shared machine wall time depends on it.
"""
import argparse
import multiprocessing as mp
import os
import pathlib
import time

import numpy as np
from PIL import Image

TESTDATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata" / "voc_val_samples"


def load_photos(n: int, size=(500, 375)):
  paths = sorted(TESTDATA.glob("*_image.png"))
  if paths:
    photos = [np.asarray(Image.open(p).convert("RGB").resize(size, Image.BILINEAR)) for p in paths]
    source = f"{len(paths)} VOC val photos from {TESTDATA}"
  else:
    rng = np.random.default_rng(0)
    photos = []
    for _ in range(n):
      img = rng.integers(0, 256, (size[1] // 25, size[0] // 25, 3), dtype=np.uint8)
      photos.append(np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC)))
    source = "random textured images (testdata not found)"
  return [photos[i % len(photos)] for i in range(n)], source


def _one(args):
  image, seed, max_side = args
  from pointseg_jax import objectness  # pylint: disable=import-outside-toplevel
  timings = {}
  objectness.heatmap(image, rng=seed, max_side=max_side, timings=timings)
  return timings


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--images", type=int, default=14)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--max-side", type=int, default=250)
  args = parser.parse_args()
  photos, source = load_photos(args.images)
  load = os.getloadavg()
  print(f"{len(photos)} images of {photos[0].shape[1]}x{photos[0].shape[0]} ({source}); "
        f"max_side {args.max_side}; load average before: {load[0]:.1f} on {os.cpu_count()} CPUs")

  _one((photos[0], 0, args.max_side))  # warm caches (imports, interval tables)
  totals = {}
  t_wall, t_cpu = time.perf_counter(), time.process_time()
  for i, image in enumerate(photos):
    for k, v in _one((image, i, args.max_side)).items():
      totals[k] = totals.get(k, 0.0) + v
  wall = (time.perf_counter() - t_wall) / len(photos)
  cpu = (time.process_time() - t_cpu) / len(photos)
  print(f"serial (1 process): {1 / wall:.2f} images/s wall, {cpu * 1000:.0f} ms CPU per image "
        f"(= {1 / cpu:.2f} images/s per fully available core)")
  staged = sum(totals.values())
  share = ", ".join(f"{k} {100 * v / staged:.0f}%" for k, v in
                    sorted(totals.items(), key=lambda kv: -kv[1]))
  print(f"CPU share per stage: {share}")

  with mp.get_context("spawn").Pool(args.workers) as pool:
    pool.map(_one, [(photos[0], 0, args.max_side)] * args.workers)  # start + warm the workers
    t = time.perf_counter()
    pool.map(_one, [(im, i, args.max_side) for i, im in enumerate(photos)], chunksize=1)
    par = time.perf_counter() - t
  print(f"parallel ({args.workers} processes): {len(photos) / par:.2f} images/s wall "
        f"(target >= 5 on 2 cores); load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
