"""How well objectness maps separate object pixels from background, against two baselines.

    python -m pointseg_jax.objectness.evaluate --voc_dir=DIR [--release_dir=DIR] [--json=FILE]

The maps of a prepared click dataset's split are scored by `python -m
pointseg_jax.data.objectness_eval` (it reads the TFDS examples and calls `evaluate_examples` here:
the prior never imports the data package).

On photos with VOC-palette masks (`<n>_image.png`, `<n>_target.png`): ROC AUC of each map against
object pixels (class 1..20 positive, 0 negative, 255 void ignored) and the mean P = (o+1)/257 inside
vs outside objects, for our map and, computed in the same run, a centre prior (Gaussian at the image
centre, σ = 1/4 of each side) and plain spectral-residual saliency. Every map is stored as uint8
min-max normalised first, exactly as training reads it. With `--release_dir` (the objectness v2.2
folder holding `output.mat`), also the agreement with the release's reference output on
002053.jpg (its boxes -> our renderer; our whole pipeline). docs/objectness.md §4 has the results
on the 14 VOC 2012 val photos the tests use.
"""
import json
import pathlib
import time
import zlib

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from scipy import io as sio
from scipy import spatial
from tqdm import tqdm

from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax import IGNORE_INDEX
from pointseg_jax import labels as labels_lib
from pointseg_jax.objectness import model as model_lib
from pointseg_jax.objectness import pipeline, render, saliency

FLAGS = flags.FLAGS


def voc_palette(n: int = 256) -> np.ndarray:
  """The first n colours of the PASCAL VOC colour map (class id -> RGB)."""
  return labels_lib.voc_palette()[:n]


def decode_voc_target(rgb: np.ndarray, path="target") -> np.ndarray:
  """VOC colour mask [H, W, 3] -> class ids [H, W] (0..20, 255 void); unknown colours raise."""
  return labels_lib.decode_palette(rgb, source=str(path))


def auc_from_histograms(pos, neg) -> float:
  """ROC AUC = P(score_pos > score_neg) + ½ P(tie), from per-level histograms (exact for uint8)."""
  pos = np.asarray(pos, np.float64)
  neg = np.asarray(neg, np.float64)
  if pos.sum() == 0 or neg.sum() == 0:
    return float("nan")
  below = np.cumsum(neg) - neg  # negatives strictly below each level
  return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def auc_uint8(o: np.ndarray, positive: np.ndarray, valid: np.ndarray) -> float:
  """ROC AUC of a uint8 map: P(o_pos > o_neg) + ½ P(o_pos = o_neg), from 256-bin histograms."""
  return auc_from_histograms(np.bincount(o[valid & positive], minlength=256),
                             np.bincount(o[valid & ~positive], minlength=256))


# P = (o + 1) / 257 >= 1/2  <=>  o >= 127.5: the first uint8 level the loss treats as "object".
HALF_LEVEL = 128


def threshold_stats(pos, neg) -> dict:
  """What a map says about object (pos) vs background (neg) pixels, from level histograms: the
  pooled AUC, the accuracy of calling P >= 0.5 object, the accuracy of calling everything
  background, the share of object pixels with P < 0.5, and the mean P inside / outside."""
  pos = np.asarray(pos, np.float64)
  neg = np.asarray(neg, np.float64)
  n = pos.sum() + neg.sum()
  p = (np.arange(256) + 1) / 257
  return {"pooled_auc": auc_from_histograms(pos, neg),
          "accuracy_p05": float((pos[HALF_LEVEL:].sum() + neg[:HALF_LEVEL].sum()) / n),
          "accuracy_all_background": float(neg.sum() / n),
          "object_below_p05": float(pos[:HALF_LEVEL].sum() / pos.sum()),
          "p_in": float((pos * p).sum() / pos.sum()), "p_out": float((neg * p).sum() / neg.sum()),
          "object_pixels": int(pos.sum()), "background_pixels": int(neg.sum())}


def centre_prior(height: int, width: int, rel_sigma: float = 0.25) -> np.ndarray:
  """Gaussian centre bias, uint8; σ = rel_sigma · side along each axis."""
  y = (np.arange(height) - (height - 1) / 2) / (rel_sigma * height)
  x = (np.arange(width) - (width - 1) / 2) / (rel_sigma * width)
  return render.to_uint8(np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)))


def saliency_baseline(image: np.ndarray) -> np.ndarray:
  """Plain spectral-residual saliency (Hou & Zhang 2007; 64 px long side), uint8."""
  return render.to_uint8(saliency.image_saliency(image))


def map_stats(o: np.ndarray, labels: np.ndarray) -> dict:
  valid = labels != IGNORE_INDEX
  positive = (labels > 0) & valid
  p = (o.astype(np.float64) + 1) / 257
  return {"auc": auc_uint8(o, positive, valid),
          "p_in": float(p[positive].mean()) if positive.any() else float("nan"),
          "p_out": (float(p[valid & ~positive].mean()) if (valid & ~positive).any()
                    else float("nan"))}


def load_voc_samples(voc_dir):
  """(name, image uint8 RGB, labels) for every `<n>_image.png` with a `<n>_target.png`."""
  voc_dir = pathlib.Path(voc_dir)
  images = sorted(voc_dir.glob("*_image.png"), key=lambda p: int(p.name.split("_")[0]))
  if not images:
    raise errors.MissingInputError(f"no <n>_image.png files in {voc_dir} (--voc_dir: photos "
                                   "<n>_image.png with VOC-palette masks <n>_target.png)")
  for path in images:
    target = path.with_name(path.name.replace("_image", "_target"))
    if not target.is_file():
      raise errors.MissingInputError(f"{target} missing (needed beside {path.name})")
    image = np.asarray(Image.open(path).convert("RGB"))
    labels = decode_voc_target(np.asarray(Image.open(target).convert("RGB")), target)
    yield path.name.split("_")[0], image, labels


def evaluate_voc(voc_dir, seed: int = 0, **heatmap_kw) -> dict:
  """Per-image and mean statistics of our map and both baselines; also pooled-pixel AUC."""
  methods = {"objectness": lambda im: pipeline.heatmap(im, rng=seed, **heatmap_kw),
             "centre_prior": lambda im: centre_prior(*im.shape[:2]),
             "spectral_residual": saliency_baseline}
  per_image, pooled = [], {m: [] for m in methods}
  for name, image, labels in load_voc_samples(voc_dir):
    row = {"image": name}
    for method, fn in methods.items():
      o = fn(image)
      row[method] = map_stats(o, labels)
      pooled[method].append((o, labels))
    per_image.append(row)
  summary = {}
  for method in methods:
    stats = [r[method] for r in per_image]
    os_ = np.concatenate([o.ravel() for o, _ in pooled[method]])
    ls = np.concatenate([l.ravel() for _, l in pooled[method]])
    valid = ls != IGNORE_INDEX
    summary[method] = {
        "mean_auc": float(np.nanmean([s["auc"] for s in stats])),
        "pooled_auc": auc_uint8(os_, (ls > 0) & valid, valid),
        "mean_p_in": float(np.nanmean([s["p_in"] for s in stats])),
        "mean_p_out": float(np.nanmean([s["p_out"] for s in stats])),
        "wins_auc": int(sum(r[method]["auc"] >= max(r[m]["auc"] for m in methods)
                            for r in per_image)),
    }
  return {"images": len(per_image), "summary": summary, "per_image": per_image}


# ------------------------------------------------- maps against masks, pooled over a dataset --

def evaluate_examples(examples, model=None, seed: int = 0, progress: bool = True,
                      name: str = "examples", **heatmap_kw) -> dict:
  """Object vs background statistics of a dataset's objectness maps, pooled over every non-void
  pixel (`threshold_stats`) and per image. examples: (id, image, class mask [H, W], stored uint8
  map [H, W] or None). model=None scores the stored maps (what training reads); a model recomputes
  every map from the image with seed (seed, crc32(id)); examples without a stored map are then
  counted, logged and left out."""
  pos = np.zeros(256, np.int64)
  neg = np.zeros(256, np.int64)
  per_image, missing = [], 0
  for key, image, labels, stored in tqdm(examples, desc=name, disable=not progress):
    if model is not None:
      o = pipeline.heatmap(image, rng=np.random.default_rng([seed, zlib.crc32(key.encode())]),
                           model=model, **heatmap_kw)
    elif stored is None:
      missing += 1
      continue
    else:
      o = stored
    valid = labels != IGNORE_INDEX
    pos += np.bincount(o[valid & (labels > 0)], minlength=256)
    neg += np.bincount(o[valid & (labels == 0)], minlength=256)
    per_image.append(auc_uint8(o, labels > 0, valid))
  if missing:
    logging.warning("%d examples of %s have no stored objectness map: left out", missing, name)
  return {"images": len(per_image), "without_objectness": missing,
          **threshold_stats(pos, neg), "mean_auc_per_image": float(np.nanmean(per_image))}


def print_threshold_stats(res: dict) -> None:
  """The summary lines of `evaluate_examples`' result."""
  print(f"pooled AUC {res['pooled_auc']:.3f} (mean per image {res['mean_auc_per_image']:.3f}); "
        f"accuracy at P >= 0.5 {res['accuracy_p05']:.3f} vs all-background "
        f"{res['accuracy_all_background']:.3f}; object pixels with P < 0.5 "
        f"{res['object_below_p05']:.3f}; mean P inside {res['p_in']:.3f}, outside {res['p_out']:.3f}")


# ---------------------------------------------------------------- the release's reference run --

def matlab_jet(m: int = 256) -> np.ndarray:
  """MATLAB's `jet(m)` colour map [m, 3] in [0, 1]."""
  n = int(np.ceil(m / 4))
  u = np.concatenate([np.arange(1, n + 1) / n, np.ones(n - 1), np.arange(n, 0, -1) / n])
  g = int(np.ceil(n / 2)) - (1 if m % 4 == 1 else 0) + np.arange(1, len(u) + 1)
  r, b = g + n, g - n
  jet = np.zeros((m, 3))
  g, r, b = g[g <= m], r[r <= m], b[b >= 1]
  jet[r - 1, 0] = u[:len(r)]
  jet[g - 1, 1] = u[:len(g)]
  jet[b - 1, 2] = u[len(u) - len(b):]
  return jet


def invert_jet(rgb: np.ndarray) -> np.ndarray:
  """Jet-coloured map [H, W, 3] (floats in [0,1]) -> the uint8 level whose jet colour is nearest."""
  _, idx = spatial.cKDTree(matlab_jet(256)).query(np.asarray(rgb, np.float64).reshape(-1, 3))
  return idx.astype(np.uint8).reshape(rgb.shape[:2])


def load_reference(release_dir):
  """(image, boxes 0-based inclusive int [1000, 4], scores [1000], their uint8 heat map)."""
  path = pathlib.Path(release_dir) / "output.mat"
  if not path.is_file():
    raise errors.MissingInputError(f"{path} not found (--release_dir: the objectness v2.2 folder "
                                   "with the release's reference run output.mat)")
  out = sio.loadmat(path, squeeze_me=True)
  boxes = out["boxes"]
  # MATLAB: uint16(round(x)) on 1-based coordinates; round half away from zero.
  pix = np.floor(boxes[:, :4] + 0.5).astype(np.int64) - 1
  return out["img"], pix, boxes[:, 4], invert_jet(out["objHeatMap"])


def reference_agreement(release_dir, seed: int = 0, **heatmap_kw) -> dict:
  image, boxes, scores, ref = load_reference(release_dir)
  rendered = render.boxes_to_heatmap(boxes, scores, *image.shape[:2])
  ours = pipeline.heatmap(image, rng=seed, **heatmap_kw)
  corr = lambda a, b: float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])
  return {"renderer_corr": corr(rendered, ref),
          "renderer_max_abs_diff": int(np.abs(rendered.astype(int) - ref).max()),
          "pipeline_corr": corr(ours, ref),
          "saliency_corr": corr(saliency_baseline(image), ref),
          "centre_prior_corr": corr(centre_prior(*image.shape[:2]), ref)}


def define_scoring_flags(flag_values: flags.FlagValues) -> None:
  """How maps are (re)computed and where results go: shared with data/objectness_eval.py."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_integer("seed", 0, "Seed of the window sampling.", **fv)
  flags.DEFINE_string("model", None, "Model .npz (default: the packaged one).", **fv)
  flags.DEFINE_integer("max_side", pipeline.DEFAULT_MAX_SIDE, "Long side the cues run at "
                       "(0 = full size).", lower_bound=0, **fv)
  flags.DEFINE_string("json", None, "Also write the full results here.", **fv)


def heatmap_options(flag_values) -> dict:
  """`pipeline.heatmap` keyword arguments from define_scoring_flags' flags (`model` only when
  --model is given)."""
  kw = {"max_side": flag_values.max_side or None}
  if flag_values.model:
    kw["model"] = model_lib.load(flag_values.model)
  return kw


def write_json(res: dict, path) -> None:
  if path:
    pathlib.Path(path).write_text(json.dumps(res, indent=1) + "\n")


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("voc_dir", None, "Folder of <n>_image.png photos with VOC-palette masks "
                      "<n>_target.png (a TFDS split: python -m pointseg_jax.data.objectness_eval).",
                      **fv)
  flags.DEFINE_string("release_dir", None, "Objectness v2.2 folder with output.mat: also compare "
                      "with the release's reference run (default: skip).", **fv)
  define_scoring_flags(flag_values)
  flags.mark_flags_as_required(["voc_dir"], flag_values=flag_values)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  kw = heatmap_options(FLAGS)
  t = time.perf_counter()
  res = {"voc": evaluate_voc(FLAGS.voc_dir, FLAGS.seed, **kw)}
  if FLAGS.release_dir:
    res["reference"] = reference_agreement(FLAGS.release_dir, FLAGS.seed, **kw)
  res["seconds"] = time.perf_counter() - t
  print(f"{res['voc']['images']} images, {res['seconds']:.1f} s")
  print(f"{'method':<20}{'mean AUC':>10}{'pooled AUC':>12}{'P in':>8}{'P out':>8}{'best on':>9}")
  for method, s in res["voc"]["summary"].items():
    print(f"{method:<20}{s['mean_auc']:>10.3f}{s['pooled_auc']:>12.3f}{s['mean_p_in']:>8.3f}"
          f"{s['mean_p_out']:>8.3f}{s['wins_auc']:>9d}")
  if "reference" in res:
    print("reference 002053.jpg:", {k: round(v, 4) for k, v in res["reference"].items()})
  write_json(res, FLAGS.json)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
