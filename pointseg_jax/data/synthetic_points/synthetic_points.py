"""`synthetic_points`: the embedded VOC-like click benchmark, built on first use (docs/data_synthetic.md).

Every example is a procedural scene (`scenes.render_scene`), its simulated crowd annotations
(`clicks.simulate_annotations`: 3 annotators with the paper's error rates, random points, squiggles,
boxes, background clicks) and its objectness map (`pointseg_jax.objectness.heatmap`, computed from
the pixels only, never from the ground truth). Each example is a pure function of
(config seed, split, index), so builds are identical whatever the number of worker processes.
"""
import dataclasses
import os
import pickle
import subprocess
import sys
import tempfile
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import hashing
from tensorflow_datasets.core.utils import tqdm_utils

from pointseg_jax import errors
from pointseg_jax import objectness
from pointseg_jax.data import clicks
from pointseg_jax.data import features
from pointseg_jax.data.prepare import NoStdoutBanner
from pointseg_jax.data.synthetic_points import scenes

SPLITS = ("train", "val")
# (height / width, probability): VOC photos are mostly 500x375 landscape, some 375x500 portrait.
ASPECTS = ((0.75, 0.65), (4.0 / 3.0, 0.25), (1.0, 0.10))
_WORKERS_ENV = "POINTSEG_DATA_WORKERS"
# The objectness model (a file packaged in pointseg_jax/objectness/) each dataset version uses:
# 1.0.0 the release's cue model as it is (RESULTS.md v1 trained on it); 2.0.0 cues relearned on
# train scenes, superpixel-smoothed and calibrated (docs/objectness.md §5b). Scenes and clicks are
# the same in both versions; only the objectness maps differ.
OBJECTNESS_MODELS = {"1.0.0": "alexe_v22.npz", "2.0.0": "synthetic_v2.npz"}


@dataclasses.dataclass
class SyntheticPointsConfig(tfds.core.BuilderConfig):
  """What is written to disk: split sizes, image size, seed, objectness sampling."""
  num_train: int = 2000
  num_val: int = 300
  max_side: int = 128  # long side in pixels; the short side follows ASPECTS
  seed: int = 0
  # pointseg_jax.objectness.heatmap: windows kept by NMS / candidate windows sampled.
  objectness_windows: int = 1000
  objectness_candidates: int = 100_000
  # Build only the train examples that are the first `train_first` records of the num_train-image
  # train split, so that this train split is bit for bit `train[:train_first]` of that set, in the
  # same order (`synthetic_points/demo`; `first_in_file_order`). None: all num_train.
  train_first: int | None = None


@dataclasses.dataclass(frozen=True)
class _Recipe:
  """The picklable part of a config that `make_example` needs (worker processes get this)."""
  seed: int
  max_side: int
  objectness_windows: int
  objectness_candidates: int
  objectness_model: str = OBJECTNESS_MODELS["2.0.0"]   # packaged model file (OBJECTNESS_MODELS)


def image_size(rng: np.random.Generator, max_side: int) -> tuple[int, int]:
  """(height, width): long side `max_side`, aspect drawn from ASPECTS."""
  ratios, probs = zip(*ASPECTS)
  ratio = ratios[rng.choice(len(ratios), p=np.asarray(probs) / np.sum(probs))]
  if ratio <= 1.0:
    return int(round(max_side * ratio)), max_side
  return max_side, int(round(max_side / ratio))


def example_id(split: str, index: int) -> str:
  return f"{split}_{index:06d}"


def make_example(recipe: _Recipe, split: str, index: int) -> tuple[str, dict]:
  """Example `index` of `split`: scene + simulated annotations + objectness, seeded by
  SeedSequence((seed, split, index)) so any process can make any example."""
  seq = np.random.SeedSequence([recipe.seed, SPLITS.index(split), index])
  scene_seq, click_seq, obj_seq = seq.spawn(3)
  scene_rng = np.random.default_rng(scene_seq)
  height, width = image_size(scene_rng, recipe.max_side)
  scene = scenes.render_scene(scene_rng, height, width)
  mask, instance_mask = scene["mask"], scene["instance_mask"]
  labels = clicks.simulate_annotations(mask, instance_mask, np.random.default_rng(click_seq))
  heat = objectness.heatmap(scene["image"], rng=np.random.default_rng(obj_seq),
                            num_windows=recipe.objectness_windows,
                            distribution_windows=recipe.objectness_candidates,
                            model=objectness.load_packaged(recipe.objectness_model))
  key = example_id(split, index)
  return key, {
      "id": key,
      "image": scene["image"],
      "mask": mask[..., None],
      "instance_mask": instance_mask[..., None],
      "has_instances": True,
      "classes": clicks.present_classes(mask),
      **labels,
      "objectness": heat[..., None],
      "has_objectness": True,
  }


def first_in_file_order(split: str, num: int, first: int) -> list[int]:
  """The indices of the examples that are records 0..first-1 of a `num`-example split as TFDS
  writes it: sorted by the md5 of (split name, key), the shuffle of its writer (hash salt = the
  split's name), so a split of only these examples keeps their order too."""
  if not 0 < first <= num:
    raise errors.ConfigError(f"train_first={first}: need 1 <= train_first <= num_train={num}")
  hasher = hashing.Hasher(split)
  order = sorted(range(num), key=lambda i: hasher.hash_key(example_id(split, i)))
  return sorted(order[:first])


def default_num_workers(num_examples: int) -> int:
  """$POINTSEG_DATA_WORKERS, else one process per core (max 8) for big splits, 1 for small ones
  (starting a worker costs ~1-2 s of imports)."""
  env = os.environ.get(_WORKERS_ENV)
  if env:
    try:
      return max(1, int(env))
    except ValueError as e:
      raise errors.ConfigError(f"${_WORKERS_ENV} must be an integer, got {env!r}") from e
  if num_examples < 200:
    return 1
  return max(1, min(len(os.sched_getaffinity(0)), 8))


# A worker process: makes examples start, start + step, ... of a split and streams them, pickled, to
# stdout. Started as `python -c` (not multiprocessing): nothing re-imports the caller's main script
# (no `if __name__ == "__main__"` guard needed) and nothing forks TensorFlow's or JAX's threads.
_WORKER = """
import pickle, sys
from pointseg_jax.data.synthetic_points import synthetic_points as sp
recipe, split, indices = pickle.loads(bytes.fromhex(sys.argv[1]))
out = sys.stdout.buffer
for index in indices:
  pickle.dump(sp.make_example(recipe, split, index), out, protocol=pickle.HIGHEST_PROTOCOL)
  out.flush()
"""


def _parallel(recipe: _Recipe, split: str, indices: list[int],
              workers: int) -> Iterator[tuple[str, dict]]:
  """The examples of `indices` in order, made by `workers` processes (worker k makes indices k,
  k + workers, ...)."""
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  procs, logs = [], []
  try:
    for k in range(workers):
      logs.append(tempfile.TemporaryFile())
      arg = pickle.dumps((recipe, split, indices[k::workers])).hex()
      procs.append(subprocess.Popen([sys.executable, "-c", _WORKER, arg], stdout=subprocess.PIPE,
                                    stderr=logs[-1], env=env))
    for position, index in enumerate(indices):
      k = position % workers
      try:
        key, example = pickle.load(procs[k].stdout)
      except EOFError:
        procs[k].wait()
        logs[k].seek(0)
        tail = logs[k].read().decode(errors="replace")[-3000:]
        raise RuntimeError(f"synthetic_points worker {k} ({split}) exited with code "
                           f"{procs[k].returncode} before example {index}:\n{tail}") from None
      yield key, example
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
      proc.wait()
      proc.stdout.close()
    for log in logs:
      log.close()


class SyntheticPoints(NoStdoutBanner, tfds.core.GeneratorBasedBuilder):
  """Procedural VOC-like scenes with simulated point clicks (the embedded benchmark)."""

  VERSION = tfds.core.Version("2.0.0")
  SUPPORTED_VERSIONS = [tfds.core.Version("1.0.0")]   # 'synthetic_points/default:1.0.0'
  RELEASE_NOTES = {
      "1.0.0": "Procedural VOC-like scenes, simulated crowd clicks, objectness (release model).",
      "2.0.0": "Same scenes and clicks; objectness from cues learned on train scenes, superpixel-"
               "smoothed and calibrated (docs/objectness.md §5b).",
  }
  BUILDER_CONFIGS = [
      # Tests and CI: builds in seconds; objectness from fewer windows to stay fast.
      SyntheticPointsConfig(name="tiny", description="48 train / 16 val images, long side 64 px.",
                            num_train=48, num_val=16, max_side=64, seed=1,
                            objectness_windows=300, objectness_candidates=5_000),
      # `make demo` and the Table-1 experiments (docs/data_synthetic.md has its statistics).
      SyntheticPointsConfig(name="default",
                            description="2000 train / 300 val images, long side 128 px.",
                            num_train=2000, num_val=300, max_side=128, seed=0,
                            # 20k candidates instead of the release's 100k: same AUC on this set
                            # (0.733 vs 0.733 on 30 scenes), 2.4x faster (docs/data_synthetic.md).
                            objectness_candidates=20_000),
      # `make demo`: default's 300 val images and the first quarter of its train split, the same
      # records in the same order (a 5-minute demo cannot wait for the 2,300-image build;
      # docs/training.md, "The demo's schedule").
      SyntheticPointsConfig(name="demo",
                            description="default's train[:25%] (500 images) and val (300).",
                            num_train=2000, num_val=300, max_side=128, seed=0,
                            objectness_candidates=20_000, train_first=500),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"

  def __init__(self, *, num_workers: int | None = None, **kwargs):
    """num_workers: processes generating examples (default: `default_num_workers`)."""
    super().__init__(**kwargs)
    self._num_workers = num_workers

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=features.click_features("png"),
        citation=features.CITATION,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    cfg = self.builder_config
    indices = {"train": list(range(cfg.num_train)), "val": list(range(cfg.num_val))}
    if cfg.train_first is not None:
      indices["train"] = first_in_file_order("train", cfg.num_train, cfg.train_first)
    return {split: self._generate_examples(split, indices[split]) for split in SPLITS}

  def _generate_examples(self, split: str, indices: list[int]) -> Iterator[tuple[str, dict]]:
    cfg = self.builder_config
    recipe = _Recipe(cfg.seed, cfg.max_side, cfg.objectness_windows, cfg.objectness_candidates,
                     OBJECTNESS_MODELS[str(self.version)])
    num = len(indices)
    workers = self._num_workers or default_num_workers(num)
    # TFDS's own bar does not know the split size; this one shows the ETA (tfds.display_progress_bar
    # switches both).
    with tqdm_utils.tqdm(total=num, desc=f"synthetic_points/{cfg.name} {split} ({workers} proc)",
                         unit=" images", leave=False) as bar:
      examples = (make_example(recipe, split, i) for i in indices) if workers <= 1 else _parallel(
          recipe, split, indices, workers)
      for item in examples:
        yield item
        bar.update(1)
