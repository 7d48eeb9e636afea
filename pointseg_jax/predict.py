"""Predictions of a trained run: a notebook-callable API and the PNG panels of --mode=predict.

    from pointseg_jax import predict
    model = predict.load_model("runs/point")          # latest checkpoint + the run's config
    labels = model.predict(images)                    # [B, H, W] class ids from RGB 0..255 images
    paths = predict.write_predictions(model.config, "runs/point", num_images=8)

A panel is four tiles side by side: image | prediction | ground truth | supervision overlay (the
run's own labels -- clicks as dots ringed in white, or squiggles/boxes/masks as colour -- over a
grey image tinted red by the objectness prior). Colours are the VOC palette; void is cream.
"""
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
from PIL import ImageDraw

from pointseg_jax import IGNORE_INDEX
from pointseg_jax import errors
from pointseg_jax import labels as labels_lib
from pointseg_jax import parallel
from pointseg_jax import state as state_lib
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


def load_config(workdir) -> ml_collections.ConfigDict:
  """The config a run saved in workdir/config.json."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.is_file():
    raise errors.MissingInputError(f"{path} not found: is {workdir} a training workdir?")
  config = ml_collections.ConfigDict(json.loads(path.read_text()))
  config.data.image_size = tuple(config.data.image_size)
  return config


def load_model(workdir, config=None, step=None) -> Predictor:
  """The run in workdir at its latest (or given) checkpoint, on the local devices."""
  config = load_config(workdir) if config is None else config
  mesh = parallel.make_mesh(jax.local_devices()[:1])
  model = state_lib.make_model(config.model)
  opt = state_lib.OptimizerSpec.from_config(config.optimizer)
  params, step = state_lib.restore_params(workdir, model, opt, mesh, step)
  return Predictor(config, model, params, step)


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


def _enlarge(picture, min_height=256):
  """Small panels (the synthetic set is 128 px) scaled up by an integer factor, pixels sharp."""
  factor = -(-min_height // picture.shape[0])
  if factor <= 1:
    return picture
  return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def write_predictions(config, workdir, num_images=None, split=None,
                      step=None) -> list[pathlib.Path]:
  """PNG panels for the first num_images images of the split in workdir/predictions/.

  Runs on this host's first device; with several hosts only process 0 draws (the others return []).
  """
  if jax.process_index() != 0:
    return []
  num_images = int(num_images or config.predict.num_images)
  split = split or config.predict.split
  predictor = load_model(workdir, config, step)
  spec = spec_lib.DataSpec.from_config(config.data)
  prepare_spec(spec)
  out_dir = pathlib.Path(workdir) / "predictions"
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = []
  batches = pipeline.make_dataset(spec, split, batch_size=int(config.predict.batch_size),
                                  train=False, seed=config.seed)
  for batch in batches:
    pred = predictor.predict(batch["image"])
    for i in np.nonzero(batch["example_mask"])[0]:
      picture = panel(batch["image"][i], pred[i], batch["labels"][i], batch["sparse_labels"][i],
                      batch["objectness"][i], batch["valid"][i])
      path = out_dir / f"{len(paths):03d}_id{int(batch['example_id'][i])}.png"
      Image.fromarray(_enlarge(picture)).save(path)
      paths.append(path)
      if len(paths) >= num_images:
        return paths
  return paths
