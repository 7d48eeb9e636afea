"""`voc2012_points`: PASCAL VOC 2012 + SBD with the paper's released crowd clicks, as TFDS.

Splits (the paper's protocol, docs/data_voc.md):
  train = VOC12 seg train ∪ SBD train ∪ SBD val − VOC12 seg val  (10,582 ids)
  val   = VOC12 seg val                                          (1,449 ids)
Per id the VOC12 masks (SegmentationClass / SegmentationObject palette PNGs, with 255 void bands)
are used when present, else SBD's `cls/<id>.mat` / `inst/<id>.mat` (no void).
Clicks come from the released JSONs (`click_json.load_clicks`: main -> annotator 0, supp -> 1, 2);
random clicks, squiggles, boxes and background clicks are simulated from the masks
(`clicks.simulate_annotations`) with an rng seeded from a SHA-256 of the id, so a rebuild writes the
same dataset. Features: exactly `features.click_features('jpeg', asked=True)`: `asked` is the click
file's "asked" classes (`click_json.load_asked`; all True for the released files and for an image
the files do not list, which is logged).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterator

from absl import logging
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from pointseg_jax import NUM_CLASSES
from pointseg_jax import image_io
from pointseg_jax import labels
from pointseg_jax.data import click_json
from pointseg_jax.data import clicks as clicks_lib
from pointseg_jax.data import features
from pointseg_jax.data.prepare import NoStdoutBanner
from pointseg_jax.errors import DataError

VOC_DIR = os.path.join("VOCdevkit", "VOC2012")
SBD_DIR = os.path.join("benchmark_RELEASE", "dataset")
MAIN_JSON = "pascal2012_trainval_main.json"
SUPP_JSON = "pascal2012_trainval_supp.json"
OBJECTNESS_DIR = "objectness"
# How many ids a log line names at most.
_LOG_IDS = 20


def id_seed(image_id: str, dataset: str = "voc2012_points") -> int:
  """Stable 64-bit seed of an image id (SHA-256; Python's hash() changes between runs)."""
  return int.from_bytes(hashlib.sha256(f"{dataset}/{image_id}".encode()).digest()[:8], "little")


# ----------------------------------------------------------------------------------------------
# Readers (each raises DataError naming the file).


def read_id_list(path: str) -> list[str]:
  if not os.path.isfile(path):
    raise DataError(f"{path}: id list not found; unpack the archive into manual_dir "
                    "(see Voc2012Points.MANUAL_DOWNLOAD_INSTRUCTIONS)")
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def read_image(path: str) -> tuple[object, int, int, bool]:
  """(value for the Image feature, height, width, converted): the JPEG path itself when it is an
  RGB JPEG (its bytes are stored unchanged), else an RGB array (grayscale / CMYK photos)."""
  if not os.path.isfile(path):
    raise DataError(f"{path}: image not found")
  with image_io.decoded(path, fix="re-extract it from the archive") as im:   # every pixel
    fmt, mode = im.format, im.mode
    arr = None if (fmt == "JPEG" and mode == "RGB") else np.asarray(im.convert("RGB"))
    w, h = im.size
  return (path if arr is None else arr), h, w, arr is not None


def _mat_field(path: str, var: str, field: str) -> np.ndarray:
  try:
    mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
  except Exception as e:  # scipy raises ValueError / TypeError / MatReadError on bad files.
    raise DataError(f"{path}: cannot read .mat file ({e}); re-extract SBD") from e
  if var not in mat or not hasattr(mat[var], field):
    raise DataError(f"{path}: expected a MATLAB struct {var!r} with field {field!r} (SBD format)")
  arr = np.asarray(getattr(mat[var], field))
  if arr.ndim != 2:
    raise DataError(f"{path}: {var}.{field} has shape {arr.shape}, expected [H, W]")
  return arr


def read_sbd_class(path: str) -> np.ndarray:
  """uint8 [H, W] class ids from SBD `cls/<id>.mat` (GTcls.Segmentation, 0..20)."""
  if not os.path.isfile(path):
    raise DataError(f"{path}: SBD class mask not found")
  arr = _mat_field(path, "GTcls", "Segmentation")
  labels.check_class_ids(arr, source=path)
  return arr.astype(np.uint8)


def read_sbd_instance(path: str) -> np.ndarray:
  """uint8 [H, W] instance ids from SBD `inst/<id>.mat` (GTinst.Segmentation, 0 = none)."""
  arr = _mat_field(path, "GTinst", "Segmentation")
  if arr.size and (arr.min() < 0 or arr.max() > 254):
    raise DataError(f"{path}: instance ids must be 0..254, got {arr.min()}..{arr.max()}")
  return arr.astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# The manual_dir layout.


@dataclasses.dataclass
class Sources:
  """Paths of one manual_dir, checked up front so a missing archive fails before any work."""
  root: str

  @property
  def voc(self) -> str:
    return os.path.join(self.root, VOC_DIR)

  @property
  def sbd(self) -> str:
    return os.path.join(self.root, SBD_DIR)

  def check(self) -> None:
    for d, archive in ((self.voc, "VOCtrainval_11-May-2012.tar"),
                       (self.sbd, "benchmark.tgz (SBD)")):
      if not os.path.isdir(d):
        raise DataError(f"{d}: directory not found; unpack {archive} into {self.root} "
                        "(see Voc2012Points.MANUAL_DOWNLOAD_INSTRUCTIONS)")

  def split_ids(self) -> dict[str, list[str]]:
    seg = os.path.join(self.voc, "ImageSets", "Segmentation")
    voc_train = read_id_list(os.path.join(seg, "train.txt"))
    voc_val = read_id_list(os.path.join(seg, "val.txt"))
    sbd = (read_id_list(os.path.join(self.sbd, "train.txt"))
           + read_id_list(os.path.join(self.sbd, "val.txt")))
    train = sorted((set(voc_train) | set(sbd)) - set(voc_val))
    return {"train": train, "val": sorted(set(voc_val))}

  def image_path(self, image_id: str) -> str:
    voc = os.path.join(self.voc, "JPEGImages", image_id + ".jpg")
    sbd = os.path.join(self.sbd, "img", image_id + ".jpg")
    return voc if os.path.isfile(voc) or not os.path.isfile(sbd) else sbd

  def masks(self, image_id: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(class mask, instance mask or None, source file): VOC12 PNGs first, else SBD .mat."""
    voc_cls = os.path.join(self.voc, "SegmentationClass", image_id + ".png")
    if os.path.isfile(voc_cls):
      mask = labels.read_label_png(voc_cls, what="class")
      voc_obj = os.path.join(self.voc, "SegmentationObject", image_id + ".png")
      inst = labels.read_label_png(voc_obj, what="instance") if os.path.isfile(voc_obj) else None
      _check_same_shape(mask, inst, voc_cls, voc_obj)
      return mask, inst, voc_cls
    sbd_cls = os.path.join(self.sbd, "cls", image_id + ".mat")
    if not os.path.isfile(sbd_cls):
      raise DataError(f"no mask for image {image_id!r}: neither {voc_cls} nor {sbd_cls} exists")
    mask = read_sbd_class(sbd_cls)
    sbd_inst = os.path.join(self.sbd, "inst", image_id + ".mat")
    inst = read_sbd_instance(sbd_inst) if os.path.isfile(sbd_inst) else None
    _check_same_shape(mask, inst, sbd_cls, sbd_inst)
    return mask, inst, sbd_cls

  def objectness_path(self, image_id: str) -> str:
    return os.path.join(self.root, OBJECTNESS_DIR, image_id + ".png")


def _check_same_shape(a: np.ndarray, b: np.ndarray | None, pa: str, pb: str) -> None:
  if b is not None and a.shape != b.shape:
    raise DataError(f"{pb}: shape {b.shape} differs from {pa} {a.shape}")


@dataclasses.dataclass
class Counts:
  """What the builder changed or could not find, per split: logged with the ids, never silent."""
  clipped: dict = dataclasses.field(default_factory=dict)       # id -> clicks moved into the image
  dropped: dict = dataclasses.field(default_factory=dict)       # id -> negative clicks dropped
  missing_clicks: list = dataclasses.field(default_factory=list)  # ids absent from the JSONs
  converted: list = dataclasses.field(default_factory=list)     # non-RGB-JPEG photos re-encoded

  def log(self, split: str) -> None:
    def ids(x):
      x = sorted(x)
      return ", ".join(x[:_LOG_IDS]) + (" ..." if len(x) > _LOG_IDS else "")
    if self.clipped:
      logging.warning("voc2012_points/%s: %d out-of-range clicks clipped into the image in %d images: %s",
                  split, sum(self.clipped.values()), len(self.clipped), ids(self.clipped))
    if self.dropped:
      logging.warning("voc2012_points/%s: %d clicks with negative coordinates dropped in %d images: %s",
                  split, sum(self.dropped.values()), len(self.dropped), ids(self.dropped))
    if self.missing_clicks:
      logging.warning("voc2012_points/%s: %d images have no entry in the click JSON (stored with no "
                  "clicks): %s", split, len(self.missing_clicks), ids(self.missing_clicks))
    if self.converted:
      logging.warning("voc2012_points/%s: %d photos were not RGB JPEGs and were re-encoded: %s",
                  split, len(self.converted), ids(self.converted))


def fit_clicks(clicks: dict, image_id: str, height: int, width: int, counts) -> dict:
  """An image's clicks fitted into it (`click_json.clip_clicks`), counted in `counts.clipped` /
  `counts.dropped` for the log; the `clicks` feature."""
  fitted, n_clip, n_drop = click_json.clip_clicks(clicks, height, width)
  if n_clip:
    counts.clipped[image_id] = n_clip
  if n_drop:
    counts.dropped[image_id] = n_drop
  return {k: fitted[k] for k in click_json.CLICK_FIELDS}


def read_objectness(path: str, height: int, width: int) -> tuple[np.ndarray, bool]:
  """(objectness o [H, W], has_objectness): the map at `path`, or zeros when there is none."""
  if not os.path.isfile(path):
    return np.zeros((height, width), np.uint8), False
  objectness = labels.read_objectness_png(path)
  if objectness.shape != (height, width):
    raise DataError(f"{path}: objectness shape {objectness.shape} differs from the image "
                    f"({height}, {width}); delete it and compute it again")
  return objectness, True


ALL_ASKED = np.ones(NUM_CLASSES, bool)


def example_dict(image_id: str, image, mask: np.ndarray, inst: np.ndarray | None, classes,
                 objectness: tuple[np.ndarray, bool], supervision: dict,
                 asked: np.ndarray = ALL_ASKED) -> dict:
  """The `features.click_features(asked=True)` example; no instance mask -> all 0,
  `has_instances` False; `asked` bool [21], background always True."""
  return {
      "id": image_id,
      "asked": np.asarray(asked, bool) | (np.arange(NUM_CLASSES) == 0),
      "image": image,
      "mask": mask[..., None],
      "instance_mask": (inst if inst is not None else np.zeros_like(mask))[..., None],
      "has_instances": inst is not None,
      "classes": classes,
      "objectness": objectness[0][..., None],
      "has_objectness": objectness[1],
      **supervision,
  }


def make_example(src: Sources, image_id: str, json_clicks: dict | None, counts: Counts,
                 asked: dict | None = None) -> dict:
  """One example of `features.click_features('jpeg', asked=True)` for `image_id`; `asked` is
  `click_json.load_asked` of the click files (an image it lacks had every class asked)."""
  image, h, w, converted = read_image(src.image_path(image_id))
  if converted:
    counts.converted.append(image_id)
  mask, inst, mask_path = src.masks(image_id)
  if mask.shape != (h, w):
    raise DataError(f"{mask_path}: mask shape {mask.shape} differs from its image "
                    f"{src.image_path(image_id)} ({h}, {w})")
  sim = clicks_lib.simulate_annotations(mask, inst, np.random.default_rng(id_seed(image_id)))
  if json_clicks is not None:
    if image_id in json_clicks:
      sim["clicks"] = fit_clicks(json_clicks[image_id], image_id, h, w, counts)
    else:
      counts.missing_clicks.append(image_id)
      sim["clicks"] = click_json.empty_clicks()
  return example_dict(image_id, image, mask, inst, clicks_lib.present_classes(mask),
                      read_objectness(src.objectness_path(image_id), h, w), sim,
                      (asked or {}).get(image_id, ALL_ASKED))


class Voc2012Points(NoStdoutBanner, tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC 2012 + SBD segmentation with the released What's-the-Point crowd clicks."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "VOC12 + SBD (10,582 train / 1,449 val), released clicks, simulated "
                            "random clicks / squiggles / boxes / background clicks.",
                   "1.1.0": "`asked` bool[21] per example: the classes the click file asked about "
                            "(a class not asked is unknown, never absent; docs/clicks.md)."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the public archives and unpack them side by side into manual_dir:
    VOCtrainval_11-May-2012.tar   http://host.robots.ox.ac.uk/pascal/VOC/voc2012/
    benchmark.tgz (SBD)           http://home.bharathh.info/pubs/codes/SBD/download.html
    pascal2012_trainval_main.json, pascal2012_trainval_supp.json
                                  the released clicks, http://vision.stanford.edu/whats_the_point/
  so that manual_dir holds
    VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,SegmentationObject,ImageSets/Segmentation}
    benchmark_RELEASE/dataset/{img,cls,inst,train.txt,val.txt}
    pascal2012_trainval_main.json
    pascal2012_trainval_supp.json
    objectness/<id>.png          (optional: grayscale objectness maps, e.g. from
                                  `pointseg_jax.objectness`; zeros + has_objectness=False otherwise)
  Without the two JSON files the clicks are simulated from the masks (clicks.simulate_annotations).
  Build: python -m pointseg_jax.data.voc2012_points --manual_dir=DIR [--data_dir=DIR]
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return features.dataset_info(self, __doc__)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    src = Sources(os.fspath(dl_manager.manual_dir))
    src.check()
    ids = src.split_ids()
    main, supp = (os.path.join(src.root, n) for n in (MAIN_JSON, SUPP_JSON))
    have = [os.path.isfile(main), os.path.isfile(supp)]
    if any(have):
      paths = (main if have[0] else None, supp if have[1] else None)
      json_clicks, asked = click_json.load_clicks(*paths), click_json.load_asked(*paths)
      if not all(have):
        logging.warning("voc2012_points: only %s found: clicks of the other annotators are absent",
                    main if have[0] else supp)
    else:
      json_clicks, asked = None, None
      logging.warning("voc2012_points: %s and %s not found in %s: clicks are simulated from the masks",
                  MAIN_JSON, SUPP_JSON, src.root)
    return {split: self._generate_examples(src, split, split_ids, json_clicks, asked)
            for split, split_ids in ids.items()}

  def _generate_examples(self, src: Sources, split: str, ids: list[str],
                         json_clicks: dict | None, asked: dict | None
                         ) -> Iterator[tuple[str, dict]]:
    counts = Counts()
    for image_id in ids:
      yield image_id, make_example(src, image_id, json_clicks, counts, asked)
    counts.log(split)
