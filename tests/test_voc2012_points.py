"""voc2012_points builder on a tiny VOCdevkit / SBD / click-JSON tree fabricated by the test.

Equivalent of tfds.testing.DatasetBuilderTestCase (which needs `dill`, not in the pinned stack):
the builder is registered, builds from manual_dir into a tmp data_dir, has the split sizes of the
paper's protocol, stores exactly what the files hold, and every bad input fails with a DataError
naming the file.
"""
import contextlib
import io
import json
import logging
import os
import shutil

from absl import logging as absl_logging
import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from pointseg_jax.data import click_json
from pointseg_jax.data import features
from pointseg_jax.errors import DataError
from pointseg_jax.data.voc2012_points import voc2012_points as vp
from pointseg_jax.data.voc2012_points import Voc2012Points
from voc_tree import NOT_IN_JSON, VOC_VAL, WITH_OBJECTNESS, H, W, make_tree
from voc_tree import objects as _objects, palette_png as _palette_png

@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("manual")
  truth, main, supp = make_tree(root)
  return root, truth, main, supp


@pytest.fixture(scope="module")
def built(tree, tmp_path_factory):
  root = tree[0]
  logger = absl_logging.get_absl_logger()
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  logger.addHandler(handler)
  stdout = io.StringIO()
  try:
    with contextlib.redirect_stdout(stdout):
      builder = Voc2012Points(data_dir=str(tmp_path_factory.mktemp("tfds")))
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  finally:
    logger.removeHandler(handler)
  examples = {
      split: {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}
      for split in ("train", "val")}
  raw_images = {ex["id"].decode(): ex["image"] for ex in tfds.as_numpy(builder.as_dataset(
      split="train+val", decoders={"image": tfds.decode.SkipDecoding()}))}
  return builder, examples, raw_images, [r.getMessage() for r in records], stdout.getvalue()


def test_registered_and_features(tree, tmp_path):
  builder = tfds.builder("voc2012_points", data_dir=str(tmp_path))   # registered by the import
  assert isinstance(builder, Voc2012Points)
  assert str(builder.version) == "1.1.0"
  assert builder.info.features.to_json() == features.click_features("jpeg", asked=True).to_json()
  for name in ("VOCdevkit/VOC2012", "benchmark_RELEASE/dataset", vp.MAIN_JSON, vp.SUPP_JSON,
               "objectness/<id>.png"):
    assert name in Voc2012Points.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_splits_follow_the_paper_protocol(built):
  builder, examples, _, _, _ = built
  assert builder.info.splits["train"].num_examples == 4
  assert builder.info.splits["val"].num_examples == 2
  assert sorted(examples["train"]) == ["2007_000001", "2007_000002", "2009_000005", "2010_000006"]
  assert sorted(examples["val"]) == VOC_VAL


def test_images_and_masks_are_the_files(built, tree):
  root, truth, _, _ = tree
  _, examples, raw, _, _ = built
  for split in examples.values():
    for image_id, ex in split.items():
      jpeg = (root / "VOCdevkit/VOC2012/JPEGImages" / f"{image_id}.jpg").read_bytes()
      assert raw[image_id] == jpeg                        # stored unchanged, never re-encoded
      mask, inst = truth[image_id]
      np.testing.assert_array_equal(ex["mask"][..., 0], mask)
      np.testing.assert_array_equal(ex["instance_mask"][..., 0], inst)
      assert ex["has_instances"]
      assert ex["image"].shape == (H, W, 3)
      assert list(ex["classes"]) == [c for c in np.unique(mask) if 1 <= c <= 20]
  # 2007_000002 has both: the VOC PNG (with 255 void bands) wins over SBD's .mat.
  assert (examples["train"]["2007_000002"]["mask"] == 255).any()
  assert not (examples["train"]["2009_000005"]["mask"] == 255).any()


def test_clicks_from_json_clipped_dropped_and_logged(built, tree):
  _, _, main, supp = tree
  _, examples, _, messages, _ = built
  ex = examples["train"]["2007_000001"]["clicks"]
  n_main = len(main["2007_000001"])
  # main -> annotator 0 (exact float coordinates), supp -> 1, 2 (two rank-1 clicks per class).
  np.testing.assert_array_equal(ex["annotator"], [0] * n_main + [1, 2] * (len(supp["2007_000001"]) // 2))
  np.testing.assert_array_equal(ex["x"][:2], [10.25, 11.25])
  np.testing.assert_array_equal(ex["y"][:2], [20.75, 20.75])
  assert ex["x"][n_main - 1] == W - 1                  # x = 71.5 >= W = 56: clipped to the last column
  val = examples["val"]["2007_000003"]["clicks"]
  assert len(val["x"]) == len(main["2007_000003"]) + len(supp["2007_000003"]) - 1   # x = -12 dropped
  assert (val["x"] >= 0).all()
  missing = examples["train"][NOT_IN_JSON]["clicks"]
  assert len(missing["x"]) == 0
  text = "\n".join(messages)
  assert "1 out-of-range clicks clipped into the image in 1 images: 2007_000001" in text
  assert "1 clicks with negative coordinates dropped in 1 images: 2007_000003" in text
  assert f"1 images have no entry in the click JSON (stored with no clicks): {NOT_IN_JSON}" in text


def test_asked_classes_from_the_click_files(built, tree, tmp_path):
  """Released files (plain lists) asked every class; an extended file's "asked" reaches `asked`."""
  _, examples, _, _, _ = built
  for split in examples.values():
    for ex in split.values():
      assert ex["asked"].all()
  root, truth, main, _ = tree
  image = "2007_000001"
  cls = sorted({c["cls"] for c in main[image]})
  path = tmp_path / "main.json"
  path.write_text(json.dumps({image: {"asked": cls + [19], "clicks": main[image]}}))
  asked = click_json.load_asked(str(path), str(root / vp.SUPP_JSON))
  assert asked[image].all()          # the supp file (a plain list) asked every class
  asked = click_json.load_asked(str(path))
  ex = vp.make_example(vp.Sources(str(root)), image, None, vp.Counts(), asked)
  assert np.flatnonzero(ex["asked"]).tolist() == [0] + cls + [19]


def test_build_prints_nothing_to_stdout(built):
  """Issue 15: TFDS printed "Downloading and preparing dataset ..." for a local build."""
  stdout = built[-1]
  assert "Downloading and preparing" not in stdout and "downloaded and prepared" not in stdout
  assert stdout == ""


def test_duplicate_image_in_click_json(bad_tree, tmp_path):
  """Issue 15: a second entry for one image silently replaced the first."""
  text = (bad_tree / vp.MAIN_JSON).read_text()
  (bad_tree / vp.MAIN_JSON).write_text(
      text[:-1] + ', "2007_000001": [{"x": 1.0, "y": 2.0, "cls": 3, "rank": 1}]}')
  with pytest.raises(DataError, match=rf"{vp.MAIN_JSON}: key '2007_000001' appears twice"):
    _build(bad_tree, tmp_path)


def test_simulated_supervision_and_objectness(built, tree):
  root, truth, _, _ = tree
  _, examples, _, _, _ = built
  obj = np.asarray(Image.open(root / "objectness" / f"{WITH_OBJECTNESS}.png"))
  for split in examples.values():
    for image_id, ex in split.items():
      mask = truth[image_id][0]
      rc = ex["random_clicks"]
      assert len(rc["cls"]) == len(ex["classes"])
      np.testing.assert_array_equal(mask[rc["y"].astype(int), rc["x"].astype(int)], rc["cls"])
      bg = ex["background_clicks"]
      assert (mask[bg["y"].astype(int), bg["x"].astype(int)] == 0).all() and len(bg["y"]) == 3
      assert len(ex["boxes"]["cls"]) == 2 and set(ex["squiggles"]["stroke"]) == {0, 1}
      if image_id == WITH_OBJECTNESS:
        assert ex["has_objectness"]
        np.testing.assert_array_equal(ex["objectness"][..., 0], obj)
      else:
        assert not ex["has_objectness"] and not ex["objectness"].any()


def test_examples_are_deterministic(tree):
  src = vp.Sources(str(tree[0]))
  a = vp.make_example(src, "2009_000005", None, vp.Counts())
  b = vp.make_example(src, "2009_000005", None, vp.Counts())
  for key in ("clicks", "random_clicks", "squiggles", "background_clicks", "boxes"):
    for field in a[key]:
      np.testing.assert_array_equal(a[key][field], b[key][field])
  # The seed is a SHA-256 of the id (stable across processes), not Python's hash().
  assert vp.id_seed("2009_000005") == vp.id_seed("2009_000005") != vp.id_seed("2009_000006")
  # First 8 bytes (little endian) of sha256(b"voc2012_points/2007_000001"), as any process gets.
  assert vp.id_seed("2007_000001") == 0xC813C91342FFCD12


# ----------------------------------------------------------------------------------------------
# Bad input: one clear error naming the file.


@pytest.fixture
def bad_tree(tree, tmp_path):
  root = tmp_path / "manual"
  shutil.copytree(tree[0], root)
  return root


def _build(root, tmp_path):
  builder = Voc2012Points(data_dir=str(tmp_path / "tfds_bad"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))


def test_missing_voc_dir(bad_tree, tmp_path):
  shutil.rmtree(bad_tree / "VOCdevkit")
  with pytest.raises(DataError, match=r"VOCdevkit/VOC2012: directory not found; unpack VOCtrainval"):
    _build(bad_tree, tmp_path)


def test_malformed_json(bad_tree, tmp_path):
  (bad_tree / vp.MAIN_JSON).write_text('{"2007_000001": [{"x": 1.0, "y": 2.0, "cls": 3')
  with pytest.raises(DataError, match=rf"{vp.MAIN_JSON}: malformed JSON"):
    _build(bad_tree, tmp_path)


def test_json_with_bad_class(bad_tree, tmp_path):
  (bad_tree / vp.SUPP_JSON).write_text('{"2007_000001": [{"x": 1.0, "y": 2.0, "cls": 21, "rank": 1}]}')
  with pytest.raises(DataError, match=rf"{vp.SUPP_JSON}: image '2007_000001': click cls 21"):
    _build(bad_tree, tmp_path)


def test_missing_image(bad_tree):
  os.remove(bad_tree / "VOCdevkit/VOC2012/JPEGImages/2009_000005.jpg")
  with pytest.raises(DataError, match=r"2009_000005.jpg: image not found"):
    vp.make_example(vp.Sources(str(bad_tree)), "2009_000005", None, vp.Counts())


def test_corrupt_image(bad_tree):
  path = bad_tree / "VOCdevkit/VOC2012/JPEGImages/2007_000001.jpg"
  path.write_bytes(path.read_bytes()[:200])
  with pytest.raises(DataError, match=r"2007_000001.jpg: corrupt or unreadable image"):
    vp.make_example(vp.Sources(str(bad_tree)), "2007_000001", None, vp.Counts())


def test_unknown_class_id_in_png(bad_tree):
  mask, _ = _objects(np.random.default_rng(1), void=True)
  mask[0, 0] = 30
  _palette_png(bad_tree / "VOCdevkit/VOC2012/SegmentationClass/2007_000001.png", mask)
  with pytest.raises(DataError, match=r"SegmentationClass/2007_000001.png: unknown class ids \[30\]"):
    vp.make_example(vp.Sources(str(bad_tree)), "2007_000001", None, vp.Counts())


def test_unknown_class_id_in_mat(bad_tree):
  mask, _ = _objects(np.random.default_rng(1), void=False)
  mask[0, 0] = 77
  scipy.io.savemat(bad_tree / "benchmark_RELEASE/dataset/cls/2009_000005.mat",
                   {"GTcls": {"Segmentation": mask}})
  with pytest.raises(DataError, match=r"cls/2009_000005.mat: unknown class ids \[77\]"):
    vp.make_example(vp.Sources(str(bad_tree)), "2009_000005", None, vp.Counts())


def test_corrupt_and_wrong_mat(bad_tree):
  path = bad_tree / "benchmark_RELEASE/dataset/cls/2009_000005.mat"
  path.write_bytes(b"not a mat file at all")
  with pytest.raises(DataError, match=r"cls/2009_000005.mat: cannot read .mat file"):
    vp.make_example(vp.Sources(str(bad_tree)), "2009_000005", None, vp.Counts())
  scipy.io.savemat(path, {"other": np.zeros((H, W))})
  with pytest.raises(DataError, match=r"2009_000005.mat: expected a MATLAB struct 'GTcls'"):
    vp.make_example(vp.Sources(str(bad_tree)), "2009_000005", None, vp.Counts())


def test_missing_mask(bad_tree):
  os.remove(bad_tree / "benchmark_RELEASE/dataset/cls/2009_000005.mat")
  with pytest.raises(DataError, match=r"no mask for image '2009_000005'"):
    vp.make_example(vp.Sources(str(bad_tree)), "2009_000005", None, vp.Counts())


def test_mask_image_size_mismatch(bad_tree):
  for d in ("SegmentationClass", "SegmentationObject"):
    _palette_png(bad_tree / f"VOCdevkit/VOC2012/{d}/2007_000001.png", np.zeros((H + 1, W), np.uint8))
  with pytest.raises(DataError, match=r"2007_000001.png: mask shape \(41, 56\) differs from its image"):
    vp.make_example(vp.Sources(str(bad_tree)), "2007_000001", None, vp.Counts())


def test_colour_objectness_rejected(bad_tree):
  Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(bad_tree / "objectness/2007_000001.png")
  with pytest.raises(DataError, match=r"objectness/2007_000001.png: objectness must be a grayscale"):
    vp.make_example(vp.Sources(str(bad_tree)), "2007_000001", None, vp.Counts())


def test_cli_reports_a_data_error_in_one_line(bad_tree, tmp_path, run_cli):
  shutil.rmtree(bad_tree / "VOCdevkit")
  proc = run_cli("pointseg_jax.data.voc2012_points", f"--manual_dir={bad_tree}",
                 f"--data_dir={tmp_path / 'tfds'}")
  assert "VOCdevkit/VOC2012: directory not found" in run_cli.error(proc)
