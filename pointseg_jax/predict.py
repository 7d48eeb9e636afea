"""Predictions of a trained run: a notebook-callable API and the PNG panels of --mode=predict.

    from pointseg_jax import predict
    model = predict.load_model("runs/point")          # latest checkpoint + the run's config
    labels = model.predict(images)                    # [B, H, W] class ids from RGB 0..255 images
    for r in predict.predict_split(model, num_images=4): ...   # image, clicks, prediction, IoU
    scores = predict.score_split(model)               # whole split: confusion, per-image mIoU, worst
    paths = predict.write_predictions(model.config, "runs/point", num_images=8)

A panel is four tiles side by side: image | prediction | ground truth | supervision overlay (the
run's own labels -- clicks as dots ringed in white, or squiggles/boxes/masks as colour -- over a
grey image tinted red by the objectness prior). Colours are the VOC palette; void is cream.
"""
import heapq
import math
import pathlib
from typing import Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from PIL import ImageDraw

from pointseg_jax import IGNORE_INDEX
from pointseg_jax import errors
from pointseg_jax import files
from pointseg_jax import labels as labels_lib
from pointseg_jax import metrics as metrics_lib
from pointseg_jax import run_setup
from pointseg_jax import state as state_lib
from pointseg_jax import workdir as workdir_lib
from pointseg_jax.data import pipeline
from pointseg_jax.data import spec as spec_lib
from pointseg_jax.data.prepare import prepare_spec

CLICK_DOTS_MAX = 64   # at most this many labelled pixels per image are drawn as dots


class Predictor:
  """A trained FCN: `predict(images)` -> class ids, `probabilities(images)` -> softmax."""

  def __init__(self, config, model, params, step):
    self.config, self.model, self.params, self.step = config, model, params, step
    self._logits = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))

  def logits(self, images) -> np.ndarray:
    """float32 [B, H, W, C] for RGB 0..255 images [B, H, W, 3] (or one image [H, W, 3])."""
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
      images = images[None]
    return np.asarray(self._logits(self.params, jnp.asarray(images)))

  def probabilities(self, images) -> np.ndarray:
    return np.asarray(jax.nn.softmax(self.logits(images), axis=-1))

  def predict(self, images) -> np.ndarray:
    """int32 [B, H, W] predicted class per pixel."""
    return self.logits(images).argmax(-1).astype(np.int32)


def load_model(workdir, config=None, step=None) -> Predictor:
  """The run in workdir at its latest (or given) checkpoint, on the local devices.

  config=None: the run's own config.json; a config is checked against it first (its guarded
  fields must match, workdir.run_config)."""
  run = run_setup.open_run(config, workdir, mode="predict")
  step = state_lib.checkpoint_step(run.workdir, step)
  params, step = run.restore_params(step)
  return Predictor(run.config, run.model, params, step)


# ----------------------------------------------------------------------------------------------
# Pictures.
# ----------------------------------------------------------------------------------------------

def _valid_box(valid):
  rows, cols = np.nonzero(valid)
  if rows.size == 0:
    return slice(0, valid.shape[0]), slice(0, valid.shape[1])
  return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


def overlay(image, sparse_labels, objectness):
  """Grey image tinted red by objectness, with the supervision drawn on top (uint8 RGB)."""
  grey = image.astype(np.float32).mean(-1, keepdims=True) * np.ones(3, np.float32)
  tint = np.array([255.0, 40.0, 40.0])
  obj = np.clip(objectness, 0, 1)[..., None]
  out = (0.55 * grey + 0.45 * (obj * tint + (1 - obj) * grey)).clip(0, 255).astype(np.uint8)
  labelled = sparse_labels != IGNORE_INDEX
  ys, xs = np.nonzero(labelled)
  if 0 < ys.size <= CLICK_DOTS_MAX:     # clicks: dots big enough to see
    picture = Image.fromarray(out)
    draw = ImageDraw.Draw(picture)
    r = max(2, round(min(image.shape[:2]) / 40))
    for y, x in zip(ys, xs):
      colour = tuple(int(c) for c in labels_lib.colorize(sparse_labels[y, x]))
      draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(255, 255, 255),
                   width=max(1, r // 2))
    return np.asarray(picture)
  colours = labels_lib.colorize(np.where(labelled, sparse_labels, 0))
  out[labelled] = (0.3 * out[labelled] + 0.7 * colours[labelled]).astype(np.uint8)
  return out


def panel(image, pred, labels, sparse_labels, objectness, valid, gap=4) -> np.ndarray:
  """image | prediction | ground truth | supervision + objectness, cropped to the valid region."""
  ys, xs = _valid_box(valid)
  image = np.clip(image, 0, 255).astype(np.uint8)
  tiles = [image[ys, xs], labels_lib.colorize(pred)[ys, xs], labels_lib.colorize(labels)[ys, xs],
           overlay(image, sparse_labels, objectness)[ys, xs]]
  h = tiles[0].shape[0]
  spacer = np.full((h, gap, 3), 255, np.uint8)
  row = [tiles[0]]
  for tile in tiles[1:]:
    row += [spacer, tile]
  return np.concatenate(row, axis=1)


def inspection_tiles(result: "ImageResult") -> list[tuple[str, np.ndarray]]:
  """(name, picture) of one image for a notebook, cropped to its valid region: the image (uint8
  RGB), the run's supervision over the grey image, the objectness map (float [H, W] in [0, 1]),
  the prediction and the ground truth (VOC palette)."""
  ys, xs = _valid_box(result.valid)
  image = np.clip(result.image, 0, 255).astype(np.uint8)
  no_prior = np.zeros_like(result.objectness)
  return [("image", image[ys, xs]),
          ("supervision", overlay(image, result.sparse_labels, no_prior)[ys, xs]),
          ("objectness", np.clip(result.objectness, 0, 1)[ys, xs]),
          ("prediction", labels_lib.colorize(result.pred)[ys, xs]),
          ("ground truth", labels_lib.colorize(result.labels)[ys, xs])]


def _enlarge(picture, min_height=256):
  """Small panels (the synthetic set is 128 px) scaled up by an integer factor, pixels sharp."""
  factor = -(-min_height // picture.shape[0])
  if factor <= 1:
    return picture
  return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


# ----------------------------------------------------------------------------------------------
# A split, image by image.
# ----------------------------------------------------------------------------------------------

class ImageResult(NamedTuple):
  """One image of a split with the model's prediction, at the pipeline's padded size."""
  example_id: int
  image: np.ndarray          # float32 [H, W, 3], RGB 0..255
  labels: np.ndarray         # int32 [H, W] ground truth, 255 = void
  sparse_labels: np.ndarray  # int32 [H, W] the run's own supervision (clicks, ...), 255 = none
  objectness: np.ndarray     # float32 [H, W] in [0, 1]
  valid: np.ndarray          # bool [H, W], False = padding
  pred: np.ndarray           # int32 [H, W] predicted class
  confusion: np.ndarray      # int64 [C, C] of this image's valid, non-void pixels (rows = truth)

  @property
  def miou(self) -> float:
    """Mean IoU over the classes in this image's ground truth or prediction (NaN: no pixel)."""
    return metrics_lib.mean_iou(self.confusion)[0]


def predict_split(predictor: Predictor, split=None, num_images=None) -> Iterator[ImageResult]:
  """Each image of the split (config.predict.split by default), in the pipeline's fixed order,
  with its prediction and its own confusion matrix; stops after num_images when given."""
  config = predictor.config
  spec = spec_lib.DataSpec.from_config(config.data)
  prepare_spec(spec)
  batches = pipeline.make_dataset(spec, split or config.predict.split,
                                  batch_size=int(config.predict.batch_size), train=False,
                                  seed=config.seed, process_index=0, process_count=1)
  count = 0
  for batch in batches:
    pred = predictor.predict(batch["image"])
    for i in np.nonzero(batch["example_mask"])[0]:
      if num_images is not None and count >= num_images:
        return
      confusion = metrics_lib.confusion_matrix(
          pred[i], batch["labels"][i], config.model.num_classes, mask=batch["valid"][i])
      yield ImageResult(int(batch["example_id"][i]), batch["image"][i], batch["labels"][i],
                        batch["sparse_labels"][i], batch["objectness"][i], batch["valid"][i],
                        pred[i], np.asarray(confusion, np.int64))
      count += 1


class SplitScores(NamedTuple):
  """A whole split scored image by image (`score_split`)."""
  confusion: np.ndarray       # int64 [C, C] summed over every image: mIoU as evaluate.py gives it
  example_ids: np.ndarray     # int64 [N], in split order
  image_miou: np.ndarray      # float64 [N], each image's own mIoU (ImageResult.miou)
  first: list[ImageResult]    # the first `show` images
  worst: list[ImageResult]    # the `worst` images of lowest mIoU, lowest first


def score_split(predictor: Predictor, split=None, *, show=4, worst=4) -> SplitScores:
  """Every image of the split through the model; keeps the pixels of the first `show` and of the
  `worst` lowest-mIoU images only (a VOC val split would not fit in memory)."""
  confusion = np.zeros((predictor.config.model.num_classes,) * 2, np.int64)
  ids, mious, first, heap = [], [], [], []
  for n, result in enumerate(predict_split(predictor, split)):
    confusion += result.confusion
    miou = result.miou
    ids.append(result.example_id)
    mious.append(miou)
    if len(first) < show:
      first.append(result)
    if worst and not math.isnan(miou):
      # Keep the `worst` lowest: pop the highest mIoU (on ties the later image) past that many.
      heapq.heappush(heap, (-miou, -n, result))
      if len(heap) > worst:
        heapq.heappop(heap)
  worst_results = [r for _, _, r in sorted(heap, key=lambda e: (-e[0], -e[1]))]
  return SplitScores(confusion, np.array(ids, np.int64), np.array(mious, np.float64), first,
                     worst_results)


PANEL_GLOB = "[0-9][0-9][0-9]_id*.png"   # the names write_predictions gives its panels


def write_predictions(config, workdir, num_images=None, split=None,
                      step=None) -> list[pathlib.Path]:
  """PNG panels for the first num_images images of the split in workdir/predictions/.

  config=None: the run's own config.json. The panels of an earlier call (an older checkpoint) are
  removed first; predictions/predictions.json says which checkpoint and split the panels show.
  Runs on this host's first device; with several hosts only process 0 draws (the others return []).
  """
  if jax.process_index() != 0:
    return []
  predictor = load_model(workdir, config, step)
  config = predictor.config
  num_images = int(num_images or config.predict.num_images)
  if num_images < 1:
    raise errors.ConfigError(f"--num_images={num_images}: must be >= 1")
  split = split or config.predict.split
  out_dir = workdir_lib.resolve(workdir) / "predictions"
  paths = []
  for r in predict_split(predictor, split, num_images):
    if not paths:   # the data is ready: replace the panels of an earlier call
      out_dir.mkdir(parents=True, exist_ok=True)
      for old in out_dir.glob(PANEL_GLOB):
        old.unlink()
      files.write_json(out_dir / "predictions.json",
                       {"step": predictor.step, "split": split, "regime": config.regime,
                        "config_sha256": workdir_lib.config_sha256(config)})
    picture = panel(r.image, r.pred, r.labels, r.sparse_labels, r.objectness, r.valid)
    path = out_dir / f"{len(paths):03d}_id{r.example_id}.png"
    files.save_image(path, Image.fromarray(_enlarge(picture)))
    paths.append(path)
  return paths
