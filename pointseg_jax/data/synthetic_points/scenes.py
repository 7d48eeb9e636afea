"""Procedural VOC-like scenes: the pixels and masks of the embedded `synthetic_points` benchmark.

Real VOC cannot be downloaded here, so the package draws its own photographs-with-masks whose
statistics follow PASCAL VOC 2012 (docs/data_synthetic.md, "Design targets"): 21 classes
(0 = background), ~1.5 object classes and ~2.8 instances per image (paper §3: "1.5 classes on
average per image", "2.8 instances per image"), ~70 % background pixels, a 255 "void" band on
every object outline as VOC draws it, occlusion, and objects cut by the image border.

What makes it a segmentation problem rather than a colour lookup: every class is one combination of
a shape (8), a colour family (5) and a texture (4) (`CLASS_STYLES`). Each shape, colour and texture is
shared by 2-5 classes, some class pairs differ only in shape (boat/person), only in colour (bus/car) or
only in texture (cat/dog), and the background "stuff" (sky, grass, water, brick, foliage, ...) reuses
the same hues and similar patterns (water is striped, brick is checker-like, foliage is blotchy). So
no single pixel gives the class away: a network has to learn appearance and shape, and a model trained
from image-level labels has something real to localise. Background clutter (irregular blobs that are
not objects) makes a generic "objectness" cue informative but imperfect.

Everything is a pure function of a `np.random.Generator`: same seed, same scene.
"""
import colorsys
import dataclasses

import numpy as np
from scipy import ndimage

SHAPES = ("ellipse", "rectangle", "triangle", "star", "ring", "cross", "crescent", "chevron")
TEXTURES = ("smooth", "stripes", "dots", "checker")
# Hue centre (degrees) and jitter (std, degrees) per colour family. Neighbouring families touch
# (red/yellow at orange, blue/purple at violet) and the background stuff reuses these hues.
COLOURS = {
    "red": (2.0, 9.0),
    "yellow": (50.0, 8.0),
    "green": (122.0, 11.0),
    "blue": (215.0, 10.0),
    "purple": (285.0, 10.0),
}


@dataclasses.dataclass(frozen=True)
class ClassStyle:
  """How instances of one class look: a shape, a colour family and a texture."""
  shape: str
  colour: str
  texture: str


# Index = VOC class id (pointseg_jax.CLASS_NAMES); 0 (background) has no style.
CLASS_STYLES = (
    None,
    ClassStyle("cross", "blue", "smooth"),        # 1 aeroplane
    ClassStyle("ring", "purple", "stripes"),      # 2 bicycle
    ClassStyle("chevron", "yellow", "smooth"),    # 3 bird
    ClassStyle("triangle", "blue", "stripes"),    # 4 boat        (person: same colour+texture)
    ClassStyle("rectangle", "green", "dots"),     # 5 bottle
    ClassStyle("rectangle", "yellow", "checker"),  # 6 bus        (car: differs only in colour)
    ClassStyle("rectangle", "red", "checker"),    # 7 car
    ClassStyle("ellipse", "yellow", "stripes"),   # 8 cat         (dog: differs only in texture)
    ClassStyle("chevron", "purple", "dots"),      # 9 chair
    ClassStyle("ellipse", "red", "dots"),         # 10 cow
    ClassStyle("cross", "purple", "smooth"),      # 11 diningtable
    ClassStyle("ellipse", "yellow", "dots"),      # 12 dog
    ClassStyle("crescent", "red", "smooth"),      # 13 horse
    ClassStyle("ring", "red", "checker"),         # 14 motorbike
    ClassStyle("star", "blue", "stripes"),        # 15 person
    ClassStyle("star", "green", "smooth"),        # 16 pottedplant
    ClassStyle("crescent", "green", "stripes"),   # 17 sheep
    ClassStyle("triangle", "purple", "checker"),  # 18 sofa
    ClassStyle("cross", "green", "checker"),      # 19 train
    ClassStyle("triangle", "blue", "dots"),       # 20 tvmonitor   (boat: differs only in texture)
)

# Relative frequency of each class among images (index = class id), shaped like PASCAL VOC 2012:
# person in ~4x as many images as a typical class, the others within ~2x of each other. Approximate
# (the exact VOC counts are in the VOC2012 devkit documentation); measured shares of the generated
# set are in docs/data_synthetic.md.
CLASS_FREQUENCY = np.array([
    0, 178, 144, 208, 150, 183, 152, 255, 250, 271, 135,
    157, 249, 147, 157, 888, 167, 120, 183, 167, 157], dtype=np.float64)

# Approximate area of each unit-size shape (bounding radius 1) at its mean parameters: turns a
# target area in pixels into a radius.
_UNIT_AREA = {"ellipse": 2.45, "rectangle": 2.9, "triangle": 1.3, "star": 1.25, "ring": 1.7,
              "cross": 2.0, "crescent": 1.15, "chevron": 1.1}


@dataclasses.dataclass(frozen=True)
class SceneConfig:
  """Knobs of the generator; the defaults are tuned to VOC 2012 (docs/data_synthetic.md)."""
  # P(1, 2, 3, 4 object classes in an image): mean 1.5 as in VOC 2012.
  classes_per_image: tuple = (0.62, 0.28, 0.08, 0.02)
  # Extra instances of a present class ~ Geometric(p): mean p / (1 - p) (VOC: 0.8, paper §3).
  extra_instance_p: float = 0.46
  max_instances_per_class: int = 8
  # Area of an instance as a fraction of the image, log-uniform: the main object, the first instance
  # of every other class, and further instances (smaller, like crowds and herds).
  main_area: tuple = (0.12, 0.6)
  other_area: tuple = (0.03, 0.25)
  extra_area: tuple = (0.008, 0.12)
  # An instance is kept only if this share of it stays visible (inside the image, not occluded).
  min_visible: float = 0.35
  min_pixels: int = 12
  # VOC's void band is ~5 px wide on ~500 px images; scaled to the image, at least 1 px each side.
  void_width_at_500: float = 5.0
  # Background clutter: Poisson mean number of non-object blobs (labelled background).
  clutter_mean: float = 1.2
  noise_std: tuple = (2.0, 6.0)


# --------------------------------------------------------------------------------------------------
# Small helpers.


def _hsv(h_deg, s, v):
  return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, float(np.clip(s, 0, 1)),
                                      float(np.clip(v, 0, 1))), dtype=np.float32)


def _hsv_image(h_deg, s, v):
  """Vectorised HSV -> RGB (h in degrees, s and v in [0, 1]) for [H, W] arrays."""
  h = (np.asarray(h_deg) % 360.0) / 60.0
  s = np.clip(s, 0.0, 1.0)
  v = np.clip(v, 0.0, 1.0)
  c = v * s
  x = c * (1.0 - np.abs(h % 2.0 - 1.0))
  m = v - c
  sector = np.floor(h).astype(np.int32) % 6
  zero = np.zeros_like(c)
  r = np.choose(sector, [c, x, zero, zero, x, c])
  g = np.choose(sector, [x, c, c, x, zero, zero])
  b = np.choose(sector, [zero, zero, x, c, c, x])
  return (np.stack([r, g, b], axis=-1) + m[..., None]).astype(np.float32)


def _noise(rng, shape, sigma):
  """Zero-mean, unit-std Gaussian-filtered white noise (sigma = correlation length in pixels)."""
  n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
  return n / (n.std() + 1e-6)


def _fbm(rng, shape, sigma):
  """Fractal noise: three octaves from `sigma` down, unit std."""
  n = _noise(rng, shape, sigma) + 0.5 * _noise(rng, shape, sigma / 2) + 0.25 * _noise(
      rng, shape, max(sigma / 4, 0.5))
  return n / (n.std() + 1e-6)


def _soft_square(t, sharpness):
  """Square wave of period 1 in t with ~1 pixel anti-aliased edges (sharpness = period in px)."""
  tri = np.abs(t - np.floor(t) - 0.5) * 2.0
  return np.clip((tri - 0.5) * sharpness + 0.5, 0.0, 1.0)


def _loguniform(rng, lo, hi):
  return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


# --------------------------------------------------------------------------------------------------
# Background "stuff": each returns float32 RGB in [0, 1] of the given shape.


def _stuff_sky(rng, h, w, s):
  yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
  if rng.random() < 0.3:  # overcast
    hue, sat = rng.uniform(190, 230), rng.uniform(0.02, 0.12)
  else:
    hue, sat = rng.uniform(195, 228), rng.uniform(0.3, 0.65)
  val = rng.uniform(0.7, 0.95)
  cloud = np.clip(_fbm(rng, (h, w), 10 * s) * 0.35 + rng.uniform(-0.3, 0.1), 0.0, 1.0)
  sat_map = sat * (1.0 - 0.4 * yy) * (1.0 - cloud)
  val_map = val * (0.9 + 0.1 * yy) + 0.12 * cloud
  return _hsv_image(np.full((h, w), hue, np.float32), sat_map, val_map)


def _stuff_grass(rng, h, w, s):
  streak = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32),
                                   (2.5 * s, 0.5 * s), mode="wrap")
  streak /= streak.std() + 1e-6
  hue = rng.uniform(75, 135) + 6.0 * _noise(rng, (h, w), 6 * s)
  sat = rng.uniform(0.45, 0.8) + 0.05 * streak
  val = rng.uniform(0.35, 0.65) * (1.0 + 0.18 * streak + 0.1 * _noise(rng, (h, w), 8 * s))
  return _hsv_image(hue, sat, val)


def _stuff_sand(rng, h, w, s):
  n = 0.6 * _noise(rng, (h, w), 0.8) + _fbm(rng, (h, w), 8 * s)
  hue = np.full((h, w), rng.uniform(26, 46), np.float32)
  return _hsv_image(hue, rng.uniform(0.2, 0.5) + 0.04 * n, rng.uniform(0.55, 0.85) * (1 + 0.08 * n))


def _stuff_water(rng, h, w, s):
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  period = max(3.0, rng.uniform(3.5, 7.0) * s)
  phase = yy / period + 0.7 * _fbm(rng, (h, w), 6 * s) + 0.02 * xx
  wave = np.sin(2 * np.pi * phase)
  hue = np.full((h, w), rng.uniform(180, 228), np.float32)
  val = rng.uniform(0.35, 0.7) * (1.0 + 0.16 * wave)
  return _hsv_image(hue, rng.uniform(0.35, 0.75) - 0.1 * np.maximum(wave, 0), val)


def _stuff_brick(rng, h, w, s):
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  bh = max(3.0, rng.uniform(5.0, 9.0) * s)
  bw = bh * rng.uniform(1.8, 2.6)
  row = np.floor(yy / bh)
  xs = xx + (row % 2) * bw / 2
  col = np.floor(xs / bw)
  dy = np.minimum(yy % bh, bh - yy % bh)
  dx = np.minimum(xs % bw, bw - xs % bw)
  mortar = np.clip(1.5 - np.minimum(dy, dx) * 1.5, 0.0, 1.0)
  brick_jitter = np.sin(row * 12.9898 + col * 78.233) * 43758.5453
  brick_jitter = (brick_jitter - np.floor(brick_jitter)) - 0.5
  if rng.random() < 0.35:  # grey stone
    hue, sat = rng.uniform(0, 360), rng.uniform(0.03, 0.12)
  else:
    hue, sat = rng.uniform(5, 25), rng.uniform(0.45, 0.7)
  val = rng.uniform(0.4, 0.65) * (1.0 + 0.2 * brick_jitter + 0.06 * _noise(rng, (h, w), 1.0))
  sat_map = sat * (1.0 - 0.7 * mortar)
  val_map = val * (1.0 - mortar) + np.minimum(val + 0.3, 0.95) * mortar
  return _hsv_image(np.full((h, w), hue, np.float32), sat_map, val_map)


def _stuff_foliage(rng, h, w, s):
  blob = np.clip(_fbm(rng, (h, w), 2.2 * s) * 1.5, -1.0, 1.0) * 0.5 + 0.5
  hue = rng.uniform(70, 145) + 15.0 * (blob - 0.5)
  val = rng.uniform(0.18, 0.35) + rng.uniform(0.15, 0.3) * blob
  return _hsv_image(hue, rng.uniform(0.4, 0.8) * np.ones((h, w), np.float32), val)


def _stuff_wall(rng, h, w, s):
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  ang = rng.uniform(0, 2 * np.pi)
  grad = (np.cos(ang) * xx + np.sin(ang) * yy) / max(h, w)
  hue = np.full((h, w), rng.uniform(0, 360), np.float32)
  val = rng.uniform(0.55, 0.9) * (1.0 + 0.15 * grad + 0.02 * _noise(rng, (h, w), 1.0))
  return _hsv_image(hue, rng.uniform(0.04, 0.3) * np.ones((h, w), np.float32), val)


def _stuff_carpet(rng, h, w, s):
  hue = rng.choice([rng.uniform(255, 325), rng.uniform(15, 40), rng.uniform(0, 360)])
  n = _noise(rng, (h, w), 0.7) + 0.5 * _noise(rng, (h, w), 5 * s)
  sat = rng.uniform(0.12, 0.45) + 0.03 * n
  return _hsv_image(np.full((h, w), hue, np.float32), sat, rng.uniform(0.3, 0.65) * (1 + 0.1 * n))


def _stuff_wood(rng, h, w, s):
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  plank = max(6.0, rng.uniform(10, 18) * s)
  warp = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), (1.0, 12 * s),
                                 mode="wrap")
  warp /= warp.std() + 1e-6
  grain = np.sin(2 * np.pi * (yy / max(2.5, 3.0 * s) + 0.8 * warp))
  seam = np.clip(1.2 - np.minimum(yy % plank, plank - yy % plank), 0.0, 1.0)
  hue = np.full((h, w), rng.uniform(18, 38), np.float32)
  val = rng.uniform(0.35, 0.65) * (1.0 + 0.1 * grain) * (1.0 - 0.45 * seam)
  return _hsv_image(hue, rng.uniform(0.4, 0.7) * np.ones((h, w), np.float32), val)


STUFF = {
    "sky": _stuff_sky, "grass": _stuff_grass, "sand": _stuff_sand, "water": _stuff_water,
    "brick": _stuff_brick, "foliage": _stuff_foliage, "wall": _stuff_wall, "carpet": _stuff_carpet,
    "wood": _stuff_wood,
}


def _pick(rng, options):
  names, probs = zip(*options)
  probs = np.asarray(probs, np.float64)
  return names[rng.choice(len(names), p=probs / probs.sum())]


def _boundary(rng, w, y0, amp, s):
  """A wavy horizontal boundary (row per column) around y0."""
  line = ndimage.gaussian_filter1d(rng.standard_normal(w + 64), 10 * s, mode="wrap")[32:32 + w]
  return y0 + amp * line / (np.abs(line).max() + 1e-6)


def render_background(rng, height, width, s):
  """Textured "stuff" layout: outdoor (sky/foliage over grass/sand/water) or indoor, 1-3 regions."""
  h, w = height, width
  kind = rng.random()
  if kind < 0.15:  # close-up: one stuff fills the frame
    return STUFF[_pick(rng, [(k, 1.0) for k in STUFF])](rng, h, w, s)
  if kind < 0.65:
    top = _pick(rng, [("sky", 0.6), ("foliage", 0.25), ("brick", 0.15)])
    bottom = _pick(rng, [("grass", 0.45), ("sand", 0.25), ("water", 0.3)])
    middle = _pick(rng, [("foliage", 1), ("brick", 1), ("sand", 1)]) if rng.random() < 0.3 else None
    amp = rng.uniform(0.0, 0.08) * h
  else:
    top = _pick(rng, [("wall", 0.6), ("brick", 0.2), ("carpet", 0.2)])
    bottom = _pick(rng, [("wood", 0.5), ("carpet", 0.5)])
    middle = "wall" if rng.random() < 0.15 else None
    amp = rng.uniform(0.0, 0.02) * h
  rows = np.arange(h, dtype=np.float32)[:, None]
  image = STUFF[top](rng, h, w, s)
  y_low = _boundary(rng, w, rng.uniform(0.3, 0.7) * h, amp, s)[None, :]
  if middle is not None:
    y_mid = y_low - rng.uniform(0.08, 0.25) * h
    layer = STUFF[middle](rng, h, w, s)
    alpha = np.clip(rows - y_mid + 0.5, 0.0, 1.0)[..., None]
    image = image * (1 - alpha) + layer * alpha
  layer = STUFF[bottom](rng, h, w, s)
  alpha = np.clip(rows - y_low + 0.5, 0.0, 1.0)[..., None]
  return image * (1 - alpha) + layer * alpha


# --------------------------------------------------------------------------------------------------
# Shapes as signed distance functions in unit coordinates (bounding radius ~1; negative = inside).


def _polygon_sdf(u, v, verts):
  """Exact signed distance to a simple polygon (even-odd inside test), vectorised over u, v."""
  d2 = np.full(u.shape, np.inf, np.float32)
  inside = np.zeros(u.shape, bool)
  n = len(verts)
  for i in range(n):
    ax, ay = verts[i]
    bx, by = verts[i - 1]
    ex, ey = bx - ax, by - ay
    wx, wy = u - ax, v - ay
    t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    d2 = np.minimum(d2, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
    c1 = v >= ay
    c2 = v < by
    c3 = ex * wy > ey * wx
    inside ^= (c1 & c2 & c3) | (~c1 & ~c2 & ~c3)
  return np.where(inside, -1.0, 1.0) * np.sqrt(d2)


def _box_sdf(u, v, bx, by):
  dx, dy = np.abs(u) - bx, np.abs(v) - by
  outside = np.sqrt(np.maximum(dx, 0) ** 2 + np.maximum(dy, 0) ** 2)
  return outside + np.minimum(np.maximum(dx, dy), 0.0)


def _ellipse_sdf(u, v, a):
  return (np.sqrt(u * u + (v / a) ** 2) - 1.0) * a


def sample_shape_params(rng, shape):
  """Per-instance shape parameters (aspect, thickness, ...), drawn so each shape stays recognisable."""
  if shape == "ellipse":
    return {"a": rng.uniform(0.5, 0.95)}
  if shape == "rectangle":
    return {"a": rng.uniform(0.4, 0.95)}
  if shape == "triangle":
    return {"jitter": rng.uniform(-0.12, 0.12, size=(3, 2))}
  if shape == "star":
    return {"inner": rng.uniform(0.38, 0.52)}
  if shape == "ring":
    return {"a": rng.uniform(0.75, 1.0), "t": rng.uniform(0.3, 0.45)}
  if shape == "cross":
    return {"w": rng.uniform(0.24, 0.36), "a": rng.uniform(0.8, 1.0)}
  if shape == "crescent":
    return {"r2": rng.uniform(0.75, 0.9), "off": rng.uniform(0.4, 0.6)}
  if shape == "chevron":
    return {"t": rng.uniform(0.5, 0.7), "depth": rng.uniform(0.7, 1.0)}
  raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def shape_sdf(shape, u, v, p):
  """Signed distance (unit coordinates) of `shape` with parameters `p` at points (u, v)."""
  if shape == "ellipse":
    return _ellipse_sdf(u, v, p["a"])
  if shape == "rectangle":
    return _box_sdf(u, v, 0.95, 0.95 * p["a"])
  if shape == "triangle":
    ang = np.deg2rad([90.0, 210.0, 330.0])
    verts = np.stack([np.cos(ang), np.sin(ang)], -1) + p["jitter"]
    return _polygon_sdf(u, v, verts)
  if shape == "star":
    ang = np.deg2rad(90.0 + 36.0 * np.arange(10))
    rad = np.where(np.arange(10) % 2 == 0, 1.0, p["inner"])
    return _polygon_sdf(u, v, np.stack([rad * np.cos(ang), rad * np.sin(ang)], -1))
  if shape == "ring":
    t = p["t"]
    return np.abs(_ellipse_sdf(u, v, p["a"]) + t / 2) - t / 2
  if shape == "cross":
    w, a = p["w"], p["a"]
    return np.minimum(_box_sdf(u, v, 0.95, w), _box_sdf(u, v, w, 0.95 * a))
  if shape == "crescent":
    outer = np.sqrt(u * u + v * v) - 0.95
    inner = np.sqrt((u - p["off"]) ** 2 + v * v) - p["r2"]
    return np.maximum(outer, -inner)
  if shape == "chevron":
    t, d = p["t"], p["depth"]
    verts = np.array([[-0.95, 0.5 * d], [0.0, -0.5 * d - 0.3], [0.95, 0.5 * d],
                      [0.95, 0.5 * d + t], [0.0, -0.5 * d - 0.3 + t], [-0.95, 0.5 * d + t]])
    verts[:, 1] -= t / 2
    return _polygon_sdf(u, v, verts)
  raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


# --------------------------------------------------------------------------------------------------
# Object appearance.


def sample_colours(rng, family):
  """Main and secondary colour of one instance: hue from the family (jittered), free sat/value."""
  centre, std = COLOURS[family]
  hue = centre + float(np.clip(rng.normal(0.0, std), -2.2 * std, 2.2 * std))
  sat, val = rng.uniform(0.45, 0.95), rng.uniform(0.5, 0.95)
  main = _hsv(hue, sat, val)
  if val > 0.68 or rng.random() < 0.5:
    second = _hsv(hue + rng.uniform(-6, 6), sat * rng.uniform(0.7, 1.0), val * rng.uniform(0.4, 0.6))
  else:
    second = _hsv(hue + rng.uniform(-6, 6), sat * rng.uniform(0.3, 0.55), min(1.0, val + 0.35))
  return main, second


def texture_pattern(texture, uu, vv, rng, s):
  """Pattern in [0, 1] (0 = main colour, 1 = secondary) at object-frame pixel offsets (uu, vv)."""
  if texture == "smooth":
    return np.zeros(uu.shape, np.float32)
  phi = rng.uniform(0, np.pi)
  a = uu * np.cos(phi) + vv * np.sin(phi)
  b = -uu * np.sin(phi) + vv * np.cos(phi)
  if texture == "stripes":
    period = max(3.0, rng.uniform(3.5, 6.5) * s)
    return _soft_square(a / period + rng.random(), period)
  if texture == "dots":
    period = max(4.0, rng.uniform(5.0, 8.0) * s)
    radius = period * rng.uniform(0.24, 0.34)
    off = rng.random(2)
    da = (a / period + off[0]) % 1.0 - 0.5
    db = (b / period + off[1]) % 1.0 - 0.5
    return np.clip(radius - np.hypot(da, db) * period + 0.5, 0.0, 1.0)
  if texture == "checker":
    period = max(2.5, rng.uniform(3.0, 5.5) * s)
    sa = _soft_square(a / (2 * period) + rng.random(), 2 * period)
    sb = _soft_square(b / (2 * period) + rng.random(), 2 * period)
    return sa * sb + (1 - sa) * (1 - sb)
  raise ValueError(f"unknown texture {texture!r}; expected one of {TEXTURES}")


def object_colour(rng, style, uu, vv, radius, s):
  """RGB [H, W, 3] of an object of `style` at object-frame pixel offsets (uu, vv): its colour
  family, texture, a linear light gradient and a faint mottle (also the classification corpus's
  objects, `synthetic_classes`)."""
  main, second = sample_colours(rng, style.colour)
  pattern = texture_pattern(style.texture, uu, vv, rng, s)
  colour = main * (1.0 - pattern[..., None]) + second * pattern[..., None]
  ang = rng.uniform(0, 2 * np.pi)
  light = 1.0 + rng.uniform(0.08, 0.22) * (np.cos(ang) * uu + np.sin(ang) * vv) / radius
  mottle = 1.0 + 0.04 * _noise(rng, light.shape, 2.0 * s)
  return colour * (light * mottle)[..., None]


@dataclasses.dataclass
class _Instance:
  cls: int
  shape: str
  params: dict
  radius: float
  angle: float
  area: float  # target area in pixels


def _local_sdf(inst, cy, cx):
  """SDF (pixels) of an instance on its bounding box, and that box's placement in the image."""
  r = inst.radius * 1.05 + 2.0
  y0, y1 = int(np.floor(cy - r)), int(np.ceil(cy + r)) + 1
  x0, x1 = int(np.floor(cx - r)), int(np.ceil(cx + r)) + 1
  yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
  dy, dx = yy - cy, xx - cx
  c, s = np.cos(inst.angle), np.sin(inst.angle)
  uu, vv = c * dx + s * dy, -s * dx + c * dy  # object frame, pixels
  sd = shape_sdf(inst.shape, uu / inst.radius, vv / inst.radius, inst.params) * inst.radius
  return sd.astype(np.float32), uu, vv, (y0, y1, x0, x1)


def _clip_box(box, height, width):
  y0, y1, x0, x1 = box
  cy0, cx0 = min(max(y0, 0), height), min(max(x0, 0), width)
  cy1, cx1 = max(min(y1, height), cy0), max(min(x1, width), cx0)
  local = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
  return (slice(cy0, cy1), slice(cx0, cx1)), local


def _sample_instances(rng, area, cfg):
  """Classes present (VOC frequencies), instances per class and their target sizes."""
  n_cls = 1 + rng.choice(len(cfg.classes_per_image), p=np.asarray(cfg.classes_per_image) /
                         np.sum(cfg.classes_per_image))
  freq = CLASS_FREQUENCY[1:] / CLASS_FREQUENCY[1:].sum()
  classes = 1 + rng.choice(20, size=n_cls, replace=False, p=freq)
  out = []
  for k, c in enumerate(classes):
    extra = min(int(rng.geometric(1.0 - cfg.extra_instance_p)) - 1, cfg.max_instances_per_class - 1)
    for j in range(1 + extra):
      if k == 0 and j == 0:
        frac = _loguniform(rng, *cfg.main_area)
      elif j == 0:
        frac = _loguniform(rng, *cfg.other_area)
      else:
        frac = _loguniform(rng, *cfg.extra_area)
      style = CLASS_STYLES[c]
      params = sample_shape_params(rng, style.shape)
      radius = float(np.sqrt(frac * area / _UNIT_AREA[style.shape]))
      out.append(_Instance(int(c), style.shape, params, max(radius, 2.5), rng.uniform(0, 2 * np.pi),
                           frac * area))
  return out


def _add_clutter(rng, image, cfg, s):
  """Irregular background blobs (rocks, bushes, furniture...): object-like, but class background."""
  h, w, _ = image.shape
  for _ in range(min(int(rng.poisson(cfg.clutter_mean)), 4)):
    radius = float(np.sqrt(_loguniform(rng, 0.004, 0.06) * h * w / np.pi))
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    y0, y1 = int(max(cy - 1.6 * radius - 2, 0)), int(min(cy + 1.6 * radius + 3, h))
    x0, x1 = int(max(cx - 1.6 * radius - 2, 0)), int(min(cx + 1.6 * radius + 3, w))
    if y1 <= y0 or x1 <= x0:
      continue
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    theta = np.arctan2(yy - cy, xx - cx)
    rad = np.ones_like(theta)
    for k in range(2, 6):
      rad += rng.uniform(0.0, 0.35 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    rad *= radius / 1.1
    sd = np.hypot(yy - cy, xx - cx) - rad
    alpha = np.clip(0.5 - sd, 0.0, 1.0)[..., None]
    stuff = _pick(rng, [("sand", 1), ("foliage", 1), ("carpet", 1), ("wall", 1), ("grass", 1),
                        ("brick", 0.5)])
    tex = STUFF[stuff](rng, y1 - y0, x1 - x0, s)
    shade = 1.0 + 0.15 * ((xx - cx) * np.cos(1.0) + (yy - cy)) / (2 * radius + 1)
    image[y0:y1, x0:x1] = image[y0:y1, x0:x1] * (1 - alpha) + tex * shade[..., None] * alpha


def _place(rng, inst, canvas, full_area, visible, cfg):
  """Try positions for `inst`; returns (sd, uu, vv, box) of an accepted one or None.

  Accepted when at least `min_visible` of it lies inside the image and no instance already drawn
  (behind it) loses more than it may: VOC objects are occluded and cut by the border, but each
  stays recognisable.
  """
  h, w = canvas.shape
  for _ in range(12):
    cy = rng.uniform(-0.15 * h, 1.15 * h)
    cx = rng.uniform(-0.15 * w, 1.15 * w)
    sd, uu, vv, box = _local_sdf(inst, cy, cx)
    inside_mask = sd < 0
    full = int(inside_mask.sum())
    if full == 0:
      continue
    img_sl, loc_sl = _clip_box(box, h, w)
    cover = inside_mask[loc_sl]
    n_in = int(cover.sum())
    if n_in < max(cfg.min_visible * full, cfg.min_pixels):
      continue
    hidden = np.bincount(canvas[img_sl][cover], minlength=len(visible) + 1)[1:]
    after = np.asarray(visible) - hidden
    if np.any(after < np.maximum(cfg.min_visible * np.asarray(full_area), cfg.min_pixels)):
      continue
    return sd, uu, vv, box, full
  return None


def void_band(instance_ids, radius):
  """Pixels within `radius` of a pixel with another id: VOC's 'void' outline around every object."""
  r = int(np.floor(radius))
  yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
  footprint = (yy * yy + xx * xx) <= radius * radius
  hi = ndimage.maximum_filter(instance_ids, footprint=footprint, mode="nearest")
  lo = ndimage.minimum_filter(instance_ids, footprint=footprint, mode="nearest")
  return hi != lo


def camera(rng, image, noise_std):
  """Float RGB in [0, 1] -> uint8 photo: colour cast, exposure, sensor noise (std in grey levels,
  drawn from the range `noise_std`)."""
  cast = rng.uniform(0.92, 1.08, size=3).astype(np.float32) * rng.uniform(0.85, 1.12)
  image = image * cast + rng.normal(0.0, rng.uniform(*noise_std) / 255.0, size=image.shape)
  return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, height: int, width: int,
                 config: SceneConfig = SceneConfig()) -> dict:
  """One VOC-like scene.

  Returns dict(image uint8 [H, W, 3], mask uint8 [H, W] (class ids, 255 = void band / unlabelled
  object), instance_mask uint8 [H, W] (1..n in depth order back to front, 0 = background,
  255 = void)). The whole output is a deterministic function of the generator's state.
  """
  cfg = config
  h, w = int(height), int(width)
  if h < 16 or w < 16:
    raise ValueError(f"render_scene needs at least 16x16 pixels, got {h}x{w}")
  s = max(h, w) / 128.0  # texture / noise scale relative to the default 128 px images
  image = render_background(rng, h, w, s)
  _add_clutter(rng, image, cfg, s)

  instances = _sample_instances(rng, h * w, cfg)
  # Depth order: larger objects tend to be further back, with plenty of exceptions.
  depth = np.array([np.log(i.area) + rng.normal(0.0, 1.0) for i in instances])
  instances = [instances[i] for i in np.argsort(-depth, kind="stable")]

  canvas = np.zeros((h, w), np.int32)  # front-most instance id per pixel, 0 = background
  classes, full_area, visible = [], [], []
  for inst in instances:
    placed = _place(rng, inst, canvas, full_area, visible, cfg)
    if placed is None:
      continue
    sd, uu, vv, box, full = placed
    img_sl, loc_sl = _clip_box(box, h, w)
    colour = object_colour(rng, CLASS_STYLES[inst.cls], uu[loc_sl], vv[loc_sl], inst.radius, s)
    alpha = np.clip(0.5 - sd[loc_sl], 0.0, 1.0)[..., None]
    image[img_sl] = image[img_sl] * (1.0 - alpha) + colour * alpha
    cover = sd[loc_sl] < 0
    region = canvas[img_sl]
    hidden = np.bincount(region[cover], minlength=len(visible) + 1)[1:]
    visible = [v - int(hh) for v, hh in zip(visible, hidden)]
    region[cover] = len(classes) + 1
    classes.append(inst.cls)
    full_area.append(full)
    visible.append(int(cover.sum()))

  image = camera(rng, image, cfg.noise_std)

  # Renumber instances that survived occlusion 1..n (back to front), void band on every outline.
  ids = np.unique(canvas[canvas > 0])
  remap = np.zeros(len(classes) + 1, np.int32)
  remap[ids] = np.arange(1, len(ids) + 1)
  canvas = remap[canvas]
  cls_of = np.zeros(len(ids) + 1, np.uint8)
  cls_of[remap[ids]] = np.asarray(classes, np.uint8)[ids - 1]
  radius = max(1.0, config.void_width_at_500 / 2.0 * max(h, w) / 500.0)
  void = void_band(canvas, radius)
  mask = cls_of[canvas]
  instance_mask = canvas.astype(np.uint8)
  mask[void] = 255
  instance_mask[void] = 255
  # An instance the void band swallowed entirely stays unlabelled (VOC marks such tiny or
  # 'difficult' objects void as a whole).
  for i in range(1, len(ids) + 1):
    here = canvas == i
    if not np.any(instance_mask[here] == i):
      mask[here] = 255
      instance_mask[here] = 255
  return {"image": image, "mask": mask, "instance_mask": instance_mask}
