"""tf.data input pipeline: a click dataset (TFDS) -> the batch dicts of docs/batch_dict.md, as
numpy.

    it = make_dataset(spec, "train", batch_size=16, train=True, seed=0, start_step=s)
    batch = next(it)          # {"image": f32 [16,H,W,3], "valid", "labels", "present", ...}

Per example: decode -> warp (augment.py: scale / crop / flip of image, masks, objectness and every
coordinate list together) -> pad to `image_size` -> rasterise the regime's supervision
(label_kinds.py) -> `present` and objectness. Clicks stay float coordinates until after the warp.

Determinism and exact resume. This host's slice of the split (`tfds.split_for_jax_process`) is read
once, undecoded, into one string tensor in file order (N records) that the per-example graph
gathers from: no Python runs in tf.data's workers (docs/pipeline.md, "No Python in the workers").
Stream position p = k * batch_size + b is
example number p of an endless sequence of epochs: epoch e = p // N visits the records in the
permutation `index_shuffle(p % N, seed=fold_in((seed, host), e))`, and the augmentation of
position p is drawn from `fold_in((seed, host'), p)` with stateless ops. So batch k is a pure
function of (seed, k); `start_step=s` starts the position range at s * batch_size and decodes
nothing it skips. Eval reads the slice once in file order and pads the last batch
(`example_mask` False); every host yields the same number of batches.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Iterator

from absl import logging
import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from pointseg_jax import IGNORE_INDEX, NUM_CLASSES
from pointseg_jax import errors
from pointseg_jax import runtime
from pointseg_jax.data import augment
from pointseg_jax.data import label_kinds
from pointseg_jax.data import spec as spec_lib
from pointseg_jax.data.prepare import BUILDERS, dataset_names

# Registered by importing these modules (lazily: they import heavy builder code).
_BUILDER_MODULES = tuple(BUILDERS.values())
_REQUIRED_FEATURES = ("id", "image", "mask", "instance_mask", "classes", "clicks", "random_clicks",
                      "background_clicks", "squiggles", "boxes", "objectness", "has_objectness")
# Counters carried per example through tf.data and summed by `PipelineStats`.
_STAT_KEYS = ("coords_clipped", "clicks_cropped", "clicks_snapped", "clicks_off_object",
              "points_merged", "images_shrunk", "no_objectness")
_STAT_PREFIX = "_stat_"


# ----------------------------------------------------------------------------------------------
# One example (pure TF; runs inside tf.data.map).


def _present(classes):
  """bool [C]: the listed object classes plus background, always (the authors'
  convention, docs/losses.md)."""
  ok = (classes >= 1) & (classes < NUM_CLASSES)
  hits = tf.math.unsorted_segment_max(tf.ones_like(classes), tf.where(ok, classes, 0), NUM_CLASSES)
  return (hits > 0) | (tf.range(NUM_CLASSES) == 0)


def oracle_objectness(labels, valid, eps: float):
  """An ORACLE objectness map from the dense labels: 1 - eps on object pixels, eps on
  background, 0.5 on void, 0 on padding (as the prior's maps are padded). Never a real regime's
  input: it answers whether Eq. 4 fails through its maps or through the loss."""
  p = tf.where(labels == 0, eps, tf.where(labels == IGNORE_INDEX, 0.5, 1.0 - eps))
  return tf.where(valid, p, 0.0)


def transform_example(example: dict, aug_seed: tf.Tensor, example_id: tf.Tensor,
                      spec: spec_lib.DataSpec, *, train: bool) -> dict:
  """A decoded example (features.click_features) -> one element of the batch dict + counters."""
  out_size = spec.image_size
  image = example["image"]
  mask = tf.cast(example["mask"][..., 0], tf.int32)
  instances = tf.cast(example["instance_mask"][..., 0], tf.int32)
  shape = tf.shape(image)
  g = augment.sample_geometry(aug_seed, shape[0], shape[1], out_size,
                              augment=train and spec.augment, scale_range=spec.scale_range)
  # (class, instance) key: warped with one gather, and what `snap_clicks` matches clicks against.
  key = mask * 256 + instances
  warped_key = augment.warp_labels(key, g)
  labels = augment.pad_to(warped_key // 256, out_size, IGNORE_INDEX)
  valid = augment.pad_to(tf.ones([g.crop_h, g.crop_w], tf.bool), out_size, False)
  image = augment.pad_to(augment.warp_image(tf.cast(image, tf.float32), g), out_size, 0.0)
  obj = augment.warp_image(tf.cast(example["objectness"], tf.float32), g)[..., 0]
  objectness = augment.pad_to((obj + 1.0) / 257.0, out_size, 0.0)
  if spec.oracle_objectness is not None:   # hold-out ablations only (DataSpec, config_lib)
    objectness = oracle_objectness(labels, valid, spec.oracle_objectness)

  stats = {k: tf.constant(0, tf.int32) for k in _STAT_KEYS}
  if not (train and spec.augment):
    stats["images_shrunk"] = tf.cast((g.scaled_h < g.height) | (g.scaled_w < g.width), tf.int32)
  stats["no_objectness"] = tf.cast(~tf.cast(example["has_objectness"], tf.bool), tf.int32)
  kind = label_kinds.LABEL_KINDS[spec.label_kind]
  warp = label_kinds.Warp(g, key, warped_key, labels, out_size)
  sparse, weights, counters, checks = kind.rasterise(example, spec, warp)
  stats.update(counters)
  sparse = tf.where(valid, sparse, IGNORE_INDEX)
  weights = tf.where(valid & (sparse != IGNORE_INDEX), weights, 0.0)

  with tf.control_dependencies(checks):
    classes = (tf.cast(example["classes"], tf.int32) if spec.image_labels_from == "classes"
               else kind.classes(example, mask))
    present = _present(classes)
  # Classes the image's annotation answered (features.py `asked`; a dataset without the feature
  # answered every class). A present class is known by definition, background always.
  asked = tf.cast(example["asked"], tf.bool) if "asked" in example else tf.ones([NUM_CLASSES], tf.bool)
  known = asked | present
  out = {
      "image": image,
      "valid": valid,
      "labels": labels,
      "present": present,
      "known": known,
      "sparse_labels": sparse,
      "sparse_weights": weights,
      "objectness": objectness,
      "example_id": tf.cast(example_id, tf.int32),
      "example_mask": tf.constant(True),
  }
  out.update({_STAT_PREFIX + k: v for k, v in stats.items()})
  return out


# ----------------------------------------------------------------------------------------------
# Reading the split.


def _register_builders() -> None:
  for name in _BUILDER_MODULES:
    try:
      importlib.import_module(name)
    except ModuleNotFoundError as e:  # builder not written yet / not installed: skip it
      if e.name is None or not name.startswith(e.name):
        raise


def _open_builder(spec: spec_lib.DataSpec):
  """The TFDS builder of `spec.dataset`; clear errors for unknown / unprepared / foreign datasets."""
  _register_builders()
  try:
    builder = tfds.builder(spec.dataset, data_dir=spec.data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise errors.ConfigError(
        f"config.data.dataset = {spec.dataset!r} is not a known TFDS dataset; click datasets are "
        f"{', '.join(dataset_names())}") from e
  except ValueError as e:  # e.g. unknown builder config 'synthetic_points/huge'
    raise errors.ConfigError(f"config.data.dataset = {spec.dataset!r}: {e}") from e
  missing = [f for f in _REQUIRED_FEATURES if f not in builder.info.features]
  if missing:
    raise errors.ConfigError(
        f"config.data.dataset = {spec.dataset!r} lacks the click features {missing}; make_dataset "
        "reads datasets written with pointseg_jax.data.features.click_features")
  if not builder.is_prepared():
    raise errors.DataError(
        f"config.data.dataset = {spec.dataset!r} is not prepared in {builder.data_dir!r}; run "
        f"pointseg_jax.data.prepare({spec.dataset!r}, data_dir={spec.data_dir!r}) first "
        "(voc2012_points and custom_points also need manual_dir)")
  return builder


@dataclasses.dataclass(frozen=True)
class HostSlice:
  """This process's share of a split: its sub-split, size, offset in the split, all hosts' sizes."""
  split: object
  num_examples: int
  offset: int
  sizes: tuple[int, ...]


def host_slice(builder, split: str, process_index: int, process_count: int) -> HostSlice:
  """`tfds.split_for_jax_process` (contiguous, remainder kept) for this and every other host."""
  subs = [tfds.split_for_jax_process(split, process_index=i, process_count=process_count)
          for i in range(process_count)]
  try:
    sizes = tuple(builder.info.splits[s].num_examples for s in subs)
  except (KeyError, ValueError) as e:
    raise errors.ConfigError(f"split {split!r} not in {builder.info.full_name}: its splits are "
                     f"{sorted(builder.info.splits)}") from e
  return HostSlice(subs[process_index], sizes[process_index], sum(sizes[:process_index]), sizes)


def _record_dataset(builder, split) -> tf.data.Dataset:
  """The serialized examples of (a sub-split of) a TFRecord split, undecoded, in file order."""
  parts = [tf.data.TFRecordDataset(fi.filename).skip(fi.skip).take(fi.take)
           for fi in builder.info.splits[split].file_instructions]
  ds = parts[0] if parts else tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
  for p in parts[1:]:
    ds = ds.concatenate(p)
  return ds


def read_records(builder, split) -> list[bytes]:
  """The serialized examples of (a sub-split of) a TFRecord split, undecoded, in file order."""
  return list(_record_dataset(builder, split).as_numpy_iterator())


def read_record_table(builder, split, num_records: int) -> tf.Tensor:
  """The first `num_records` serialized examples of `split` as ONE string tensor [num_records].

  What tf.data's workers gather from: no Python object in the per-example graph, so no worker ever
  needs the GIL (a `tf.numpy_function` source did, and its worker threads deadlocked with the
  main thread in the iterator's destructor at interpreter exit). Read in one `batch`: memory is
  the records' size, no second copy (docs/pipeline.md, "Memory").
  """
  if num_records == 0:
    return tf.constant([], tf.string)
  table = _record_dataset(builder, split).take(num_records).batch(num_records).get_single_element()
  if table.shape[0] != num_records:
    raise errors.DataError(f"{builder.info.full_name} split {split!r}: read {table.shape[0]} "
                           f"records, its metadata says {num_records}; rebuild the dataset")
  return table


def train_subset_size(num_records: int, fraction: float) -> int:
  """ceil(fraction * N) records (`DataSpec.train_fraction`); at least one when N > 0.

  The subset is the first records in file order, the order TFDS wrote the split in (shuffled at
  build time): a fixed random sample of the split, the same for every seed and every run.
  """
  if fraction >= 1 or not num_records:
    return num_records
  keep = max(1, math.ceil(fraction * num_records - 1e-9))
  logging.info("train_fraction %.4g: training on %d of %d records", fraction, keep, num_records)
  return keep


def train_subset(records: list, fraction: float) -> list:
  """The first `train_subset_size(len(records), fraction)` records."""
  return records[:train_subset_size(len(records), fraction)]


def example_names(spec: spec_lib.DataSpec, split: str) -> list[str]:
  """The stored `id` (e.g. VOC '2008_000123') of every example of `split`, indexed by the batch
  dict's `example_id` (the split-wide position in file order, the same on every host)."""
  builder = _open_builder(spec_lib.DataSpec.from_config(spec))
  names = []
  for record in read_records(builder, split):
    feature = tf.train.Example.FromString(record).features.feature["id"]
    names.append(feature.bytes_list.value[0].decode("utf-8"))
  return names


# ----------------------------------------------------------------------------------------------
# Iteration.


@dataclasses.dataclass
class PipelineStats:
  """Counts of everything the pipeline changed or dropped; logged, never silent.

  coords_clipped: stored click / squiggle / box coordinates outside the image, moved into it.
  clicks_cropped: clicks outside the random crop, dropped (train augmentation only).
  clicks_snapped: clicks moved by one output pixel to stay on their object (when shrinking).
  clicks_off_object: clicks kept although the warped mask under them no longer shows what was under
    them in the stored image (shrinking skipped a 1-px part of the object, or the object's last
    column / row fell just outside a crop edge); the image there still blends that object.
  points_merged: clicks that landed on a pixel another click already labelled (rule: rasterize.py).
  images_shrunk: images larger than image_size, shrunk to fit (no augmentation: eval).
  no_objectness: examples without an objectness map (has_objectness False: P = 1/257 there).
  """
  examples: int = 0
  batches: int = 0
  coords_clipped: int = 0
  clicks_cropped: int = 0
  clicks_snapped: int = 0
  clicks_off_object: int = 0
  points_merged: int = 0
  images_shrunk: int = 0
  no_objectness: int = 0
  name: str = ""
  log_every: int = 1000

  def add(self, counts: dict[str, int], examples: int) -> None:
    before = {k: getattr(self, k) for k in _STAT_KEYS}
    self.examples += examples
    self.batches += 1
    for k in _STAT_KEYS:
      setattr(self, k, getattr(self, k) + int(counts[k]))
    first = [k for k in _STAT_KEYS if before[k] == 0 and getattr(self, k) > 0]
    if first:
      logging.warning("data %s: %s", self.name, self.summary(first))
    elif self.batches % self.log_every == 0 and any(getattr(self, k) for k in _STAT_KEYS):
      logging.info("data %s: %s", self.name, self.summary(_STAT_KEYS))

  def summary(self, keys=_STAT_KEYS) -> str:
    text = ", ".join(f"{k}={getattr(self, k)}" for k in keys)
    return f"{text} after {self.examples} examples (PipelineStats docstring explains each)"


class BatchIterator:
  """Iterator of numpy batch dicts; `.stats` counts clipped / dropped / moved clicks so far."""

  def __init__(self, batches: Iterator[dict], stats: PipelineStats, num_batches: int | None):
    self._batches = batches
    self.stats = stats
    self.num_batches = num_batches  # eval: batches this iterator yields; train: None (endless)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._batches)


def _split_stats(batch: dict) -> tuple[dict, dict]:
  counts = {k: int(batch.pop(_STAT_PREFIX + k)[batch["example_mask"]].sum()) for k in _STAT_KEYS}
  return batch, counts


def _pad_batch(batch: dict | None, template: dict, batch_size: int) -> dict:
  """Pad a short last batch (or make an empty one) with blank examples: example_mask False."""
  fill = {"labels": IGNORE_INDEX, "sparse_labels": IGNORE_INDEX, "example_id": -1}
  out = {}
  for k, t in template.items():
    blank = np.full((batch_size,) + t.shape[1:], fill.get(k, 0), t.dtype)
    if k == "present":
      blank[:, 0] = True
    if batch is not None:
      blank[:len(batch[k])] = batch[k]
    out[k] = blank
  return out


def _dataset(records: tf.Tensor, features, spec: spec_lib.DataSpec, *, batch_size: int, train: bool,
             seed: int, start_step: int, offset: int, process_index: int) -> tf.data.Dataset:
  n = int(records.shape[0])

  def load(index, aug_seed):
    # An in-graph gather from the captured tensor: no Python (and no GIL) in the workers.
    example = features.deserialize_example(tf.gather(records, index))
    return transform_example(example, aug_seed, offset + index, spec, train=train)

  first = start_step * batch_size
  if train:
    shuffle_key = tf.constant([seed, 2 * process_index], tf.int64)
    aug_key = tf.constant([seed, 2 * process_index + 1], tf.int64)

    def locate(position):
      epoch_key = tf.random.experimental.stateless_fold_in(shuffle_key, position // n)
      index = tf.random.experimental.index_shuffle(position % n, epoch_key, tf.constant(n - 1,
                                                                                     tf.int64))
      return index, tf.random.experimental.stateless_fold_in(aug_key, position)

    ds = tf.data.Dataset.range(first, np.iinfo(np.int64).max).map(locate)
  else:
    ds = tf.data.Dataset.range(first, n).map(lambda i: (i, tf.zeros([2], tf.int64)))
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=train)
  return ds.with_options(pipeline_options()).prefetch(tf.data.AUTOTUNE)


def pipeline_options() -> tf.data.Options:
  """Deterministic order; no model-based autotuning: its thread made deleting a train iterator
  wait up to tens of seconds after a busy run, for no measured throughput (docs/pipeline.md,
  "Autotuning off"). AUTOTUNE parallelism then means one map call per core."""
  options = tf.data.Options()
  options.deterministic = True
  options.autotune.enabled = False
  return options


def make_dataset(spec: spec_lib.DataSpec, split: str, *, batch_size: int, train: bool, seed: int,
                 start_step: int = 0, process_index: int | None = None,
                 process_count: int | None = None) -> BatchIterator:
  """Batches (docs/batch_dict.md, numpy) of `spec.dataset`'s `split`, this host's share.

  batch_size: this process's batch (global / jax.process_count()). train=True: endless, shuffled,
  augmented; batch k is a pure function of (seed, start_step + k). train=False: the split once in a
  fixed order, the last batch padded with example_mask False, the same number of batches on every
  host. process_index / process_count default to jax's (override for tests / offline tools).
  """
  spec = spec_lib.DataSpec.from_config(spec)   # a DataSpec, or a config.data dict to check
  for name, value in (("batch_size", batch_size), ("start_step", start_step), ("seed", seed)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ValueError(f"make_dataset: {name} must be an int, got {value!r}")
  if batch_size < 1 or start_step < 0:
    raise ValueError(f"make_dataset: need batch_size >= 1 and start_step >= 0, got {batch_size}, "
                     f"{start_step}")
  if process_index is None or process_count is None:
    process_index, process_count = jax.process_index(), jax.process_count()
  runtime.hide_accelerators_from_tensorflow()
  builder = _open_builder(spec)
  part = host_slice(builder, split, process_index, process_count)
  num_records = part.num_examples
  if train:
    num_records = train_subset_size(num_records, spec.train_fraction)
  if not num_records and train:
    raise errors.DataError(f"split {split!r} of {spec.dataset!r} has no examples for process "
                     f"{process_index} of {process_count}")
  records = read_record_table(builder, part.split, num_records)
  ds = _dataset(records, builder.info.features, spec, batch_size=batch_size, train=train,
                seed=int(seed), start_step=int(start_step), offset=part.offset,
                process_index=process_index)
  stats = PipelineStats(name=f"{spec.dataset}:{split}{'(train)' if train else ''}")
  if train:
    return BatchIterator(_train_batches(ds, stats), stats, None)
  num_batches = max(math.ceil(s / batch_size) for s in part.sizes) - start_step
  num_batches = max(num_batches, 0)
  return BatchIterator(_eval_batches(ds, stats, batch_size, num_batches, spec), stats, num_batches)


def _train_batches(ds, stats):
  for batch in ds.as_numpy_iterator():
    batch, counts = _split_stats(batch)
    stats.add(counts, len(batch["example_id"]))
    yield batch


def _eval_batches(ds, stats, batch_size, num_batches, spec: spec_lib.DataSpec):
  template = None
  done = 0
  for batch in ds.as_numpy_iterator():
    batch, counts = _split_stats(batch)
    stats.add(counts, len(batch["example_id"]))
    template = batch
    done += 1
    yield _pad_batch(batch, batch, batch_size) if len(batch["example_id"]) < batch_size else batch
  if template is None:
    template = _blank_template(spec)
  for _ in range(num_batches - done):
    yield _pad_batch(None, template, batch_size)


def _blank_template(spec: spec_lib.DataSpec) -> dict:
  h, w = spec.image_size
  return {"image": np.zeros((1, h, w, 3), np.float32), "valid": np.zeros((1, h, w), bool),
          "labels": np.zeros((1, h, w), np.int32), "present": np.zeros((1, NUM_CLASSES), bool),
          "known": np.zeros((1, NUM_CLASSES), bool), "sparse_labels": np.zeros((1, h, w), np.int32),
          "sparse_weights": np.zeros((1, h, w), np.float32),
          "objectness": np.zeros((1, h, w), np.float32), "example_id": np.zeros((1,), np.int32),
          "example_mask": np.zeros((1,), bool)}

