"""`custom_points`: your own images and clicks (plus masks for a few of them) as a click dataset.

manual_dir layout (docs/data_custom.md):
  images/<id>.jpg|png|...   the photos; an image's id is its file name without extension
  clicks.json               click JSON (docs/clicks.md): what `annotate export` and `data.convert` write
  masks/<id>.png            optional ground truth: class ids 0..20, 255 = void (VOC palette PNG,
                            grayscale index PNG, or an RGB rendering in the VOC colours)
  instances/<id>.png        optional instance ids for a masked image (0 = none, 255 = void)
  splits/train.txt, splits/val.txt   optional, one id per line
  objectness/<id>.png       optional objectness maps; missing ones are computed at build time
                            (config `default`) and written here, or left out (`no_objectness`)

Splits: by default the images with a mask are val (evaluation needs ground truth) and the others
train. A split file replaces that rule for its split. Train images are supervised by their clicks:
an image without a mask and without an entry in clicks.json was not annotated and is dropped
(counted, logged); an entry with an empty list means "annotated, no class present" and is kept
(image label: background only). An entry {"asked": [...], "clicks": [...]} (docs/clicks.md) says
which classes were asked: the others are unknown for that image, never absent (feature `asked`;
all True for a plain list and for a masked image, whose mask answers every class). Image-level
labels (`classes`) come from the mask where there is one, else from the clicked classes. Random clicks, squiggles, boxes and background clicks are
simulated from the masks (seeded by the id), so they are empty for images without a mask; the
label kinds that need them are refused for such data (`CustomPoints.check_spec`).
Features: exactly `features.click_features('jpeg', asked=True)`. Classes: the 21 PASCAL VOC classes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from pointseg_jax import CLASS_NAMES
from pointseg_jax import labels
from pointseg_jax.data import click_json
from pointseg_jax.data import clicks as clicks_lib
from pointseg_jax.data import features
from pointseg_jax.data.prepare import NoStdoutBanner
from pointseg_jax.data.voc2012_points import voc2012_points as voc
from pointseg_jax.errors import ConfigError
from pointseg_jax.errors import DataError
from pointseg_jax.objectness import precompute

NAME = "custom_points"
IMAGES, CLICKS, MASKS, INSTANCES, SPLITS, OBJECTNESS = (
    "images", "clicks.json", "masks", "instances", "splits", "objectness")
# Label kinds whose supervision is simulated from masks: nothing to train on without a mask.
MASK_KINDS = ("random_points", "background_points", "squiggle", "box", "full")
CLASSES_HINT = (f"custom_points knows the 21 PASCAL VOC classes {list(CLASS_NAMES)} (ids 0..20, "
                "255 = void); map other label names with `data.convert --label_map`, see "
                "docs/data_custom.md, 'Classes'")
_LOG_IDS = 20


def _ids(x) -> str:
  x = sorted(x)
  return ", ".join(x[:_LOG_IDS]) + (" ..." if len(x) > _LOG_IDS else "")


# ----------------------------------------------------------------------------------------------
# The folder.


@dataclasses.dataclass
class Folder:
  """One manual_dir: its images, clicks, masks and splits, checked before any example is written."""
  root: str

  def path(self, *parts: str) -> str:
    return os.path.join(self.root, *parts)

  def check(self) -> None:
    if not os.path.isdir(self.path(IMAGES)):
      raise DataError(f"{self.path(IMAGES)}: folder not found; custom_points reads manual_dir/"
                      f"{IMAGES}/<id>.jpg|png and manual_dir/{CLICKS} (docs/data_custom.md)")
    if not os.path.isfile(self.path(CLICKS)):
      raise DataError(f"{self.path(CLICKS)}: click file not found; write it with `python -m "
                      "pointseg_jax.annotate export --output ...` or `python -m "
                      "pointseg_jax.data.convert --from labelstudio|cvat|labelme --output ...`")

  def images(self) -> dict[str, str]:
    """{id: path} of the images directly in images/ (two files with one id are a DataError)."""
    return {name: str(p) for name, p in precompute.list_images(self.path(IMAGES))}

  def pngs(self, sub: str) -> set[str]:
    d = self.path(sub)
    if not os.path.isdir(d):
      return set()
    return {os.path.splitext(f)[0] for f in os.listdir(d) if f.lower().endswith(".png")}

  def split_file(self, split: str) -> list[str] | None:
    path = self.path(SPLITS, f"{split}.txt")
    if not os.path.isfile(path):
      return None
    with open(path, encoding="utf-8") as f:
      return [line.strip() for line in f if line.strip()]

  def mask(self, image_id: str) -> tuple[np.ndarray, np.ndarray | None]:
    path = self.path(MASKS, image_id + ".png")
    try:
      mask = labels.read_label_png(path, what="class")
    except DataError as e:
      raise DataError(f"{e}. {CLASSES_HINT}") from e
    inst_path = self.path(INSTANCES, image_id + ".png")
    inst = None
    if os.path.isfile(inst_path):
      inst = labels.read_label_png(inst_path, what="instance")
      if inst.shape != mask.shape:
        raise DataError(f"{inst_path}: shape {inst.shape} differs from its mask {path} {mask.shape}")
    return mask, inst

  def fingerprint(self) -> str:
    """SHA-256 of what the dataset is built from: clicks, splits, masks and instance masks by
    content, images by name and size (objectness/ is left out: the build itself writes it)."""
    h = hashlib.sha256()
    for sub in (CLICKS, SPLITS, MASKS, INSTANCES, IMAGES):
      path = self.path(sub)
      files = ([path] if os.path.isfile(path) else
               sorted(os.path.join(path, f) for f in os.listdir(path)) if os.path.isdir(path) else [])
      for f in files:
        if not os.path.isfile(f):
          continue
        h.update(os.path.relpath(f, self.root).encode() + b"\0")
        if sub == IMAGES:
          h.update(str(os.path.getsize(f)).encode() + b"\0")
        else:
          with open(f, "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


@dataclasses.dataclass
class Plan:
  """Which ids go where, and what was left out (logged by `log`)."""
  splits: dict[str, list[str]]
  images: dict[str, str]
  masked: set[str]
  clicks: dict[str, dict[str, np.ndarray]]
  not_annotated: list[str]          # train images with neither clicks nor mask: dropped
  clicks_without_image: list[str]   # click JSON ids with no file in images/
  masks_without_image: list[str]
  unused: list[str]                 # in neither split file
  asked: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # click JSON "asked"

  def log(self, root: str) -> None:
    if self.not_annotated:
      logging.warning("custom_points: %d images have no entry in %s and no mask: not annotated, "
                      "left out of train: %s", len(self.not_annotated), CLICKS,
                      _ids(self.not_annotated))
    if self.clicks_without_image:
      logging.warning("custom_points: %s names %d images that are not in %s (their clicks are "
                      "dropped): %s", os.path.join(root, CLICKS), len(self.clicks_without_image),
                      os.path.join(root, IMAGES), _ids(self.clicks_without_image))
    if self.masks_without_image:
      logging.warning("custom_points: %d masks have no image (ignored): %s",
                      len(self.masks_without_image), _ids(self.masks_without_image))
    if self.unused:
      logging.warning("custom_points: %d images are in neither %s/train.txt nor val.txt (unused): "
                      "%s", len(self.unused), SPLITS, _ids(self.unused))
    partial = [i for i in self.splits["train"] if i not in self.masked and i in self.asked
               and not self.asked[i].all()]
    if partial:
      logging.info("custom_points: %d train images were asked about some classes only (the others "
                   "are unknown for them, not absent): %s", len(partial), _ids(partial))


def plan(folder: Folder) -> Plan:
  """Reads the listing, click JSON and split files; every rule of the module docstring."""
  folder.check()
  images = folder.images()
  json_clicks = click_json.load_clicks(folder.path(CLICKS))
  asked = click_json.load_asked(folder.path(CLICKS))
  masks = folder.pngs(MASKS)
  masked = masks & set(images)
  clicks_without_image = sorted(set(json_clicks) - set(images))
  if json_clicks and len(clicks_without_image) == len(json_clicks):
    raise DataError(f"{folder.path(CLICKS)}: none of its {len(json_clicks)} image ids (e.g. "
                    f"{clicks_without_image[0]!r}) is an image in {folder.path(IMAGES)}; an id is "
                    "the image's file name without extension")
  listed = {s: folder.split_file(s) for s in ("train", "val")}
  for split, ids in listed.items():
    if ids is None:
      continue
    where = folder.path(SPLITS, f"{split}.txt")
    missing = [i for i in ids if i not in images]
    if missing:
      raise DataError(f"{where}: ids without an image in {folder.path(IMAGES)}: {missing[:10]}; "
                      "list file names without extension")
    if len(set(ids)) != len(ids):
      raise DataError(f"{where}: ids listed twice: {sorted({i for i in ids if ids.count(i) > 1})[:10]}")
  if listed["train"] is not None and listed["val"] is not None:
    both = sorted(set(listed["train"]) & set(listed["val"]))
    if both:
      raise DataError(f"{folder.path(SPLITS)}: ids in both train.txt and val.txt: {both[:10]}")
  val = (listed["val"] if listed["val"] is not None
         else sorted(masked - set(listed["train"] or ())))
  train = (listed["train"] if listed["train"] is not None else sorted(set(images) - set(val)))
  unused = sorted(set(images) - set(train) - set(val))
  no_mask = [i for i in val if i not in masked]
  if no_mask:
    raise DataError(f"val images without a mask in {folder.path(MASKS)}: {no_mask[:10]}; evaluation "
                    f"needs ground truth: add masks/<id>.png or move them to {SPLITS}/train.txt")
  not_annotated = [i for i in train if i not in masked and i not in json_clicks]
  train = [i for i in train if i in masked or i in json_clicks]
  if not train:
    raise DataError(f"{folder.root}: no train image has clicks in {CLICKS} (or a mask); export "
                    "the clicks of the images in images/ into it")
  if not val:
    raise DataError(f"{folder.root}: the val split is empty: training evaluates on val, which needs "
                    f"ground truth; give a few images (e.g. 20+) a mask {MASKS}/<id>.png (class ids "
                    "0..20, 255 = void; docs/data_custom.md)")
  return Plan({"train": train, "val": val}, images, masked, json_clicks, not_annotated,
              clicks_without_image, sorted(masks - set(images)), unused, asked)


@dataclasses.dataclass
class Counts:
  """What the builder changed or dropped while writing one split: logged, never silent."""
  clipped: dict = dataclasses.field(default_factory=dict)       # id -> clicks moved into the image
  dropped: dict = dataclasses.field(default_factory=dict)       # id -> negative clicks dropped
  unreadable: dict = dataclasses.field(default_factory=dict)    # id -> error: image left out
  converted: list = dataclasses.field(default_factory=list)     # non-RGB-JPEG images re-encoded
  masked_without_clicks: list = dataclasses.field(default_factory=list)

  def log(self, split: str) -> None:
    if self.clipped:
      logging.warning("custom_points/%s: %d out-of-range clicks clipped into the image in %d "
                      "images: %s", split, sum(self.clipped.values()), len(self.clipped),
                      _ids(self.clipped))
    if self.dropped:
      logging.warning("custom_points/%s: %d clicks with negative coordinates dropped in %d images: "
                      "%s", split, sum(self.dropped.values()), len(self.dropped), _ids(self.dropped))
    for image_id, err in sorted(self.unreadable.items()):
      logging.warning("custom_points/%s: left out %s: %s", split, image_id, err)
    if self.unreadable:
      logging.warning("custom_points/%s: %d unreadable images left out", split, len(self.unreadable))
    if self.converted:
      logging.info("custom_points/%s: %d images were not RGB JPEGs and were re-encoded: %s",
                   split, len(self.converted), _ids(self.converted))
    if self.masked_without_clicks and split == "train":
      logging.warning("custom_points/train: %d images with a mask have no clicks (kept: their "
                      "mask-derived supervision): %s", len(self.masked_without_clicks),
                      _ids(self.masked_without_clicks))


def make_example(folder: Folder, p: Plan, image_id: str, counts: Counts) -> dict | None:
  """One example of `features.click_features('jpeg', asked=True)`, or None for an unreadable image."""
  try:
    image, h, w, converted = voc.read_image(p.images[image_id])
  except DataError as e:
    counts.unreadable[image_id] = str(e)
    return None
  if converted:
    counts.converted.append(image_id)
  if image_id in p.masked:
    mask, inst = folder.mask(image_id)
    if mask.shape != (h, w):
      raise DataError(f"{folder.path(MASKS, image_id + '.png')}: mask shape {mask.shape} differs "
                      f"from its image {p.images[image_id]} ({h}, {w}); draw the mask at the "
                      "image's size")
  else:   # no ground truth: all void, no instances (features.py)
    mask, inst = np.full((h, w), 255, np.uint8), None
  sim = clicks_lib.simulate_annotations(mask, inst, np.random.default_rng(voc.id_seed(image_id, NAME)))
  if image_id in p.clicks:
    sim["clicks"] = voc.fit_clicks(p.clicks[image_id], image_id, h, w, counts)
  else:
    counts.masked_without_clicks.append(image_id)
    sim["clicks"] = click_json.empty_clicks()
  classes = (clicks_lib.present_classes(mask) if image_id in p.masked
             else sorted({int(c) for c in sim["clicks"]["cls"]}))
  asked = voc.ALL_ASKED if image_id in p.masked else p.asked.get(image_id, voc.ALL_ASKED)
  return voc.example_dict(image_id, image, mask, inst, classes, voc.read_objectness(
      folder.path(OBJECTNESS, image_id + ".png"), h, w), sim, asked)


# ----------------------------------------------------------------------------------------------
# The builder.


@dataclasses.dataclass
class CustomPointsConfig(tfds.core.BuilderConfig):
  objectness: bool = True    # compute missing objectness maps at build time


class CustomPoints(NoStdoutBanner, tfds.core.GeneratorBasedBuilder):
  """Your own images with clicks (click JSON), masks for the val images."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "images/, clicks.json, optional masks/, instances/, splits/, "
                            "objectness/.",
                   "1.1.0": "`asked` bool[21] per example from clicks.json's \"asked\" (a class "
                            "not asked is unknown, never absent; docs/clicks.md)."}
  BUILDER_CONFIGS = [
      CustomPointsConfig(name="default", description="Missing objectness maps are computed "
                         "(pointseg_jax.objectness) and written to manual_dir/objectness/."),
      CustomPointsConfig(name="no_objectness", objectness=False, description="Objectness maps "
                         "only where manual_dir/objectness/<id>.png exists (else zeros)."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  manual_dir is your own folder (docs/data_custom.md):
    images/<id>.jpg|png       the images; id = file name without extension
    clicks.json               click JSON: `python -m pointseg_jax.annotate export` or
                              `python -m pointseg_jax.data.convert --from labelstudio|cvat|labelme`
    masks/<id>.png            ground truth for some images (default val split); VOC class ids
    instances/<id>.png        optional instance ids of masked images
    splits/{train,val}.txt    optional, one id per line (default: masked -> val, the rest -> train)
    objectness/<id>.png       optional; missing maps are computed (config `default`)
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return features.dataset_info(self, __doc__, metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    folder = Folder(os.fspath(dl_manager.manual_dir))
    p = plan(folder)
    p.log(folder.root)
    self.info.metadata.update({
        "manual_dir": os.path.abspath(folder.root),
        "fingerprint": folder.fingerprint(),
        "train_without_mask": sum(i not in p.masked for i in p.splits["train"]),
    })
    if self.builder_config.objectness:
      self._compute_objectness(folder, p.splits["train"] + p.splits["val"])
    return {split: self._generate_examples(folder, p, split) for split in p.splits}

  @staticmethod
  def _compute_objectness(folder: Folder, ids: list[str]) -> None:
    """The maps `objectness.precompute` would write (same seeds), for the ids used only."""
    out = folder.path(OBJECTNESS)
    todo = [i for i in ids if not os.path.isfile(os.path.join(out, i + ".png"))]
    if not todo:
      return
    logging.info("custom_points: computing %d objectness maps into %s (about 1 s per image and "
                 "core; config custom_points/no_objectness skips this)", len(todo), out)
    try:
      res = precompute.run(out, images=folder.path(IMAGES), names=todo)
    except PermissionError as e:
      raise DataError(f"{out}: cannot write objectness maps ({e}); make manual_dir writable, or "
                      "use dataset 'custom_points/no_objectness'") from e
    if res["failed"]:
      logging.warning("custom_points: %d objectness maps failed (stored without objectness): %s",
                      len(res["failed"]), _ids(res["failed"]))

  def _generate_examples(self, folder: Folder, p: Plan, split: str
                         ) -> Iterator[tuple[str, dict]]:
    counts = Counts()
    for image_id in p.splits[split]:
      example = make_example(folder, p, image_id, counts)
      if example is not None:
        yield image_id, example
    counts.log(split)

  # --- Hooks `prepare` calls --------------------------------------------------------------------

  def check_prepared_from(self, manual_dir: str) -> None:
    """A DataError when this prepared dataset was built from other files than `manual_dir` holds
    now (TFDS never rebuilds a prepared dataset; new clicks would be silently ignored)."""
    meta = self.info.metadata or {}
    now = Folder(manual_dir)
    if meta.get("fingerprint") == now.fingerprint():
      return
    raise DataError(
        f"{self.data_dir}: this custom_points dataset was built from {meta.get('manual_dir')}, and "
        f"{manual_dir} now holds other clicks, masks, splits or images; delete {self.data_dir} to "
        "rebuild it, or pass another data_dir (config.data.data_dir)")

  def check_spec(self, spec) -> None:
    """A ConfigError for a label kind that needs masks when train images have none."""
    n = (self.info.metadata or {}).get("train_without_mask", 0)
    if spec.label_kind in MASK_KINDS and n:
      raise ConfigError(
          f"config.data.label_kind = {spec.label_kind!r} trains on supervision simulated from "
          f"masks, and {n} train images of {self.info.full_name} have no mask; use a click regime "
          "(point, all_points, ...) or give every train image a mask (docs/data_custom.md)")

