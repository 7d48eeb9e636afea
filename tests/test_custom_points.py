"""custom_points: a user's own folder (images, click JSON, masks for two val images) -> TFDS ->
pipeline -> a `tiny` training run; a Label Studio export through the convert CLI into it; bad
folders fail with a DataError naming the file, or are counted and logged."""
import logging
import os
import shutil
import subprocess
import sys

from absl import logging as absl_logging
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from pointseg_jax import config_lib
from pointseg_jax import labels
from pointseg_jax import train
from pointseg_jax.data import click_json
from pointseg_jax.data import convert
from pointseg_jax.data import features
from pointseg_jax.data import pipeline
from pointseg_jax.data.prepare import BUILDERS, dataset_names, get_builder, prepare
from pointseg_jax.data import spec as spec_lib
from pointseg_jax.data.custom_points import custom_points as cp
from pointseg_jax.data.custom_points import CustomPoints
from pointseg_jax.errors import ConfigError, DataError

H, W = 40, 56
TRAIN = ["cat_1", "cat_2", "dog_3"]     # clicked, no mask
VAL = ["val_a", "val_b"]                # masks
NOT_ANNOTATED = "plain_4"               # no clicks, no mask: left out of train
COMPUTED_OBJECTNESS = "dog_3"           # the one map the build computes (about 1 s)
CLS = {"cat_1": 8, "cat_2": 8, "dog_3": 12, "val_a": 15, "val_b": 3}


def _objects(cls):
  """A class-`cls` ellipse with a 1-px void band (VOC style), and the pixel at its centre."""
  yy, xx = np.mgrid[:H, :W]
  inside = ((yy - 20) / 10.0) ** 2 + ((xx - 28) / 14.0) ** 2
  mask = np.zeros((H, W), np.uint8)
  mask[inside <= 1] = cls
  mask[(inside > 1) & (inside <= 1.25)] = 255
  return mask, (20.5, 28.5)


def make_folder(root, with_objectness=True):
  """The folder a user would have; returns the clicks written (by id)."""
  rng = np.random.default_rng(0)
  for d in ("images", "masks", "objectness"):
    (root / d).mkdir(parents=True, exist_ok=True)
  for k, image_id in enumerate(TRAIN + VAL + [NOT_ANNOTATED]):
    photo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    if k % 2:
      Image.fromarray(photo).save(root / "images" / f"{image_id}.png")
    else:
      Image.fromarray(photo).save(root / "images" / f"{image_id}.jpg", quality=90)
    if with_objectness and image_id != COMPUTED_OBJECTNESS:
      labels.write_objectness_png(root / "objectness" / f"{image_id}.png",
                                  rng.integers(0, 256, (H, W), dtype=np.uint8))
  for image_id in VAL:
    labels.write_label_png(root / "masks" / f"{image_id}.png", _objects(CLS[image_id])[0])
  clicks = {}
  for image_id in TRAIN + ["val_a", "missing_image"]:
    y, x = _objects(CLS.get(image_id, 1))[1]
    n = 2 if image_id == "cat_2" else 1
    clicks[image_id] = {"y": np.full(n, y, np.float32), "x": np.array([x, x + 3.0][:n], np.float32),
                        "cls": np.full(n, CLS.get(image_id, 1), np.int32),
                        "rank": np.arange(1, n + 1, dtype=np.int32),
                        "annotator": np.zeros(n, np.int32)}
  clicks["cat_1"]["x"][0] = W + 9.0       # beyond the far border: clipped to the last column
  click_json.write_click_json(root / "clicks.json", clicks)
  return clicks


class _Logs:
  def __enter__(self):
    self.records = []
    self.handler = logging.Handler()
    self.handler.emit = self.records.append
    absl_logging.get_absl_logger().addHandler(self.handler)
    return self

  def __exit__(self, *exc):
    absl_logging.get_absl_logger().removeHandler(self.handler)

  @property
  def text(self):
    return "\n".join(r.getMessage() for r in self.records)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("mine")
  clicks = make_folder(root)
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  with _Logs() as logs:
    builder = prepare("custom_points", data_dir, manual_dir=str(root))
  examples = {split: {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}
              for split in ("train", "val")}
  return root, data_dir, clicks, builder, examples, logs.text


def test_registered_with_the_shared_features(built):
  builder = built[3]
  assert isinstance(builder, CustomPoints) and "custom_points" in BUILDERS
  assert builder.info.features.to_json() == features.click_features("jpeg", asked=True).to_json()
  assert "custom_points/default" in dataset_names()
  assert "custom_points/no_objectness" in dataset_names()


def test_splits_and_what_each_example_holds(built):
  root, _, clicks, _, examples, logs = built
  assert sorted(examples["train"]) == sorted(TRAIN) and sorted(examples["val"]) == VAL
  for image_id, ex in examples["train"].items():   # clicks only: no ground truth
    assert (ex["mask"] == 255).all() and (ex["instance_mask"] == 0).all()
    assert not ex["has_instances"]
    assert list(ex["classes"]) == [CLS[image_id]]          # image label = the clicked class
    for group in ("random_clicks", "squiggles", "background_clicks", "boxes"):
      assert len(ex[group]["cls"]) == 0, group
    want = clicks[image_id]
    np.testing.assert_array_equal(ex["clicks"]["y"], want["y"])
    np.testing.assert_array_equal(ex["clicks"]["rank"], want["rank"])
    np.testing.assert_array_equal(ex["clicks"]["x"], np.minimum(want["x"], W - 1))
  assert examples["train"]["cat_1"]["clicks"]["x"][0] == W - 1
  for image_id, ex in examples["val"].items():     # masks: ground truth and simulated supervision
    mask = _objects(CLS[image_id])[0]
    np.testing.assert_array_equal(ex["mask"][..., 0], mask)
    assert list(ex["classes"]) == [CLS[image_id]]
    assert len(ex["random_clicks"]["cls"]) == 1 and len(ex["boxes"]["cls"]) == 1
  assert len(examples["val"]["val_a"]["clicks"]["x"]) == 1
  assert len(examples["val"]["val_b"]["clicks"]["x"]) == 0
  # Every map is there: the missing one was computed into the folder, the others read back.
  assert (root / "objectness" / f"{COMPUTED_OBJECTNESS}.png").is_file()
  for split in examples.values():
    for image_id, ex in split.items():
      assert ex["has_objectness"]
      np.testing.assert_array_equal(
          ex["objectness"][..., 0], labels.read_objectness_png(root / "objectness" / f"{image_id}.png"))
  # Every drop and change is logged with the ids.
  assert f"1 images have no entry in clicks.json and no mask" in logs and NOT_ANNOTATED in logs
  assert "names 1 images that are not in" in logs and "missing_image" in logs
  assert "1 out-of-range clicks clipped" in logs and "cat_1" in logs


def test_the_pipeline_reads_it(built):
  _, data_dir, _, _, _, _ = built
  spec = spec_lib.DataSpec(dataset="custom_points", data_dir=data_dir, image_size=(64, 64),
                           label_kind="one_point")
  batch = next(pipeline.make_dataset(spec, "train", batch_size=3, train=True, seed=0))
  assert batch["image"].shape == (3, 64, 64, 3)
  assert (batch["labels"] == 255).all()                 # no ground truth in train
  assert sorted(np.unique(batch["sparse_labels"]).tolist()) == [8, 12, 255]
  assert batch["present"][:, [8, 12]].any(axis=0).all() and batch["present"][:, 0].all()
  val = next(pipeline.make_dataset(spec, "val", batch_size=2, train=False, seed=0))
  assert sorted(np.unique(val["labels"]).tolist()) == [0, 3, 15, 255]


def test_a_tiny_training_run(built, tmp_path):
  root, data_dir, _, _, _, _ = built
  config = config_lib.get_config("point", "tiny")
  config.data.update(dataset="custom_points", manual_dir=str(root), data_dir=data_dir)
  config.train.update(num_steps=2, eval_every=2, checkpoint_every=2,
                      progress_bar=False)
  summary = train.train_and_evaluate(config, tmp_path / "run")
  assert summary["step"] == 2 and np.isfinite(summary["eval/miou"])
  # A label kind that needs masks is refused: the train images have none.
  config.data.label_kind = "box"
  with pytest.raises(ConfigError, match="label_kind = 'box'.*3 train images"):
    train.train_and_evaluate(config, tmp_path / "run_box")


def test_a_changed_folder_is_not_silently_ignored(built, tmp_path):
  root, data_dir, _, _, _, _ = built
  prepare("custom_points", data_dir, manual_dir=str(root))   # unchanged: reused
  copy = tmp_path / "copy"
  shutil.copytree(root, copy)
  prepare("custom_points", data_dir, manual_dir=str(copy))   # same files elsewhere: fine
  data = click_json.read_click_json(copy / "clicks.json")
  data["plain_4"] = []
  click_json.write_click_json(copy / "clicks.json", {k: click_json.rows_to_arrays(
      [{"annotator": 0, **c} for c in v]) for k, v in data.items()})
  with pytest.raises(DataError, match="delete .*custom_points.* to rebuild"):
    prepare("custom_points", data_dir, manual_dir=str(copy))


def _build(root, tmp_path, dataset="custom_points/no_objectness"):
  with _Logs() as logs:
    builder = prepare(dataset, str(tmp_path / "tfds"), manual_dir=str(root))
  return builder, logs.text


@pytest.mark.parametrize("case", ["no_clicks_file", "no_images", "unknown_class", "mask_size",
                                  "val_without_mask", "split_id_unknown", "no_mask_at_all",
                                  "ids_do_not_match", "two_files_one_id"])
def test_bad_folders_name_the_file_and_the_fix(tmp_path, case):
  root = tmp_path / "mine"
  make_folder(root, with_objectness=False)
  expect = {
      "no_clicks_file": "clicks.json: click file not found; write it with",
      "no_images": "images: folder not found",
      "unknown_class": r"val_b.png: unknown class ids \[30\].*21 PASCAL VOC classes.*--label_map",
      "mask_size": "val_b.png: mask shape .* differs from its image",
      "val_without_mask": r"val images without a mask .*\['cat_1'\]",
      "split_id_unknown": r"train.txt: ids without an image .*\['nope'\]",
      "no_mask_at_all": "the val split is empty.* needs ground truth",
      "ids_do_not_match": "none of its 5 image ids.*file name without extension",
      "two_files_one_id": "have the same image id",
  }[case]
  if case == "no_clicks_file":
    (root / "clicks.json").unlink()
  elif case == "no_images":
    shutil.rmtree(root / "images")

  elif case == "unknown_class":
    mask = _objects(3)[0]
    mask[0, 0] = 30
    im = Image.fromarray(mask)
    im.putpalette(labels.voc_palette().ravel().tolist())
    im.save(root / "masks" / "val_b.png")
  elif case == "mask_size":
    labels.write_label_png(root / "masks" / "val_b.png", np.zeros((H + 1, W), np.uint8))
  elif case == "val_without_mask":
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("val_a\ncat_1\n")
  elif case == "split_id_unknown":
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("cat_1\nnope\n")
  elif case == "no_mask_at_all":
    shutil.rmtree(root / "masks")
  elif case == "ids_do_not_match":
    data = click_json.read_click_json(root / "clicks.json")
    (root / "clicks.json").write_text(__import__("json").dumps({k + ".jpg": v for k, v in data.items()}))
  elif case == "two_files_one_id":
    shutil.copy(root / "images" / "cat_1.jpg", root / "images" / "cat_1.jpeg")
  error = DataError
  if case == "no_images":
    from pointseg_jax.errors import MissingInputError as error
    expect = "has no images/ folder: pass your folder as manual_dir"
  with pytest.raises(error, match=expect):
    _build(root, tmp_path)


def test_unreadable_image_is_left_out_and_logged(tmp_path):
  root = tmp_path / "mine"
  make_folder(root, with_objectness=False)
  (root / "images" / "dog_3.jpg").write_bytes(b"not a jpeg")
  builder, logs = _build(root, tmp_path)
  assert builder.info.splits["train"].num_examples == 2
  assert "left out dog_3" in logs and "1 unreadable images left out" in logs
  ex = next(iter(tfds.as_numpy(builder.as_dataset(split="val"))))
  assert not ex["has_objectness"] and not (root / "objectness" / "val_a.png").exists()


@pytest.mark.e2e
def test_label_studio_export_converts_and_trains(tmp_path):
  """One conversion command: a Label Studio export -> clicks.json -> custom_points -> training."""
  root = tmp_path / "mine"
  make_folder(root)
  rows = {}
  for image_id in TRAIN:     # a person in Label Studio: one click on the object in each image
    y, x = _objects(CLS[image_id])[1]
    rows[image_id] = [{"x": x, "y": y, "cls": CLS[image_id], "rank": 1, "annotator": 0}]
  convert.write_tool("labelstudio", str(tmp_path / "ls.json"), rows, str(root / "images"))
  (root / "clicks.json").unlink()
  r = subprocess.run([sys.executable, "-m", "pointseg_jax.data.convert", "--from=labelstudio",
                      f"--input={tmp_path / 'ls.json'}", f"--output={root / 'clicks.json'}"],
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  config = config_lib.get_config("point", "tiny")
  config.data.update(dataset="custom_points", manual_dir=str(root), data_dir=str(tmp_path / "tfds"))
  config.train.update(num_steps=1, eval_every=1, checkpoint_every=1,
                      progress_bar=False)
  summary = train.train_and_evaluate(config, tmp_path / "run")
  assert summary["step"] == 1
  builder = get_builder("custom_points", str(tmp_path / "tfds"))
  for ex in tfds.as_numpy(builder.as_dataset(split="train")):
    image_id = ex["id"].decode()
    assert list(ex["clicks"]["cls"]) == [CLS[image_id]]
    assert ex["clicks"]["x"][0] == np.float32(rows[image_id][0]["x"])
