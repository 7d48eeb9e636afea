r"""How wrong box supervision's labels are on a dataset: the share of box-labelled pixels whose true
class is the box's, and the foreground share boxes claim vs the masks (RESULTS.md, "box > point").

  python -m pointseg_jax.experiments.box_fill --split=train[:500]

Boxes are filled the way the `box` regime rasterises them (data/rasterize.py rasterize_boxes: the
smallest covering box wins, outside every box is background); void (255) pixels are left out.
"""
from absl import app
from absl import flags
import numpy as np

FLAGS = flags.FLAGS


def fill_boxes(boxes: dict, height: int, width: int) -> np.ndarray:
  """[H, W] int labels: the class of the smallest box covering each pixel centre, else 0."""
  ys, xs = np.arange(height)[:, None] + 0.5, np.arange(width)[None, :] + 0.5
  labels = np.zeros((height, width), np.int64)
  best = np.full((height, width), np.inf)
  area = (np.asarray(boxes["ymax"]) - boxes["ymin"]) * (np.asarray(boxes["xmax"]) - boxes["xmin"])
  for k in range(len(area)):
    inside = ((ys >= boxes["ymin"][k]) & (ys < boxes["ymax"][k]) & (xs >= boxes["xmin"][k])
              & (xs < boxes["xmax"][k]))
    smaller = inside & (area[k] < best)
    labels[smaller], best[smaller] = boxes["cls"][k], area[k]
  return labels


def counts(mask: np.ndarray, boxes: dict) -> np.ndarray:
  """[box-labelled pixels, of them the box's true class, valid pixels, mask foreground pixels]."""
  labels = fill_boxes(boxes, *mask.shape)
  valid = mask != 255
  boxed = (labels > 0) & valid
  return np.array([boxed.sum(), (boxed & (mask == labels)).sum(), valid.sum(),
                   ((mask > 0) & valid).sum()])


def main(argv):
  del argv
  import tensorflow_datasets as tfds
  import pointseg_jax.data.synthetic_points  # noqa: F401  (registers the builder)
  total = np.zeros(4, np.int64)
  ds = tfds.load(FLAGS.dataset, split=FLAGS.split, data_dir=FLAGS.data_dir)
  for n, ex in enumerate(tfds.as_numpy(ds), 1):
    total += counts(ex["mask"][..., 0], ex["boxes"])
  boxed, right, valid, fg = total
  print(f"{FLAGS.dataset} {FLAGS.split} ({n} images): {right / boxed:.3f} of the box-labelled "
        f"pixels are the box's class; boxes label {boxed / valid:.3f} of the pixels foreground, "
        f"the masks {fg / valid:.3f}")


if __name__ == "__main__":
  flags.DEFINE_string("dataset", "synthetic_points/default", "TFDS name.")
  flags.DEFINE_string("split", "train[:500]", "TFDS split (slices allowed).")
  flags.DEFINE_string("data_dir", None, "TFDS data dir.")
  app.run(main)
