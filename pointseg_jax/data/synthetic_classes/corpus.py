"""The classes and images of `synthetic_classes`: object-centric photos of 160 procedural classes.

The embedded benchmark draws each of its 20 object classes as one (shape, colour family, texture)
combination (`scenes.CLASS_STYLES`). This corpus takes every combination, 8 x 5 x 4 = 160 classes,
the benchmark's 20 among them, and draws one object per image, centred, on the benchmark's
background "stuff" (`scenes.render_background`), through the benchmark's own generators (shape
SDFs, colours, textures, lighting, camera). Within a class, instances vary in size, aspect,
rotation, shape parameters and a random affine deformation (shear and stretch), so a class is a
category, not a template. It plays ImageNet's role for VOC: a classification set whose classes
include the segmentation classes and many more (docs/training.md, "Pretraining").

Class order: 0..19 are the benchmark's classes 1..20 (aeroplane .. tvmonitor, VOC ids), then the
other 140 combinations in (shape, colour, texture) order. `BENCHMARK_ROWS[c - 1]` is the corpus class
of VOC class c: the row of the classifier that initialises score_fr's row c (models/weights.py).

Each image is a pure function of (config seed, split, index), seeded by a SeedSequence whose
entropy starts with `SEED_TAG`, so no corpus image shares a random stream with a benchmark scene
(those are seeded by (seed, split, index) without the tag).
"""
import itertools

import numpy as np

from pointseg_jax import CLASS_NAMES
from pointseg_jax.data.synthetic_points import scenes

SPLITS = ("train", "heldout")
SEED_TAG = 0x5C1A55   # first entropy word: keeps every stream disjoint from the benchmark's

_BENCHMARK = tuple(scenes.CLASS_STYLES[1:])
_OTHERS = tuple(style for style in (scenes.ClassStyle(*c) for c in itertools.product(
    scenes.SHAPES, scenes.COLOURS, scenes.TEXTURES)) if style not in _BENCHMARK)
STYLES = _BENCHMARK + _OTHERS
BENCHMARK_ROWS = tuple(range(len(_BENCHMARK)))


def class_name(index: int) -> str:
  """'cross_blue_smooth' (+ '/aeroplane' for the benchmark's classes)."""
  st = STYLES[index]
  name = f"{st.shape}_{st.colour}_{st.texture}"
  return f"{name}/{CLASS_NAMES[index + 1]}" if index < len(_BENCHMARK) else name


CLASS_NAMES_CORPUS = tuple(class_name(i) for i in range(len(STYLES)))
NUM_CLASSES = len(STYLES)


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([SEED_TAG, seed, SPLITS.index(split), index]))


def render_object_image(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
  """uint8 [size, size, 3]: one object of class `label` near the centre on a benchmark background.

  Texture and noise scales are the benchmark's at 128 px (s = 1), so a texture period or an
  object's outline is as many pixels here as in the benchmark's scenes; the object's bounding
  radius is 15-45 % of the image side (the benchmark's medium and large instances).
  """
  style = STYLES[label]
  s = 1.0
  image = scenes.render_background(rng, size, size, s)
  radius = float(np.exp(rng.uniform(np.log(0.15 * size), np.log(0.45 * size))))
  cy, cx = size / 2 + rng.uniform(-0.12, 0.12, size=2) * size
  params = scenes.sample_shape_params(rng, style.shape)
  angle = rng.uniform(0, 2 * np.pi)
  # Affine deformation of the object frame: stretch along a random axis and shear.
  stretch, shear, axis = rng.uniform(0.75, 1.3), rng.uniform(-0.25, 0.25), rng.uniform(0, np.pi)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  dy, dx = yy - cy, xx - cx
  c, sn = np.cos(angle), np.sin(angle)
  uu, vv = c * dx + sn * dy, -sn * dx + c * dy
  ca, sa = np.cos(axis), np.sin(axis)
  a, b = ca * uu + sa * vv, -sa * uu + ca * vv
  a, b = a / stretch + shear * b, b * stretch
  uu, vv = ca * a - sa * b, sa * a + ca * b
  sd = scenes.shape_sdf(style.shape, uu / radius, vv / radius, params) * radius
  colour = scenes.object_colour(rng, style, uu, vv, radius, s)
  alpha = np.clip(0.5 - sd, 0.0, 1.0)[..., None]
  image = image * (1.0 - alpha) + colour * alpha
  return scenes.camera(rng, image, scenes.SceneConfig().noise_std)


def make_example(seed: int, split: str, index: int, size: int) -> tuple[str, dict]:
  """Example `index` of `split`: its class cycles through all classes (balanced splits)."""
  label = index % NUM_CLASSES
  image = render_object_image(example_rng(seed, split, index), label, size)
  key = f"{split}_{index:06d}"
  return key, {"id": key, "image": image, "label": label}
