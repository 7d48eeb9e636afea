"""pointseg_jax.objectness: cues on hand-made inputs, NMS, renderer, model, the heatmap contract,
and the command-line tools on bad input."""
import json

from absl import flags
import numpy as np
from PIL import Image
import pytest

from pointseg_jax import errors
from pointseg_jax import objectness
from pointseg_jax.objectness import cues, evaluate, learn, model as model_lib, nms, render
from pointseg_jax.objectness import precompute
from pointseg_jax.objectness import saliency

# Fewer candidate windows keep contract tests fast; the algorithm is the same.
FAST = {"distribution_windows": 20000}


def _square_image(h=64, w=64, box=(30, 20, 45, 35), colour=(255, 0, 0), bg=128):
  img = np.full((h, w, 3), bg, np.uint8)
  x1, y1, x2, y2 = box
  img[y1:y2 + 1, x1:x2 + 1] = colour
  return img


def _textured(h, w, seed=0):
  rng = np.random.default_rng(seed)
  img = rng.integers(60, 90, (h, w, 3), dtype=np.uint8)
  img[h // 4: h // 2, w // 3: 2 * w // 3] = (200, 40, 40)
  return img


# ------------------------------------------------------------------------------ the public API --

def test_square_gets_top_windows_and_the_peak():
  img = _square_image()
  square = np.array([[30, 20, 45, 35]])
  boxes, scores = objectness.objectness_boxes(img, rng=0)
  assert boxes.dtype == np.int64 and boxes.shape[1] == 4 and len(boxes) == len(scores) > 10
  assert np.all(np.diff(scores) <= 0)  # best first
  assert learn.iou_max(boxes[:1], square)[0] >= 0.7  # measured 0.80
  o = objectness.heatmap(img, rng=0)
  y, x = np.unravel_index(o.argmax(), o.shape)
  assert 30 <= x <= 45 and 20 <= y <= 35
  inside = o[20:36, 30:46].mean()
  assert inside > 3 * o.mean() and inside > 200  # measured 234 vs 60


def test_flat_image_gives_flat_map_without_nan():
  flat = np.full((40, 50, 3), 77, np.uint8)
  boxes, scores = objectness.objectness_boxes(flat, rng=0)
  assert len(boxes) == 0 and len(scores) == 0
  o = objectness.heatmap(flat, rng=0)
  assert o.dtype == np.uint8 and o.shape == (40, 50) and not o.any()


def test_same_seed_same_map_other_seed_other_map():
  img = _textured(48, 64)
  a = objectness.heatmap(img, rng=3, **FAST)
  b = objectness.heatmap(img, rng=3, **FAST)
  c = objectness.heatmap(img, rng=4, **FAST)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a.astype(int) - c).max() > 0
  d = objectness.heatmap(img, rng=np.random.default_rng(3), **FAST)
  np.testing.assert_array_equal(a, d)  # an int seed is default_rng(seed)


@pytest.mark.parametrize("shape", [(2, 2), (3, 7), (17, 33), (64, 96), (130, 70)])
def test_shape_and_dtype_contract(shape):
  img = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
  o = objectness.heatmap(img, rng=0, **FAST)
  assert o.shape == shape and o.dtype == np.uint8


def test_large_input_runs_at_working_resolution():
  # 1200x900: cues run at <= 250 px long side, map at full size, same shape contract.
  img = np.kron(_textured(60, 80), np.ones((15, 15, 1), np.uint8))
  o = objectness.heatmap(img, rng=0, **FAST)
  assert o.shape == (900, 1200) and o.max() == 255


def test_grayscale_is_replicated_to_rgb():
  grey = _textured(40, 56)[..., 0]
  rgb = np.repeat(grey[..., None], 3, axis=2)
  ref = objectness.heatmap(rgb, rng=1, **FAST)
  np.testing.assert_array_equal(objectness.heatmap(grey, rng=1, **FAST), ref)
  np.testing.assert_array_equal(objectness.heatmap(grey[..., None], rng=1, **FAST), ref)


@pytest.mark.parametrize("bad, error, words", [
    (np.zeros((8, 8, 4), np.uint8), ValueError, "alpha"),
    (np.zeros((1, 1, 3), np.uint8), ValueError, "2x2"),
    (np.zeros((1, 50, 3), np.uint8), ValueError, "2x2"),
    (np.zeros((8, 8, 3), np.float32), TypeError, "uint8"),
    (np.zeros((8, 8, 3), np.uint16), TypeError, "uint8"),
    ([[0, 1], [2, 3]], TypeError, "numpy"),
    (np.zeros((4, 4, 3, 1), np.uint8), ValueError, "[H, W, 3]"),
    # 20000x20000x3 without allocating it: a broadcast view.
    (np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (20000, 20000, 3)), ValueError, "downscale"),
])
def test_bad_input_raises_a_clear_error(bad, error, words):
  with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
    objectness.heatmap(bad)


def test_bad_rng_raises():
  with pytest.raises(TypeError, match="rng"):
    objectness.heatmap(_textured(20, 20), rng="seed")


# ------------------------------------------------------------------------------------ renderer --

def test_renderer_sums_scores_of_covering_windows():
  boxes = np.array([[0, 0, 2, 1], [1, 1, 4, 3]])  # inclusive (x1, y1, x2, y2)
  total = render.score_sum(boxes, np.array([0.5, 0.25]), 4, 5)
  expected = np.array([[0.5, 0.5, 0.5, 0.0, 0.0],
                       [0.5, 0.75, 0.75, 0.25, 0.25],
                       [0.0, 0.25, 0.25, 0.25, 0.25],
                       [0.0, 0.25, 0.25, 0.25, 0.25]])
  np.testing.assert_allclose(total, expected, atol=1e-12)
  o = render.boxes_to_heatmap(boxes, np.array([0.5, 0.25]), 4, 5)
  # min 0 -> 0, max 0.75 -> 255, 0.5 -> 170, 0.25 -> 85.
  np.testing.assert_array_equal(o, np.round(expected / 0.75 * 255).astype(np.uint8))


def test_renderer_clips_boxes_and_handles_constant_maps():
  o = render.boxes_to_heatmap(np.array([[-5, -5, 99, 99]]), np.array([1.0]), 3, 4)
  assert o.shape == (3, 4) and not o.any()  # covers everything: constant -> zeros
  np.testing.assert_array_equal(render.to_uint8(np.array([[0.0, 1.0], [0.5, 0.25]])),
                                [[0, 255], [128, 64]])
  with pytest.raises(ValueError, match="2 boxes but 1 scores"):
    render.score_sum(np.zeros((2, 4), int), np.ones(1), 3, 3)


# ----------------------------------------------------------------------------------------- NMS --

def _nms_reference(windows, scores, iou, max_keep):
  """Plain sequential greedy NMS, one candidate at a time (the C loop of NMS_sampling.c)."""
  order = np.argsort(-scores, kind="stable")
  keep = []
  for i in order:
    if len(keep) >= max_keep:
      break
    if not keep or learn.iou_max(windows[i:i + 1], windows[keep])[0] <= iou:
      keep.append(i)
  return np.array(keep)


def test_nms_hand_case():
  w = np.array([[0, 0, 9, 9],      # 0.9 kept
                [1, 1, 10, 10],    # IoU 81/119 = 0.68 with #0: suppressed
                [0, 0, 9, 4],      # IoU 50/100 = 0.5, not > 0.5: kept
                [20, 20, 29, 29],  # disjoint: kept
                [0, 0, 9, 9]])     # duplicate of #0: suppressed
  s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
  np.testing.assert_array_equal(nms.nms(w, s, 0.5, 10), [0, 2, 3])
  np.testing.assert_array_equal(nms.nms(w, s, 0.5, 2), [0, 2])
  assert len(nms.nms(w[:0], s[:0])) == 0


@pytest.mark.parametrize("block, chunk", [(7, 3), (64, 64), (1024, 64)])
def test_blocked_nms_equals_sequential_nms(block, chunk):
  rng = np.random.default_rng(0)
  x1 = rng.integers(0, 40, 600)
  y1 = rng.integers(0, 30, 600)
  w = np.stack([x1, y1, x1 + rng.integers(0, 20, 600), y1 + rng.integers(0, 20, 600)], 1)
  w = np.concatenate([w, w[:50]])  # exact duplicates too
  s = np.round(rng.random(len(w)), 2)  # ties
  for max_keep in (5, 60, 1000):
    np.testing.assert_array_equal(nms.nms(w, s, 0.5, max_keep, block, chunk),
                                  _nms_reference(w, s, 0.5, max_keep))


# ---------------------------------------------------------------------------------------- cues --

def test_ms_window_scores_match_their_definition():
  rng = np.random.default_rng(0)
  sal = rng.random((6, 6))
  grid, (xlo, xhi), (ylo, yhi), tree = cues.ms_window_scores(sal, 0.4, 2, 3, chunk=2)
  thr = sal >= 0.4
  for j in range(len(xlo)):
    for i in range(len(ylo)):
      win = (slice(ylo[i], yhi[i] + 1), slice(xlo[j], xhi[j] + 1))
      area = (yhi[i] - ylo[i] + 1) * (xhi[j] - xlo[j] + 1)
      expected = (sal[win] * thr[win]).sum() * thr[win].sum() / area
      assert abs(grid[j, i] - expected) < 1e-5
  assert (yhi - ylo + 1).min() == 3 and (xhi - xlo + 1).min() == 2
  # Groups = x-intervals sharing a left cell (lengths 5,4,3,2,1), cut into chunks of 2 rows; the
  # sampler's partial sums per column.
  np.testing.assert_array_equal(tree.chunk_starts, [0, 2, 4, 5, 7, 9, 11, 12, 14])
  np.testing.assert_array_equal(tree.group_first, [0, 3, 5, 7, 8])
  np.testing.assert_array_equal(xlo[tree.chunk_starts[tree.group_first]], np.arange(5))
  np.testing.assert_allclose(tree.chunk_sums, np.add.reduceat(grid, tree.chunk_starts, axis=0),
                             rtol=1e-6)
  np.testing.assert_allclose(tree.group_sums,
                             np.add.reduceat(tree.chunk_sums, tree.group_first, axis=0), rtol=1e-6)


def test_sampling_is_proportional_and_never_picks_zero_cells():
  rng = np.random.default_rng(1)
  g = (rng.random((100, 5)) ** 3).astype(np.float32)  # default tree: 8-row chunks, 8 per group
  g[:, 2] = 0
  g[40:60] = 0
  idx = cues.sample_proportional(g, 40000, np.random.default_rng(0))
  freq = np.bincount(idx, minlength=g.size) / len(idx)
  p = g.ravel() / g.sum()
  assert freq[p == 0].sum() == 0
  assert 0.5 * np.abs(freq - p).sum() < 0.05  # sampling noise for 320 cells: ~0.03
  assert len(cues.sample_proportional(np.zeros((3, 3)), 10, rng)) == 0
  # 1-D input; explicit groups give the same distribution as the default blocks.
  one = cues.sample_proportional(np.array([0, 1, 0, 3], np.float32), 8000, rng)
  np.testing.assert_allclose(np.bincount(one, minlength=4) / 8000, [0, .25, 0, .75], atol=0.03)
  # Uneven chunks and groups give the same distribution.
  chunk_starts = np.array([0, 3, 7, 20, 50, 51, 90])
  chunk_sums = np.add.reduceat(g, chunk_starts, axis=0, dtype=np.float64)
  first = np.array([0, 2, 5])
  tree = cues.SamplingTree(chunk_starts, chunk_sums, first,
                           np.add.reduceat(chunk_sums, first, axis=0))
  idx2 = cues.sample_proportional(g, 40000, np.random.default_rng(0), tree)
  f2 = np.bincount(idx2, minlength=g.size) / 40000
  assert f2[p == 0].sum() == 0 and 0.5 * np.abs(f2 - p).sum() < 0.05


def test_cc_hand_values():
  img = np.zeros((10, 10, 3), np.uint8)
  img[:, :5] = (255, 0, 0)  # red: LAB bin 182
  img[:, 5:] = (0, 0, 255)  # blue
  # Window = red half; its surround grows 50% of the width each side, clipped -> columns 5..7
  # (all blue): disjoint normalised histograms -> chi² = 1 + 1 = 2.
  # A red window deep in the red half has a red surround -> 0.
  w = np.array([[0, 0, 4, 9], [1, 3, 2, 5]])
  np.testing.assert_allclose(cues.cc_scores(img, w), [2.0, 0.0])
  # Whole image: empty surround -> 0 (the MEX's sum_outside == 0 case).
  np.testing.assert_allclose(cues.cc_scores(img, np.array([[0, 0, 9, 9]])), [0.0])


def test_release_lab_and_quantisation():
  lab = cues.rgb_to_lab(np.array([[[255, 0, 0], [255, 255, 255], [0, 0, 0]]], np.uint8))
  # No sRGB gamma (the release's rgb2lab): red -> L = 116·0.212671^(1/3) - 16 = 53.24.
  np.testing.assert_allclose(lab[0], [[53.2406, 80.0942, 67.2015], [100, 0, 0], [0, 0, 0]],
                             atol=1e-3)
  # L bin floor(53.24/25) = 2, a bin floor(200.09/30) = 6, b bin floor(187.2/30) = 6.
  assert cues.quantise_lab(lab)[0, 0] == 2 * 64 + 6 * 8 + 6


def test_ss_hand_values():
  labels = np.zeros((10, 10), int)
  labels[:, 5:] = 1
  w = np.array([[0, 0, 4, 9],   # exactly superpixel 0 -> 1
                [3, 0, 6, 9],   # 20 px of each (each has 50): Σ min = 40 over 40 px -> 0
                [0, 0, 6, 9],   # sp0 inside, sp1 20 of 50: 1 - 20/70
                [1, 1, 2, 2]])  # cuts sp0: min(4 inside, 46 outside) = 4 over 4 px -> 0
  np.testing.assert_allclose(cues.ss_scores(labels, w), [1.0, 0.0, 1 - 20 / 70, 0.0])


def test_ss_matches_brute_force_on_real_superpixels():
  img = _textured(40, 60, seed=2)
  labels = cues.superpixels(img, k=100)
  rng = np.random.default_rng(0)
  w = learn.uniform_windows(40, 60, 300, rng, 3)
  brute = []
  for x1, y1, x2, y2 in w:
    inside = np.bincount(labels[y1:y2 + 1, x1:x2 + 1].ravel(), minlength=labels.max() + 1)
    total = np.bincount(labels.ravel())
    brute.append(1 - np.minimum(inside, total - inside).sum() / ((x2 - x1 + 1) * (y2 - y1 + 1)))
  np.testing.assert_allclose(cues.ss_scores(labels, w), brute, atol=1e-12)


def test_ed_matches_release_arithmetic():
  rng = np.random.default_rng(0)
  edges = rng.random((30, 40)) < 0.2
  w = learn.uniform_windows(30, 40, 200, rng, 4)
  got = cues.ed_scores(None, w, theta=17, edges=edges)
  for (x1, y1, x2, y2), g in zip(w + 1, got):  # 1-based, as computeScores.m
    t = 17.0
    ix2 = np.floor((x2 * (200 + t) / (t + 100) + x1 * t / (t + 100) + 100 / (t + 100) - 1) / 2 + .5)
    ix1 = np.floor(x2 + x1 - ix2 + .5)
    iy2 = np.floor((y2 * (200 + t) / (t + 100) + y1 * t / (t + 100) + 100 / (t + 100) - 1) / 2 + .5)
    iy1 = np.floor(y2 + y1 - iy2 + .5)
    outer = edges[y1 - 1:y2, x1 - 1:x2].sum()
    inner = edges[int(iy1) - 1:int(iy2), int(ix1) - 1:int(ix2)].sum()
    diff = (x2 - x1 + 1) * (y2 - y1 + 1) - (ix2 - ix1 + 1) * (iy2 - iy1 + 1)
    expected = (x2 - ix2 + y2 - iy2) / 2 * (outer - inner) / diff if diff > 0 else 0.0
    assert abs(g - expected) < 1e-9


def test_disk_kernel_is_matlab_fspecial_disk():
  k = saliency.disk_kernel(3)
  assert k.shape == (7, 7) and abs(k.sum() - 1) < 1e-12 and k[0, 0] == 0
  # Fully covered pixel: 1/(π r²); edge-middle pixel: ∫_{-½}^{½} (√(9-y²) - 2.5) dy / (9π).
  edge = 2 * (0.25 * np.sqrt(8.75) + 4.5 * np.arcsin(1 / 6)) - 2.5  # = 0.48605
  np.testing.assert_allclose([k[3, 3], k[3, 6]], [1 / (9 * np.pi), edge / (9 * np.pi)], rtol=3e-3)


def test_spectral_residual_range_and_flat_input():
  sal = saliency.spectral_residual(np.random.default_rng(0).random((32, 32)))
  assert sal.min() == 0 and sal.max() == 1
  assert not saliency.spectral_residual(np.ones((16, 16))).any()


# --------------------------------------------------------------------------------------- model --

def test_naive_bayes_posterior_hand_values():
  centres = np.array([0.0, 1.0, 2.0])
  m = model_lib.Model(cues=("MS", "CC"), pobj=0.25, likelihoods={
      "MS": (centres, np.array([[0.2, 0.3, 0.5], [0.5, 0.3, 0.2]])),
      "CC": (centres, np.array([[0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]))})
  # Values bin to the nearest centre: 1.9 -> 2, 0.4 -> 0, 7 -> 2 (clipped), -3 -> 0.
  post = m.posterior({"MS": np.array([1.9, 0.4]), "CC": np.array([7.0, -3.0])})
  pos = 0.25 * np.array([0.5 * 0.8, 0.2 * 0.1])
  neg = 0.75 * np.array([0.2 * 0.1, 0.5 * 0.6])
  np.testing.assert_allclose(post, pos / (pos + neg) + np.finfo(float).eps)


def test_packaged_model_loads_and_round_trips(tmp_path):
  m = model_lib.default_model()
  assert m.cues == ("MS", "CC", "SS") and m.pobj == pytest.approx(0.0797)
  assert m.ms_scales == (16, 24, 32, 48, 64) and m.ss_theta == 450 and m.cc_theta == 100
  assert {c: m.likelihoods[c][1].shape for c in m.likelihoods} == {
      "MS": (2, 501), "CC": (2, 201), "ED": (2, 101), "SS": (2, 101)}
  model_lib.save(m, tmp_path / "m.npz")
  back = model_lib.load(tmp_path / "m.npz")
  assert back == m  # dataclass equality ignores the likelihood dict ...
  for cue in m.likelihoods:  # ... so compare the arrays explicitly
    np.testing.assert_array_equal(back.likelihoods[cue][1], m.likelihoods[cue][1])
  with pytest.raises(FileNotFoundError, match="relearn"):
    model_lib.load(tmp_path / "missing.npz")


def test_histogram_likelihood_is_matlab_hist_over_n_plus_eps():
  values = np.array([0.0, 0.04, 0.06, 5.0, -1.0])
  lik = model_lib.histogram_likelihood(values, np.arange(0, 0.3, 0.1))
  # nearest centre: 0, 0, 0.1, (clip) 0.2, (clip) 0 -> counts [3, 1, 1] / 5.
  np.testing.assert_allclose(lik, np.array([0.6, 0.2, 0.2]) + np.finfo(float).eps)


# ---------------------------------------------------------------------------- evaluation tools --

def test_auc_hand_values_and_brute_force():
  valid = np.ones(4, bool)
  assert evaluate.auc_uint8(np.array([0, 1, 2, 3], np.uint8), np.array([0, 0, 1, 1], bool),
                            valid) == 1.0
  assert evaluate.auc_uint8(np.array([1, 1], np.uint8), np.array([1, 0], bool), valid[:2]) == 0.5
  # pos {3, 1}, neg {2}: one of two pairs ordered -> 0.5.
  assert evaluate.auc_uint8(np.array([3, 1, 2], np.uint8), np.array([1, 1, 0], bool),
                            valid[:3]) == 0.5
  rng = np.random.default_rng(0)
  o = rng.integers(0, 20, 300).astype(np.uint8)
  pos = rng.random(300) < 0.3
  keep = rng.random(300) < 0.9
  p, n = o[pos & keep].astype(int), o[~pos & keep].astype(int)
  brute = ((p[:, None] > n[None]).sum() + 0.5 * (p[:, None] == n[None]).sum()) / (len(p) * len(n))
  assert evaluate.auc_uint8(o, pos, keep) == pytest.approx(brute)


def test_voc_palette_decoding():
  pal = evaluate.voc_palette(21)
  np.testing.assert_array_equal(pal[[1, 15, 20]], [[128, 0, 0], [192, 128, 128], [0, 64, 128]])
  rgb = np.array([[[0, 0, 0], [128, 0, 0]], [[224, 224, 192], [0, 64, 128]]], np.uint8)
  np.testing.assert_array_equal(evaluate.decode_voc_target(rgb), [[0, 1], [255, 20]])
  with pytest.raises(ValueError, match=r"x\.png: 1 pixels .*outside the VOC palette"):
    evaluate.decode_voc_target(np.array([[[1, 2, 3]]], np.uint8), "x.png")


def test_baselines_shapes_and_centre_prior_peak():
  c = evaluate.centre_prior(31, 41)
  assert c.dtype == np.uint8 and c[15, 20] == 255 and c[0, 0] == 0
  s = evaluate.saliency_baseline(_textured(30, 50))
  assert s.shape == (30, 50) and s.dtype == np.uint8 and s.max() == 255


def test_matlab_jet_ends_and_inversion():
  jet = evaluate.matlab_jet(256)
  np.testing.assert_allclose(jet[[0, 255]], [[0, 0, 0.515625], [0.5, 0, 0]])
  levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
  np.testing.assert_array_equal(evaluate.invert_jet(jet[levels]), levels)


# ------------------------------------------------------------------------------ learning tools --

def test_iou_and_uniform_windows():
  gt = np.array([[0, 0, 9, 9]])
  np.testing.assert_allclose(learn.iou_max(np.array([[0, 0, 9, 4], [5, 5, 14, 14]]), gt),
                             [0.5, 25 / 175])
  w = learn.uniform_windows(30, 20, 500, np.random.default_rng(0), min_window=10)
  assert (w[:, 2] - w[:, 0] + 1 >= 10).all() and (w[:, 3] - w[:, 1] + 1 >= 10).all()
  assert w.min() >= 0 and w[:, 2].max() <= 19 and w[:, 3].max() <= 29


def test_learning_boxes_json_validation(tmp_path):
  (tmp_path / "b.json").write_text('{"a.png": [[5, 5, 2, 9]]}')
  with pytest.raises(ValueError, match="x2 >= x1"):
    learn.load_boxes(tmp_path, tmp_path / "b.json")
  with pytest.raises(FileNotFoundError, match="structGT.mat"):
    learn.load_boxes(tmp_path)


def test_learn_recovers_a_cue_that_separates_objects(tmp_path):
  """On images where objects are red squares, relearned CC likelihoods favour high contrast."""
  boxes = {}
  rng = np.random.default_rng(0)
  for i in range(3):
    x, y = rng.integers(5, 30, 2)
    img = _square_image(64, 64, (x, y, x + 20, y + 20))
    Image.fromarray(img).save(tmp_path / f"{i}.png")
    boxes[f"{i}.png"] = [[int(x), int(y), int(x) + 20, int(y) + 20]]
  (tmp_path / "boxes.json").write_text(json.dumps(boxes))
  m, report = learn.learn(tmp_path, tmp_path / "boxes.json", windows_per_image=3000,
                          progress=False)
  assert report["images"] == 3 and report["CC"]["positives"] > 0
  centres, lik = m.likelihoods["CC"]
  mean = lambda row: (row * centres).sum() / row.sum()
  assert mean(lik[0]) > 2 * mean(lik[1])  # object windows: much higher colour contrast
  # θ search (learnTheta.m): the chosen θ_CC is the grid value with the best criterion.
  m2, rep2 = learn.learn(tmp_path, tmp_path / "boxes.json", windows_per_image=3000,
                         search_theta=("CC",), theta_grids={"CC": [100, 200]}, progress=False)
  assert m2.cc_theta == rep2["CC"]["theta"] in (100.0, 200.0)
  assert rep2["CC"]["criterion"] >= report["CC"]["criterion"] - 1e-9  # 100 is on the grid


# ------------------------------------------------------------------------------------ the CLIs --

def test_precompute_runs_as_a_program(tmp_path, run_cli):
  """`python -m pointseg_jax.objectness.precompute` used to print nothing and exit 0."""
  src = tmp_path / "in"
  src.mkdir()
  Image.fromarray(_textured(40, 48)).save(src / "a.png")
  out = tmp_path / "maps"
  proc = run_cli("pointseg_jax.objectness.precompute", f"--images={src}", f"--out={out}",
                 "--workers=1", "--num_windows=50")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "1 written, 0 already there, 0 failed" in proc.stdout
  np.testing.assert_array_equal(
      np.asarray(Image.open(out / "a.png")),
      objectness.heatmap(_textured(40, 48), rng=precompute.image_seed(0, "a"), num_windows=50))


def test_precompute_checks_images_before_creating_out(tmp_path, run_cli):
  out = tmp_path / "maps"
  line = run_cli.error(run_cli("pointseg_jax.objectness", "precompute",
                               f"--images={tmp_path / 'no_such_folder'}", f"--out={out}"))
  assert "no_such_folder is not a folder" in line, line
  assert not out.exists()
  with pytest.raises(errors.MissingInputError, match="not a folder"):
    precompute.run(out, images=tmp_path / "no_such_folder", workers=1, progress=False)
  assert not out.exists()


def test_objectness_command_usage_and_unknown_command(run_cli):
  proc = run_cli("pointseg_jax.objectness")
  assert proc.returncode == 2 and "precompute" in proc.stdout and "convert" in proc.stdout
  line = run_cli.error(run_cli("pointseg_jax.objectness", "nope"))
  assert "unknown command 'nope'" in line and "precompute" in line


def test_evaluate_has_no_default_data_path():
  """`--voc_dir` is required (its old default pointed outside the repository); the release
  comparison runs only when `--release_dir` is given."""
  fv = flags.FlagValues()
  evaluate.define_flags(fv)
  assert fv["voc_dir"].default is None and fv["release_dir"].default is None
  with pytest.raises(flags.IllegalFlagValueError, match="voc_dir"):
    fv(["evaluate"])
  fv(["evaluate", "--voc_dir=photos"])
  assert fv.voc_dir == "photos"
