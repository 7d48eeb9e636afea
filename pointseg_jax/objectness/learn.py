"""Learn the naive-Bayes cue model from images with object boxes (`learnParameters.m`).

    python -m pointseg_jax.objectness.learn --images=DIR --out=my_model.npz \\
        [--boxes=boxes.json] [--search_theta=CC,SS] \\
        [--compare_to=pointseg_jax/objectness/alexe_v22.npz]

(`--images` is e.g. the `Training/Images` folder of the objectness v2.2 release, 50 photos with
their boxes in `structGT.mat`. Learning on a prepared TFDS click dataset's train split, and the
rendering steps below: `python -m pointseg_jax.data.objectness_learn`, which reads the examples
and calls `learn` / `learn_rendering` here, so the prior never imports the data package.)

The recipe of objectness v2.2: a window is positive when its IoU with some annotated box is >= 0.5
(the PASCAL criterion), negative otherwise.
- MS: the windows the MS cue itself samples (100k per image) with their MS scores.
- CC, ED, SS: 100k windows per image drawn uniformly (`generateWindows 'uniform'`), each cue
  evaluated on them.
Each likelihood is the normalised histogram of the cue over positives (row 0) and negatives
(row 1) at the model's bin centres, + eps. With `--search-theta`, θ of CC / ED / SS is chosen on a
grid to maximise Σ log P(object | cue) over the positive windows, as `learnTheta.m` does (the MS
thresholds θ_MS are kept: the release tuned them for box recall with NMS, not for likelihood).

Boxes: the release's `structGT.mat` in the image folder (1-based [xmin ymin xmax ymax]) or a JSON
file {"image file name": [[x1, y1, x2, y2], ...]} with 0-based inclusive pixel boxes. Learn on
images disjoint from every evaluation set (the shipped model saw 50 images, none from PASCAL VOC).
"""
import json
import pathlib
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from scipy import io as sio
from scipy import optimize
from tqdm import tqdm

from pointseg_jax import cli
from pointseg_jax import errors
from pointseg_jax.objectness import cues as cues_lib
from pointseg_jax.objectness import model as model_lib
from pointseg_jax.objectness import pipeline
from pointseg_jax.objectness import render

FLAGS = flags.FLAGS


def load_boxes(images_dir, boxes_file=None) -> dict:
  """{image file name: int boxes [K, 4] 0-based inclusive}."""
  images_dir = pathlib.Path(images_dir)
  if boxes_file is None:
    gt = images_dir / "structGT.mat"
    if not gt.is_file():
      raise errors.MissingInputError(f"no structGT.mat in {images_dir}; pass --boxes=boxes.json "
                                     '({"name.jpg": [[x1, y1, x2, y2], ...]}, 0-based inclusive)')
    struct = sio.loadmat(gt, squeeze_me=True, struct_as_record=False)["structGT"]
    return {str(s.img): np.atleast_2d(np.asarray(s.boxes, np.int64)) - 1
            for s in np.atleast_1d(struct)}
  boxes_file = pathlib.Path(boxes_file)
  if not boxes_file.is_file():
    raise errors.MissingInputError(f"--boxes {boxes_file}: no such file")
  try:
    raw = json.loads(boxes_file.read_text())
  except json.JSONDecodeError as e:
    raise errors.DataError(f"{boxes_file}: not JSON ({e}); expected "
                           '{"name.jpg": [[x1, y1, x2, y2], ...]}') from e
  if not isinstance(raw, dict):
    raise errors.DataError(f"{boxes_file}: expected a JSON object "
                           '{"name.jpg": [[x1, y1, x2, y2], ...]}, got ' + type(raw).__name__)
  out = {}
  for name, boxes in raw.items():
    try:
      b = np.atleast_2d(np.asarray(boxes, np.int64))
    except (TypeError, ValueError):
      b = np.zeros((0, 0), np.int64)   # not a rectangular list of integers: reported below
    if b.ndim != 2 or b.shape[-1] != 4 or (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
      raise errors.DataError(
          f"{boxes_file}: boxes of {name!r} must be [[x1, y1, x2, y2], ...] with "
          "x2 >= x1 and y2 >= y1")
    out[name] = b
  return out


def iou_max(windows: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """Best inclusive-pixel IoU of each window with any ground-truth box (`computePascalScore`);
  0 for every window when there is no box."""
  if gt.size == 0:
    return np.zeros(len(windows))
  ix = np.minimum(windows[:, None, 2], gt[None, :, 2]) - np.maximum(windows[:, None, 0],
                                                                     gt[None, :, 0]) + 1
  iy = np.minimum(windows[:, None, 3], gt[None, :, 3]) - np.maximum(windows[:, None, 1],
                                                                     gt[None, :, 1]) + 1
  inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
  area = lambda b: (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
  return (inter / (area(windows)[:, None] + area(gt)[None, :] - inter)).max(axis=1)


def uniform_windows(height: int, width: int, num: int, rng: np.random.Generator,
                    min_window: int = 10) -> np.ndarray:
  """`generateWindows(img, 'uniform')`: corners uniform over pixels, sides >= min_window."""
  def sides(size, min_len):
    min_len = min(min_len, size)
    a = np.zeros(num, np.int64)
    b = np.zeros(num, np.int64)
    todo = np.arange(num)
    while todo.size:
      a[todo] = cues_lib.round_half_up(rng.random(todo.size) * (size - 1))
      b[todo] = cues_lib.round_half_up(rng.random(todo.size) * (size - 1))
      todo = todo[np.abs(a[todo] - b[todo]) + 1 < min_len]
    return np.minimum(a, b), np.maximum(a, b)

  x1, x2 = sides(width, min_window)
  y1, y2 = sides(height, min_window)
  return np.stack([x1, y1, x2, y2], axis=1)


def cue_values(image, windows, cue, model, theta=None):
  theta = {"CC": model.cc_theta, "ED": model.ed_theta, "SS": model.ss_theta}[cue] if theta is None \
      else theta
  if cue == "CC":
    return cues_lib.cc_scores(image, windows, theta, model.cc_quant)
  if cue == "ED":
    return cues_lib.ed_scores(image, windows, theta)
  if cue == "SS":
    labels = cues_lib.superpixels(image, theta, model.ss_basis_sigma, model.ss_basis_min_area)
    return cues_lib.ss_scores(labels, windows)
  raise ValueError(f"cue {cue!r} is not learned on uniform windows")


def image_files(images_dir, boxes: dict):
  """(name, uint8 RGB image, boxes) for every image named in `boxes`, read from `images_dir`."""
  images_dir = pathlib.Path(images_dir)
  for name, gt in sorted(boxes.items()):
    path = images_dir / name
    if not path.is_file():
      raise errors.MissingInputError(f"{path} listed in the boxes but missing")
    yield name, np.asarray(Image.open(path).convert("RGB")), gt


def collect(examples, model, rng, max_side, windows_per_image, progress=True, total=None):
  """Per (name, image, boxes): work-resolution image, MS windows/scores/labels, uniform
  windows/labels."""
  out = []
  for name, image, gt in tqdm(examples, desc="windows", disable=not progress, total=total):
    image = pipeline.as_rgb_uint8(image)
    work = pipeline.resize_to_max_side(image, max_side)
    gt_work = pipeline.scale_boxes(np.asarray(gt, np.int64).reshape(-1, 4), image.shape[:2],
                                   work.shape[:2])
    ms_boxes, ms = cues_lib.ms_windows(work, model.ms_scales, model.ms_theta, rng,
                                       windows_per_image, model.min_window, model.ms_filtersize)
    ms_win = cues_lib.to_pixel_windows(ms_boxes, *work.shape[:2])
    uni = uniform_windows(*work.shape[:2], windows_per_image, rng, model.min_window)
    out.append({"name": name, "image": work, "ms": ms, "ms_pos": iou_max(ms_win, gt_work) >= 0.5,
                "uniform": uni, "uni_pos": iou_max(uni, gt_work) >= 0.5})
  return out


def likelihood(values, positive, centres):
  return np.stack([model_lib.histogram_likelihood(values[positive], centres),
                   model_lib.histogram_likelihood(values[~positive], centres)])


def log_posterior_of_positives(values, positive, centres):
  """`learnTheta`'s criterion: Σ over positives of log P(object | cue value)."""
  lik = likelihood(values, positive, centres)
  pobj = positive.mean()
  idx = model_lib.bin_index(values[positive], centres)
  num = pobj * lik[0, idx]
  return float(np.log(num / (num + (1 - pobj) * lik[1, idx]) + np.finfo(float).eps).sum())


def learn(images_dir=None, boxes_file=None, base: model_lib.Model | None = None, seed: int = 0,
          max_side: int | None = pipeline.DEFAULT_MAX_SIDE, windows_per_image: int | None = None,
          search_theta=(), theta_grids: dict | None = None, progress: bool = True,
          examples=None, source: str | None = None):
  """A new Model with relearned likelihoods (and optionally θ); returns (model, report dict).

  The training images come from `images_dir` (+ `boxes_file`), or from `examples`, an iterable of
  (name, uint8 RGB image, int boxes [K, 4] 0-based inclusive), e.g. a TFDS train split.
  """
  base = model_lib.default_model() if base is None else base
  rng = np.random.default_rng(seed)
  n_win = base.distribution_windows if windows_per_image is None else windows_per_image
  if examples is None:
    boxes = load_boxes(images_dir, boxes_file)
    examples, total = image_files(images_dir, boxes), len(boxes)
  else:
    total = None
  data = collect(examples, base, rng, max_side, n_win, progress, total)
  report = {"images": len(data)}
  lik = dict(base.likelihoods)
  ms = np.concatenate([d["ms"] for d in data])
  ms_pos = np.concatenate([d["ms_pos"] for d in data])
  lik["MS"] = (base.likelihoods["MS"][0], likelihood(ms, ms_pos, base.likelihoods["MS"][0]))
  report["MS"] = {"positives": int(ms_pos.sum()), "windows": int(ms_pos.size),
                  "pobj": float(ms_pos.mean())}
  uni_pos = np.concatenate([d["uni_pos"] for d in data])
  thetas = {"CC": base.cc_theta, "ED": base.ed_theta, "SS": base.ss_theta}
  # Grids around the release's θ (CC 100, ED 17, SS 450), wide enough for small images.
  grids = {"CC": np.arange(20, 201, 20), "ED": np.arange(5, 101, 5),
           "SS": np.array([100, 150, 200, 300, 450, 600, 800, 1000, 1500, 2000])}
  grids.update(theta_grids or {})
  for cue in ("CC", "ED", "SS"):
    centres = base.likelihoods[cue][0]
    candidates = list(grids[cue]) if cue in search_theta else [thetas[cue]]
    best = None
    for theta in candidates:
      t = time.perf_counter()
      vals = np.concatenate([cue_values(d["image"], d["uniform"], cue, base, theta) for d in data])
      crit = log_posterior_of_positives(vals, uni_pos, centres)
      if best is None or crit > best[0]:
        best = (crit, float(theta), vals)
      if progress and len(candidates) > 1:
        logging.info("%s theta=%s: sum log P(obj|cue) over positives = %.1f (%.1f s)", cue, theta,
                     crit, time.perf_counter() - t)
    thetas[cue] = best[1]
    lik[cue] = (centres, likelihood(best[2], uni_pos, centres))
    report[cue] = {"theta": best[1], "criterion": best[0], "positives": int(uni_pos.sum()),
                   "windows": int(uni_pos.size)}
  learned = base.replace(likelihoods=lik, cc_theta=thetas["CC"], ed_theta=thetas["ED"],
                         ss_theta=thetas["SS"],
                         source=f"relearned by pointseg_jax.objectness.learn on {len(data)} images "
                                f"of {source or images_dir} (seed {seed}, max_side {max_side})")
  return learned, report


# ---------------------------------------------------- rendering: superpixel smoothing, calibration --

def level_histograms(o: np.ndarray, labels: np.ndarray):
  """uint8 map levels of object (class 1..20) and background (class 0) pixels, void (255) left
  out: (object counts [256], background counts [256])."""
  valid = labels != 255
  return (np.bincount(o[valid & (labels > 0)], minlength=256),
          np.bincount(o[valid & (labels == 0)], minlength=256))


def calibration_table(pos: np.ndarray, neg: np.ndarray) -> tuple:
  """256 levels o -> o' with (o' + 1) / 257 = P(object | level o) on the training pixels.

  The frequency per level (a +1/+1 prior, so empty levels stay near 1/2 and are pulled in by
  their neighbours) is made non-decreasing by weighted isotonic regression, so the calibrated map
  ranks pixels as the map did (the AUC is unchanged but for merged levels).
  """
  pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
  freq = (pos + 1) / (pos + neg + 2)
  p = optimize.isotonic_regression(freq, weights=pos + neg + 2, increasing=True).x
  return tuple(int(v) for v in np.clip(np.round(p * 257 - 1), 0, 255))


def learn_rendering(model: model_lib.Model, examples, smooth_grid=(0.0,), calibrate=True,
                    progress=True, total=None, **heatmap_kw):
  """Choose `smooth_k` on `smooth_grid` by pooled pixel AUC and learn the calibration table, on
  (name, uint8 RGB image, class mask) training examples; returns (model, report).

  The windows are sampled once per image (seeded by the example's position) and rendered for
  every candidate k, so the choice compares renderings of the same windows.
  """
  from pointseg_jax.objectness import evaluate  # pylint: disable=g-import-not-at-top (cycle)
  hist = {float(k): (np.zeros(256, np.int64), np.zeros(256, np.int64)) for k in smooth_grid}
  for i, (_, image, labels) in enumerate(tqdm(examples, desc="render", disable=not progress,
                                              total=total)):
    image = pipeline.as_rgb_uint8(image)
    boxes, scores = pipeline.objectness_boxes(image, rng=i, model=model, **heatmap_kw)
    summed = render.score_sum(boxes, scores, *image.shape[:2])
    for k in hist:
      values = summed
      if k:
        sp = pipeline.smoothing_superpixels(image, model.replace(smooth_k=k),
                                            heatmap_kw.get("max_side", pipeline.DEFAULT_MAX_SIDE))
        values = render.superpixel_average(summed, sp)
      pos, neg = level_histograms(render.to_uint8(values), np.asarray(labels).squeeze())
      hist[k][0][:] += pos
      hist[k][1][:] += neg
  aucs = {k: evaluate.auc_from_histograms(*h) for k, h in hist.items()}
  best = max(aucs, key=lambda k: (aucs[k], -k))
  pos, neg = hist[best]
  table = calibration_table(pos, neg) if calibrate else ()
  report = {"pooled_auc_by_smooth_k": aucs, "smooth_k": best,
            "calibration": {"before": evaluate.threshold_stats(pos, neg),
                            "after": evaluate.threshold_stats(*_relevel(pos, neg, table))}}
  return model.replace(smooth_k=best, calibration=table), report


def _relevel(pos, neg, table):
  """Level histograms after mapping every level o to table[o]."""
  if not table:
    return pos, neg
  idx = np.asarray(table)
  return (np.bincount(idx, weights=pos, minlength=256), np.bincount(idx, weights=neg, minlength=256))


def compare(a: model_lib.Model, b: model_lib.Model) -> dict:
  """Per cue: total-variation distance of the two object and background histograms, and the
  correlation of the log likelihood ratios over the bins both models populate."""
  out = {}
  for cue in model_lib.CUES:
    if cue not in a.likelihoods or cue not in b.likelihoods:
      continue
    la, lb = a.likelihoods[cue][1], b.likelihoods[cue][1]
    tv = 0.5 * np.abs(la - lb).sum(axis=1)
    eps = 1e-4
    both = (la > eps).all(0) & (lb > eps).all(0)
    lra, lrb = np.log(la[0] / la[1]), np.log(lb[0] / lb[1])
    out[cue] = {"tv_object": float(tv[0]), "tv_background": float(tv[1]),
                "llr_corr": float(np.corrcoef(lra[both], lrb[both])[0, 1]) if both.sum() > 2
                else float("nan"), "bins_compared": int(both.sum())}
  return out


def define_learning_flags(flag_values: flags.FlagValues) -> None:
  """What is learned and where it goes: shared with data/objectness_learn.py's command."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_list("cues", None, "Cues of the learned model (default: the base model's).", **fv)
  flags.DEFINE_string("out", None, "Where to write the learned model .npz.", **fv)
  flags.DEFINE_string("base", None, "Model whose θ/bins to start from (default: packaged).", **fv)
  flags.DEFINE_string("compare_to", None, "Print the distance to this model .npz.", **fv)
  flags.DEFINE_list("search_theta", [], "Cues whose θ is searched on a grid, among CC,ED,SS.",
                    **fv)
  flags.DEFINE_integer("seed", 0, "Seed of the window sampling.", **fv)
  flags.DEFINE_integer("max_side", pipeline.DEFAULT_MAX_SIDE, "Long side the cues run at.",
                       lower_bound=1, **fv)
  flags.DEFINE_integer("windows_per_image", None, "Windows per image (default: the base model's "
                       "distribution_windows).", lower_bound=1, **fv)
  flags.mark_flags_as_required(["out"], flag_values=flag_values)


def learning_options(flag_values) -> dict:
  """`learn`'s keyword arguments (base, seed, max_side, windows_per_image, search_theta) from
  define_learning_flags' flags; a bad --search_theta or --cues is a ConfigError."""
  search = tuple(c.strip().upper() for c in flag_values.search_theta if c.strip())
  unknown = sorted(set(search) - {"CC", "ED", "SS"})
  if unknown:
    raise errors.ConfigError(f"--search_theta: {unknown} are not among CC, ED, SS")
  base = model_lib.load(flag_values.base) if flag_values.base else model_lib.default_model()
  if flag_values.cues:
    cues = tuple(c.strip().upper() for c in flag_values.cues)
    if "MS" not in cues or not set(cues) <= set(model_lib.CUES):
      raise errors.ConfigError(f"--cues {','.join(cues)}: MS (it samples the windows) and any "
                               f"of {', '.join(model_lib.CUES[1:])}")
    base = base.replace(cues=cues)
  return {"base": base, "seed": flag_values.seed, "max_side": flag_values.max_side,
          "windows_per_image": flag_values.windows_per_image, "search_theta": search}


def write_learned(learned: model_lib.Model, report: dict, flag_values, started: float) -> None:
  """Save the model to --out and print the report (with --compare_to's distances)."""
  written = model_lib.save(learned, flag_values.out)
  report["seconds"] = round(time.perf_counter() - started, 1)
  if flag_values.compare_to:
    report["compare"] = compare(learned, model_lib.load(flag_values.compare_to))
  print(json.dumps(report, indent=1))
  print(f"wrote {written}")


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The CLI's flags; defined only when this module runs as a program (absl flags are global)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("images", None, "Folder of training images (a TFDS train split: python -m "
                      "pointseg_jax.data.objectness_learn).", **fv)
  flags.DEFINE_string("boxes", None, "JSON boxes (default: structGT.mat in --images).", **fv)
  define_learning_flags(flag_values)
  flags.mark_flags_as_required(["images"], flag_values=flag_values)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  options = learning_options(FLAGS)
  t = time.perf_counter()
  learned, report = learn(FLAGS.images, FLAGS.boxes, **options)
  write_learned(learned, report, FLAGS, t)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
