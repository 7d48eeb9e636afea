"""A fabricated VOC2012 + SBD + click-JSON tree (a few images) for the builder and converter tests."""
import json

import numpy as np
import scipy.io
from PIL import Image

from pointseg_jax import labels
from pointseg_jax.data.voc2012_points import voc2012_points as vp

VOC_TRAIN = ["2007_000001", "2007_000002"]
VOC_VAL = ["2007_000003", "2008_000004"]
SBD_TRAIN = ["2007_000002", "2009_000005"]           # 2007_000002 also has VOC masks: VOC wins
SBD_VAL = ["2008_000004", "2010_000006"]             # 2008_000004 is VOC val: not in train
ALL_IDS = sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL))
SBD_ONLY = ["2009_000005", "2010_000006"]
NOT_IN_JSON = "2010_000006"
WITH_OBJECTNESS = "2007_000001"
H, W = 40, 56


def objects(rng, void: bool):
  """Two ellipses of different classes; VOC-style 1-px 255 bands when `void`."""
  yy, xx = np.mgrid[:H, :W]
  mask = np.zeros((H, W), np.uint8)
  inst = np.zeros((H, W), np.uint8)
  for i, (cls, cy, cx) in enumerate([(int(rng.integers(1, 11)), 12, 15),
                                     (int(rng.integers(11, 21)), 27, 38)], start=1):
    region = ((yy - cy) / 9.0) ** 2 + ((xx - cx) / 11.0) ** 2 <= 1
    mask[region], inst[region] = cls, i
  if void:
    edge = np.zeros((H, W), bool)
    for i in (1, 2):
      r = inst == i
      edge |= np.pad(r, 1)[2:, 1:-1] ^ r | np.pad(r, 1)[1:-1, 2:] ^ r
    mask[edge], inst[edge] = 255, 255
  return mask, inst


def palette_png(path, ids):
  """Like `labels.write_label_png`, but writes any ids (the bad-input tests need class 30)."""
  im = Image.fromarray(ids)
  im.putpalette(labels.voc_palette().ravel().tolist())
  im.save(path)


def make_tree(root):
  """Writes the fabricated manual_dir; returns {id: (class mask, instance mask)} as stored."""
  rng = np.random.default_rng(0)
  voc = root / "VOCdevkit" / "VOC2012"
  sbd = root / "benchmark_RELEASE" / "dataset"
  for d in (voc / "JPEGImages", voc / "SegmentationClass", voc / "SegmentationObject",
            voc / "ImageSets" / "Segmentation", sbd / "img", sbd / "cls", sbd / "inst",
            root / "objectness"):
    d.mkdir(parents=True, exist_ok=True)
  (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
  (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
  (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
  (sbd / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
  truth = {}
  for image_id in ALL_IDS:
    photo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(photo).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
    if image_id in SBD_TRAIN + SBD_VAL:
      mask, inst = objects(rng, void=False)
      scipy.io.savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": {
          "Segmentation": mask, "CategoriesPresent": np.unique(mask[mask > 0])}})
      scipy.io.savemat(sbd / "inst" / f"{image_id}.mat", {"GTinst": {
          "Segmentation": inst, "Categories": np.unique(mask[mask > 0])}})
      truth[image_id] = (mask, inst)
    if image_id in VOC_TRAIN + VOC_VAL:
      mask, inst = objects(rng, void=True)
      palette_png(voc / "SegmentationClass" / f"{image_id}.png", mask)
      palette_png(voc / "SegmentationObject" / f"{image_id}.png", inst)
      truth[image_id] = (mask, inst)
  Image.fromarray(rng.integers(0, 256, (H, W), dtype=np.uint8), mode="L").save(
      root / "objectness" / f"{WITH_OBJECTNESS}.png")
  main, supp = {}, {}
  for image_id in ALL_IDS:
    if image_id == NOT_IN_JSON:
      continue
    mask, _ = truth[image_id]
    cls = [int(c) for c in np.unique(mask) if 1 <= c <= 20]
    main[image_id] = [{"x": 10.25 + k, "y": 20.75, "cls": c, "rank": 1} for k, c in enumerate(cls)]
    supp[image_id] = [{"x": 5.5, "y": 6.125, "cls": c, "rank": 1} for c in cls for _ in range(2)]
  main["2007_000001"].append({"x": 71.5, "y": 3.0, "cls": main["2007_000001"][0]["cls"], "rank": 2})
  supp["2007_000003"][0]["x"] = -12.0
  main["2012_999999"] = []                   # a key no split uses, as in the released file
  (root / vp.MAIN_JSON).write_text(json.dumps(main))
  (root / vp.SUPP_JSON).write_text(json.dumps(supp))
  return truth, main, supp
