"""pointseg_jax.objectness on real data (the test data folder, tests/conftest.py) and its CLIs.

The release's reference run (002053.jpg), its trained model and 50 training photos, and 14 VOC val
photos with masks; tests needing them skip without the folder (`testdata_dir` fixture).
"""
import ast
import json
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from pointseg_jax import objectness
from pointseg_jax.objectness import evaluate, learn, model as model_lib, precompute, render
from helpers import REPO

RELEASE = "alexe_objectness_v2.2"


def _corr(a, b):
  return np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1]


# -------------------------------------------------------------- the release's reference output --

def test_renderer_reproduces_the_release_heat_map(testdata_dir):
  """Their 1000 boxes -> our sum/min-max/uint8 renderer == their objHeatMap with jet inverted."""
  image, boxes, scores, ref = evaluate.load_reference(testdata_dir / RELEASE)
  assert image.shape == (335, 500, 3) and boxes.shape == (1000, 4)
  ours = objectness.boxes_to_heatmap(boxes, scores, *image.shape[:2])
  assert np.abs(ours.astype(int) - ref).max() == 0
  assert _corr(ours, ref) > 0.9999
  # The README's "average" instead of the code's sum would not reproduce it.
  count = render.score_sum(boxes, np.ones(len(boxes)), *image.shape[:2])
  mean = render.to_uint8(render.score_sum(boxes, scores, *image.shape[:2]) / np.maximum(count, 1))
  assert _corr(mean, ref) < 0.6  # measured 0.39


def test_pipeline_map_correlates_with_the_release_map(testdata_dir):
  image, _, _, ref = evaluate.load_reference(testdata_dir / RELEASE)
  jpeg = np.asarray(Image.open(testdata_dir / RELEASE / "002053.jpg").convert("RGB"))
  assert np.abs(jpeg.astype(int) - image).max() <= 1  # output.mat's img is that JPEG
  ours = objectness.heatmap(image, rng=0)
  assert _corr(ours, ref) > 0.93  # measured 0.95-0.97 over seeds and working sizes
  assert _corr(ours, ref) > _corr(evaluate.saliency_baseline(image), ref) + 0.15  # 0.71


def test_packaged_model_is_the_release_model(testdata_dir):
  release = model_lib.from_release(testdata_dir / RELEASE)
  shipped = model_lib.default_model()
  assert release == shipped  # every parameter (θ per cue, scales, pobj, windows)
  for cue in model_lib.CUES:
    np.testing.assert_array_equal(release.likelihoods[cue][0], shipped.likelihoods[cue][0])
    np.testing.assert_array_equal(release.likelihoods[cue][1], shipped.likelihoods[cue][1])


# ----------------------------------------------------------------- learning on the release data --

def _compare_relearned(testdata_dir, tmp_path, n_images, windows):
  images = testdata_dir / RELEASE / "Training" / "Images"
  boxes = learn.load_boxes(images)
  assert len(boxes) == 50 and sum(len(b) for b in boxes.values()) == 291
  sub = {name: boxes[name].tolist() for name in sorted(boxes)[:n_images]}
  (tmp_path / "boxes.json").write_text(json.dumps(sub))
  learned, report = learn.learn(images, tmp_path / "boxes.json", windows_per_image=windows,
                                progress=False)
  assert report["images"] == n_images
  return learn.compare(learned, model_lib.default_model()), report


def test_relearning_on_12_training_photos_resembles_the_release(testdata_dir, tmp_path):
  cmp, _ = _compare_relearned(testdata_dir, tmp_path, 12, 20000)
  for cue in ("MS", "CC", "SS"):
    assert cmp[cue]["llr_corr"] > 0.8, (cue, cmp[cue])  # measured 0.85-0.98 on 8 photos
    assert max(cmp[cue]["tv_object"], cmp[cue]["tv_background"]) < 0.2, (cue, cmp[cue])


@pytest.mark.slow
def test_relearning_on_all_50_training_photos_matches_the_release(testdata_dir, tmp_path):
  cmp, report = _compare_relearned(testdata_dir, tmp_path, 50, 20000)
  for cue in ("MS", "CC", "SS"):  # measured: TV <= 0.053, llr corr >= 0.98
    assert cmp[cue]["llr_corr"] > 0.97, (cue, cmp[cue])
    assert max(cmp[cue]["tv_object"], cmp[cue]["tv_background"]) < 0.07, (cue, cmp[cue])
  assert 0.06 < report["MS"]["pobj"] < 0.12  # release default 0.0797; measured 0.092


# ------------------------------------------------------------------------ VOC photos with masks --

def test_voc_decoding_of_real_targets(testdata_dir):
  samples = list(evaluate.load_voc_samples(testdata_dir / "voc_val_samples"))
  assert len(samples) == 14
  for name, image, labels in samples:
    assert image.shape == (513, 513, 3) and labels.shape == (513, 513)
    assert set(np.unique(labels)) <= set(range(21)) | {255}
    assert (labels == 255).any() and (labels == 0).any() and ((labels > 0) & (labels < 255)).any()


def test_objectness_beats_both_baselines_on_three_voc_photos(testdata_dir):
  """Photos 8, 114, 293: our AUC 0.89-0.95 vs <= 0.87 for both baselines, margins large enough to
  catch a regression quickly; the slow test below covers all 14."""
  for name, image, labels in evaluate.load_voc_samples(testdata_dir / "voc_val_samples"):
    if name not in ("8", "114", "293"):
      continue
    ours = evaluate.map_stats(objectness.heatmap(image, rng=0), labels)
    centre = evaluate.map_stats(evaluate.centre_prior(*image.shape[:2]), labels)
    sal = evaluate.map_stats(evaluate.saliency_baseline(image), labels)
    assert ours["auc"] > max(centre["auc"], sal["auc"]) + 0.02, (name, ours, centre, sal)
    assert ours["p_in"] > ours["p_out"] + 0.2


@pytest.mark.slow
def test_objectness_beats_both_baselines_on_all_14_voc_photos(testdata_dir):
  res = evaluate.evaluate_voc(testdata_dir / "voc_val_samples", seed=0)["summary"]
  ours, centre, sal = res["objectness"], res["centre_prior"], res["spectral_residual"]
  for key in ("mean_auc", "pooled_auc"):  # measured 0.858 / 0.837 vs 0.812 / 0.774, 0.770 / 0.779
    assert ours[key] > max(centre[key], sal[key]) + 0.02, (key, res)
  assert ours["mean_p_in"] - ours["mean_p_out"] > 0.25


# --------------------------------------------------------------------------------- the CLIs ----

def _tiny_photo_dir(testdata_dir, tmp_path):
  src = tmp_path / "in"
  src.mkdir()
  image, *_ = evaluate.load_reference(testdata_dir / RELEASE)
  small = Image.fromarray(image).resize((120, 80))
  small.save(src / "a.jpg")
  small.transpose(Image.FLIP_LEFT_RIGHT).convert("L").save(src / "b.png")  # grey: converted
  (src / "broken.jpg").write_bytes(b"not a jpeg")
  return src


def test_precompute_writes_resumes_and_counts_failures(testdata_dir, tmp_path):
  src = _tiny_photo_dir(testdata_dir, tmp_path)
  out = tmp_path / "out"
  res = precompute.run(out, images=src, workers=1, progress=False)
  assert res["done"] == 2 and res["skipped"] == 0 and list(res["failed"]) == ["broken"]
  assert "corrupt or unreadable image" in res["failed"]["broken"]   # image_io names the file
  for name in ("a", "b"):
    png = Image.open(out / f"{name}.png")
    assert png.mode == "L" and png.size == (120, 80)
  # The map is the API's map with the per-file seed.
  a = np.asarray(Image.open(src / "a.jpg").convert("RGB"))
  np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")),
                                objectness.heatmap(a, rng=precompute.image_seed(0, "a")))
  # Resumable: a second run skips the finished files; no temp files are left behind.
  stamp = (out / "a.png").stat().st_mtime_ns
  res = precompute.run(out, images=src, workers=1, progress=False)
  assert res["done"] == 0 and res["skipped"] == 2 and (out / "a.png").stat().st_mtime_ns == stamp
  assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_precompute_cli_parallel_matches_serial(testdata_dir, tmp_path, run_cli):
  src = _tiny_photo_dir(testdata_dir, tmp_path)
  (src / "broken.jpg").unlink()
  proc = run_cli("pointseg_jax.objectness", "precompute", f"--images={src}",
                 f"--out={tmp_path / 'par'}", "--workers=2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "2 written, 0 already there, 0 failed" in proc.stdout
  precompute.run(tmp_path / "ser", images=src, workers=1, progress=False)
  for name in ("a.png", "b.png"):
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "par" / name)),
                                  np.asarray(Image.open(tmp_path / "ser" / name)))


def test_evaluate_cli_on_two_photos(testdata_dir, tmp_path, run_cli):
  voc = tmp_path / "voc"
  voc.mkdir()
  for n in ("114", "293"):
    for kind in ("image", "target"):
      shutil.copy(testdata_dir / "voc_val_samples" / f"{n}_{kind}.png", voc)
  proc = run_cli("pointseg_jax.objectness.evaluate", f"--voc_dir={voc}",
                 f"--json={tmp_path / 'r.json'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  printed = proc.stdout
  assert "2 images" in printed and "centre_prior" in printed and "spectral_residual" in printed
  res = json.loads((tmp_path / "r.json").read_text())
  assert res["voc"]["images"] == 2 and "reference" not in res


def test_library_errors_of_precompute():
  with pytest.raises(ValueError, match="--images DIR is required"):
    precompute.run("/tmp/x", images=None)
  with pytest.raises(FileNotFoundError, match="not a folder"):
    precompute.list_images("/nonexistent/folder")


def _data_imports(source: str, path: pathlib.Path):
  """(line, module) of every import of pointseg_jax.data in a module's source, wherever it is
  (module level or lazily inside a function): `import`, `from ... import` (relative too),
  importlib.import_module / __import__ of a constant name."""
  package = ["pointseg_jax", *path.relative_to(REPO / "pointseg_jax").parent.parts]
  found = []
  for node in ast.walk(ast.parse(source, str(path))):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = package[:len(package) - node.level + 1] if node.level else []
      module = ".".join(base + ([node.module] if node.module else []))
      names = [module] + [f"{module}.{a.name}" for a in node.names]
    elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
          and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module",
                                                                             "__import__")):
      names = [str(node.args[0].value)]
    found += [(node.lineno, n) for n in names if re.fullmatch(r"pointseg_jax\.data(\..*)?", n)]
  return found


def test_the_import_check_finds_every_spelling_of_an_import_of_data():
  """The check below, on hand-written source: lazy, relative and importlib imports are found;
  another package whose name starts with 'data' and a docstring naming a data command are not."""
  source = textwrap.dedent('''\
      import numpy
      def f():
        from pointseg_jax.data.prepare import get_builder
        from pointseg_jax import data
        from ..data import spec
        import pointseg_jax.data.pipeline as p
        importlib.import_module("pointseg_jax.data.convert")
        from pointseg_jax import database, labels
        """python -m pointseg_jax.data.objectness_maps"""
        from . import render
      ''')
  found = _data_imports(source, REPO / "pointseg_jax" / "objectness" / "any.py")
  assert sorted({line for line, _ in found}) == [3, 4, 5, 6, 7], found


def test_the_prior_never_imports_the_data_package():
  """objectness/ sits below data/ (data/objectness_maps.py, objectness_eval.py and
  objectness_learn.py read TFDS examples and call the prior): no module of objectness/ imports
  data/, at import time or lazily inside a function."""
  sources = sorted((REPO / "pointseg_jax" / "objectness").rglob("*.py"))
  assert len(sources) >= 10, sources
  found = {str(p.relative_to(REPO)): _data_imports(p.read_text(), p) for p in sources}
  assert not {k: v for k, v in found.items() if v}, found


@pytest.mark.e2e
def test_importing_the_prior_loads_nothing_of_data():
  """At run time too: a fresh interpreter importing every command of the prior has no module of
  data/ loaded (what the source check above cannot see: an import through another package)."""
  code = ("import sys, pointseg_jax.objectness.__main__, pointseg_jax.objectness.precompute; "
          "print(sorted(m for m in sys.modules if m.startswith('pointseg_jax.data')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]", out.stdout
