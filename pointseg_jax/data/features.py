"""The one TFDS feature spec shared by every click dataset (voc2012_points, synthetic_points).

Both builders write exactly these features, so `pipeline.py` reads any of them the same way.
Annotations are stored the way VOC/SBD and the released click JSON hold them: dense class mask,
instance mask, and supervision as exact float coordinate lists (rasterised only after augmentation,
so no click is lost to resampling: docs/batch_dict.md). Coordinates are zero-indexed pixels:
x = column, y = row.
"""
import numpy as np
import tensorflow_datasets as tfds

from pointseg_jax import CLASS_NAMES

# What both builders cite: the paper whose protocol and clicks they follow.
CITATION = """@inproceedings{bearman2016whats,
  title={What's the Point: Semantic Segmentation with Point Supervision},
  author={Bearman, Amy and Russakovsky, Olga and Ferrari, Vittorio and Fei-Fei, Li},
  booktitle={ECCV}, year={2016}}"""

# `clicks.annotator`: who made the click. 0 = main worker (every instance, ranked by the worker: the
# released `pascal2012_trainval_main.json`); 1, 2 = the two supplementary workers
# (`..._supp.json`, 3-annotator runs). Random points and background clicks are kept apart, below.
MAIN_ANNOTATOR = 0


def _points(**extra):
  return tfds.features.Sequence({
      "y": tfds.features.Tensor(shape=(), dtype=np.float32),
      "x": tfds.features.Tensor(shape=(), dtype=np.float32),
      "cls": tfds.features.Tensor(shape=(), dtype=np.int32),
      **{k: tfds.features.Tensor(shape=(), dtype=np.int32) for k in extra},
  })


def click_features(image_encoding: str = "jpeg", *, asked: bool = False
                   ) -> tfds.features.FeaturesDict:
  """FeaturesDict of one example. `image_encoding` is 'jpeg' (VOC photos) or 'png' (synthetic).

  asked=True adds `asked` (builders of human clicks: a class not asked is unknown, never absent);
  a dataset without it (synthetic: every class answered by its masks) reads as all asked.
  """
  extra = {}
  if asked:
    # bool [21]: the classes the image's annotators were asked about (click JSON "asked"; all True
    # for the released format and for masked images). [0] is always True. The pipeline turns it
    # into `known` (docs/batch_dict.md): the image-level loss neither rewards nor punishes an
    # unknown class.
    extra["asked"] = tfds.features.Tensor(shape=(len(CLASS_NAMES),), dtype=np.bool_)
  return tfds.features.FeaturesDict({
      **extra,
      "id": tfds.features.Text(),
      "image": tfds.features.Image(shape=(None, None, 3), encoding_format=image_encoding),
      # Class id per pixel, 255 = void (object boundaries / unlabelled).
      "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
      # Instance id per pixel (1..n), 0 = no instance, 255 = void; all 0 when `has_instances` is False.
      "instance_mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
      "has_instances": tfds.features.Tensor(shape=(), dtype=np.bool_),
      # Image-level labels: sorted object classes present (1..20; background implied).
      "classes": tfds.features.Sequence(tfds.features.ClassLabel(names=CLASS_NAMES)),
      # Human-style clicks; rank = the worker's n-th click for that class (1 = first).
      "clicks": _points(rank=True, annotator=True),
      # One click per class present, uniform inside the class's ground-truth pixels (authors' script).
      "random_clicks": _points(),
      # Background clicks (TEL/SASFormer-style protocol): cls is always 0.
      "background_clicks": _points(),
      # Squiggles as polylines: consecutive points of the same `stroke` are joined, then rasterised
      # with a radius chosen at training time (r = 2, 5, 25).
      "squiggles": _points(stroke=True),
      # Boxes in pixel coordinates, one per instance.
      "boxes": tfds.features.Sequence({
          "ymin": tfds.features.Tensor(shape=(), dtype=np.float32),
          "xmin": tfds.features.Tensor(shape=(), dtype=np.float32),
          "ymax": tfds.features.Tensor(shape=(), dtype=np.float32),
          "xmax": tfds.features.Tensor(shape=(), dtype=np.float32),
          "cls": tfds.features.Tensor(shape=(), dtype=np.int32),
      }),
      # Objectness prior o in 0..255 (P = (o+1)/257); all 0 when `has_objectness` is False.
      "objectness": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
      "has_objectness": tfds.features.Tensor(shape=(), dtype=np.bool_),
  })


def dataset_info(builder, description: str, **kwargs) -> tfds.core.DatasetInfo:
  """The DatasetInfo every click-dataset builder of human clicks returns: the shared features
  (JPEG images, with `asked`) and the paper's homepage and citation."""
  return tfds.core.DatasetInfo(builder=builder, description=description,
                               features=click_features("jpeg", asked=True),
                               homepage="http://vision.stanford.edu/whats_the_point/",
                               citation=CITATION, **kwargs)
