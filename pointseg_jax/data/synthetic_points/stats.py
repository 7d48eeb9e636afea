"""Statistics of a click dataset, to set the synthetic benchmark next to PASCAL VOC 2012.

  # the built dataset (every field as stored; builds it first if needed)
  python -m pointseg_jax.data.synthetic_points.stats --dataset=synthetic_points/default --split=train
  # the scene generator alone (no clicks / objectness; seconds)
  python -m pointseg_jax.data.synthetic_points.stats --scenes=500
  # a folder of real VOC 2012 val photos with masks (<n>_image.png, <n>_target.png in the VOC
  # palette), optionally with our objectness maps
  python -m pointseg_jax.data.synthetic_points.stats --voc_samples=DIR --voc_objectness

Prints one markdown table (docs/data_synthetic.md) and optionally writes the numbers as JSON.
Objectness is scored as the ROC AUC of the uint8 map against object pixels (class 1..20) versus
background pixels (class 0), void excluded: pooled over every pixel of the set and per image.
"""
import glob
import json
import os

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from pointseg_jax import labels
from pointseg_jax import objectness
from pointseg_jax.data.prepare import prepare
from pointseg_jax.data.synthetic_points import scenes
from pointseg_jax.objectness.evaluate import auc_from_histograms

FLAGS = flags.FLAGS
SIZE_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


class Accumulator:
  """Running statistics over (mask, instance_mask, objectness) of many images."""

  def __init__(self):
    self.n = 0
    self.classes_per_image = []
    self.instances_per_image = []
    self.background = []
    self.void = []
    self.instance_sizes = []  # fraction of the image, labelled (non-void) pixels
    self.class_sizes = []  # fraction of the image covered by one class in one image
    self.images_with_class = np.zeros(NUM_CLASSES, np.int64)
    self.obj_pos = np.zeros(256, np.int64)
    self.obj_neg = np.zeros(256, np.int64)
    self.obj_auc_per_image = []
    self.colour = np.zeros((512, NUM_CLASSES), np.int64)  # RGB quantised to 8^3 bins x class
    self.clicks = np.zeros(3, np.int64)  # main annotator: clicks, on their class, on void
    self.first_clicks = np.zeros(2, np.int64)  # (image, class) pairs, with a rank-1 main click

  def add(self, mask: np.ndarray, instance_mask: np.ndarray | None = None,
          objectness: np.ndarray | None = None, image: np.ndarray | None = None,
          clicks: dict | None = None) -> None:
    mask = np.asarray(mask).squeeze()
    total = mask.size
    present = np.unique(mask)
    present = present[(present > 0) & (present != IGNORE_INDEX)]
    self.n += 1
    self.classes_per_image.append(len(present))
    self.images_with_class[present] += 1
    self.background.append(np.count_nonzero(mask == 0) / total)
    self.void.append(np.count_nonzero(mask == IGNORE_INDEX) / total)
    counts = np.bincount(mask.ravel(), minlength=256)
    self.class_sizes.extend(counts[present] / total)
    if instance_mask is not None:
      inst = np.asarray(instance_mask).squeeze()
      icounts = np.bincount(inst.ravel(), minlength=256)[1:IGNORE_INDEX]
      self.instances_per_image.append(int(np.count_nonzero(icounts)))
      self.instance_sizes.extend(icounts[icounts > 0] / total)
    if objectness is not None:
      obj = np.asarray(objectness).squeeze().astype(np.int64)
      pos = np.bincount(obj[(mask > 0) & (mask != IGNORE_INDEX)], minlength=256)
      neg = np.bincount(obj[mask == 0], minlength=256)
      self.obj_pos += pos
      self.obj_neg += neg
      auc = auc_from_histograms(pos, neg)
      if not np.isnan(auc):
        self.obj_auc_per_image.append(auc)
    if image is not None:
      keep = mask != IGNORE_INDEX
      q = (np.asarray(image)[keep] // 32).astype(np.int64)
      np.add.at(self.colour, (q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2], mask[keep].astype(np.int64)), 1)
    if clicks is not None:
      main = np.asarray(clicks["annotator"]) == 0
      cls = np.asarray(clicks["cls"])[main]
      y = np.clip(np.floor(clicks["y"][main]).astype(np.int64), 0, mask.shape[0] - 1)
      x = np.clip(np.floor(clicks["x"][main]).astype(np.int64), 0, mask.shape[1] - 1)
      self.clicks += [len(cls), np.count_nonzero(mask[y, x] == cls),
                      np.count_nonzero(mask[y, x] == IGNORE_INDEX)]
      first = cls[np.asarray(clicks["rank"])[main] == 1]
      self.first_clicks += [len(present), len(np.intersect1d(first, present))]

  def summary(self) -> dict:
    def hist(values, top):
      values = np.minimum(np.asarray(values, np.int64), top)
      return {(f"{k}+" if k == top else str(k)): float(np.mean(values == k)) for k in range(top + 1)}

    out = {
        "images": self.n,
        "classes_per_image": float(np.mean(self.classes_per_image)),
        "classes_per_image_hist": hist(self.classes_per_image, 4),
        "background_share": float(np.mean(self.background)),
        "void_share": float(np.mean(self.void)),
        "class_region_size_quantiles": dict(zip(
            map(str, SIZE_QUANTILES), np.quantile(self.class_sizes, SIZE_QUANTILES).tolist())),
        "images_with_class": {CLASS_NAMES[c]: float(self.images_with_class[c] / self.n)
                              for c in range(1, NUM_CLASSES)},
    }
    if self.instances_per_image:
      inst, cls = np.asarray(self.instances_per_image), np.asarray(self.classes_per_image)
      sizes = np.asarray(self.instance_sizes)
      out.update({
          "instances_per_image": float(inst.mean()),
          "instances_per_image_hist": hist(inst, 6),
          "extra_instances_per_present_class": float((inst - cls).sum() / max(cls.sum(), 1)),
          "instance_size_quantiles": dict(zip(
              map(str, SIZE_QUANTILES), np.quantile(sizes, SIZE_QUANTILES).tolist())),
          "instance_size_bins": {"<1%": float(np.mean(sizes < 0.01)),
                                 "1-10%": float(np.mean((sizes >= 0.01) & (sizes < 0.1))),
                                 ">=10%": float(np.mean(sizes >= 0.1))},
      })
    if self.clicks[0]:
      out.update({
          "main_clicks_per_image": float(self.clicks[0] / self.n),
          "main_clicks_on_their_class": float(self.clicks[1] / self.clicks[0]),
          "main_clicks_on_void": float(self.clicks[2] / self.clicks[0]),
          "present_classes_with_a_1point_click": float(
              self.first_clicks[1] / max(self.first_clicks[0], 1)),
      })
    if self.obj_auc_per_image:
      out.update({
          "objectness_auc_pooled": auc_from_histograms(self.obj_pos, self.obj_neg),
          "objectness_auc_per_image_mean": float(np.mean(self.obj_auc_per_image)),
          "objectness_auc_per_image_quantiles": dict(zip(
              ("0.1", "0.5", "0.9"),
              np.quantile(self.obj_auc_per_image, (0.1, 0.5, 0.9)).tolist())),
      })
    return out


def lookup_accuracy(fit: np.ndarray, test: np.ndarray) -> float:
  """Pixel accuracy on `test` of the per-bin majority label of `fit` (both [bins, labels])."""
  pred = fit.argmax(1)
  return float(test[np.arange(len(test)), pred].sum() / max(test.sum(), 1))


def colour_baseline(fit: Accumulator, test: Accumulator) -> dict:
  """How far one pixel's colour goes: a lookup table colour -> label fitted on `fit` and scored on
  `test`, for the 21 labels, for the 20 object classes (object pixels only) and for object vs
  background, next to always answering 'background'."""
  a, b = fit.colour, test.colour
  fg_bg = lambda c: np.stack([c[:, 0], c[:, 1:].sum(1)], 1)  # noqa: E731
  return {
      "colour_lookup_21way": lookup_accuracy(a, b),
      "colour_lookup_always_background": float(b[:, 0].sum() / max(b.sum(), 1)),
      "colour_lookup_20way_object_pixels": lookup_accuracy(a[:, 1:], b[:, 1:]),
      "colour_lookup_object_vs_background": lookup_accuracy(fg_bg(a), fg_bg(b)),
  }


# --------------------------------------------------------------------------------------------------
# Sources.


def from_dataset(dataset: str, split: str, data_dir: str | None, limit: int | None) -> Accumulator:
  # Imported here: --scenes and --voc_samples run without TensorFlow.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = prepare(dataset, data_dir)
  ds = builder.as_dataset(split=split if limit is None else f"{split}[:{limit}]")
  acc = Accumulator()
  for ex in tfds.as_numpy(ds):
    acc.add(ex["mask"], ex["instance_mask"] if ex["has_instances"] else None,
            ex["objectness"] if ex["has_objectness"] else None, ex["image"], ex["clicks"])
  return acc


def from_scenes(num: int, max_side: int, seed: int) -> Accumulator:
  # Imported here: the builder module imports TensorFlow Datasets, which --scenes does not need.
  from pointseg_jax.data.synthetic_points import synthetic_points as sp  # pylint: disable=g-import-not-at-top

  acc = Accumulator()
  for index in range(num):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, index]).spawn(3)[0])
    scene = scenes.render_scene(rng, *sp.image_size(rng, max_side))
    acc.add(scene["mask"], scene["instance_mask"], image=scene["image"])
  return acc


def from_voc_samples(folder: str, with_objectness: bool) -> Accumulator:
  """`<n>_target.png` masks in the VOC palette (+ `<n>_image.png` photos for objectness)."""
  targets = sorted(glob.glob(os.path.join(folder, "*_target.png")))
  if not targets:
    raise errors.MissingInputError(f"no *_target.png in {folder!r} (expected VOC masks in the VOC "
                                   "palette)")
  acc = Accumulator()
  for path in targets:
    mask = labels.read_label_png(path)
    heat = None
    if with_objectness:
      image = np.asarray(Image.open(path.replace("_target.png", "_image.png")).convert("RGB"))
      heat = objectness.heatmap(image, rng=0)
    acc.add(mask, None, heat)
  return acc


# --------------------------------------------------------------------------------------------------
# Report.


def _fmt(value) -> str:
  if isinstance(value, float):
    return f"{value:.3f}"
  return str(value)


def markdown_table(columns: dict[str, dict]) -> str:
  """Rows = statistics, columns = sources; nested dicts become one row per key."""
  rows = []
  for summary in columns.values():
    for key, value in summary.items():
      names = [f"{key} {k}" for k in value] if isinstance(value, dict) else [key]
      rows.extend(n for n in names if n not in rows)
  lines = ["| statistic | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
  for row in rows:
    cells = []
    for summary in columns.values():
      key, _, sub = row.partition(" ")
      value = summary.get(key) if not sub else (summary.get(key) or {}).get(sub)
      if value is None and row in summary:
        value = summary[row]
      cells.append("–" if value is None else _fmt(value))
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("dataset", None, "e.g. synthetic_points/default.", **fv)
  flags.DEFINE_string("split", "train", "Split of --dataset.", **fv)
  flags.DEFINE_string("data_dir", None, "TFDS data dir.", **fv)
  flags.DEFINE_integer("limit", None, "First N examples of the split.", lower_bound=1, **fv)
  flags.DEFINE_bool("colour_baseline", False, "Also fit a colour -> label lookup on the train "
                    "split and score it on --split.", **fv)
  flags.DEFINE_integer("scenes", 0, "Also N scenes straight from the generator.", lower_bound=0,
                       **fv)
  flags.DEFINE_integer("max_side", 128, "Long side of the --scenes images.", lower_bound=1, **fv)
  flags.DEFINE_integer("seed", 0, "Seed of the --scenes.", **fv)
  flags.DEFINE_string("voc_samples", None, "Folder of VOC *_target.png masks.", **fv)
  flags.DEFINE_bool("voc_objectness", False, "Also score our objectness maps on the VOC sample "
                    "photos.", **fv)
  flags.DEFINE_string("json", None, "Write the numbers here.", **fv)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not (FLAGS.dataset or FLAGS.scenes or FLAGS.voc_samples):
    raise app.UsageError("give at least one of --dataset, --scenes, --voc_samples")
  columns = {}
  if FLAGS.dataset:
    acc = from_dataset(FLAGS.dataset, FLAGS.split, FLAGS.data_dir, FLAGS.limit)
    summary = acc.summary()
    if FLAGS.colour_baseline:
      fit = acc if FLAGS.split == "train" else from_dataset(FLAGS.dataset, "train", FLAGS.data_dir,
                                                            FLAGS.limit)
      summary.update(colour_baseline(fit, acc))
    columns[f"{FLAGS.dataset} {FLAGS.split}"] = summary
  if FLAGS.scenes:
    columns[f"scenes ({FLAGS.scenes}, {FLAGS.max_side}px)"] = from_scenes(
        FLAGS.scenes, FLAGS.max_side, FLAGS.seed).summary()
  if FLAGS.voc_samples:
    columns["VOC12 val samples"] = from_voc_samples(FLAGS.voc_samples,
                                                    FLAGS.voc_objectness).summary()
  print(markdown_table(columns))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(columns, f, indent=1)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
