"""The synthetic_points TFDS builder and `prepare`: builds, decodes every field, deterministic."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pointseg_jax import IGNORE_INDEX
from pointseg_jax import errors
from pointseg_jax import objectness
from pointseg_jax.data import features as features_lib
from pointseg_jax.data import prepare
from pointseg_jax.data.synthetic_points import SyntheticPoints, SyntheticPointsConfig
from pointseg_jax.data.synthetic_points import synthetic_points as sp
from pointseg_jax.data import objectness_maps

POINT_FIELDS = ("clicks", "random_clicks", "background_clicks", "squiggles")


def _examples(builder, split):
  return {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  builder = prepare("synthetic_points/tiny", data_dir=data_dir)
  return builder, {split: _examples(builder, split) for split in sp.SPLITS}


def test_tiny_builds_with_its_split_sizes(tiny):
  builder, examples = tiny
  cfg = builder.builder_config
  assert cfg.name == "tiny"
  assert builder.info.splits["train"].num_examples == cfg.num_train == len(examples["train"])
  assert builder.info.splits["val"].num_examples == cfg.num_val == len(examples["val"])


def test_features_are_exactly_the_shared_spec(tiny):
  builder, examples = tiny
  spec = features_lib.click_features("png")
  assert builder.info.features.get_serialized_info() == spec.get_serialized_info()
  ex = next(iter(examples["train"].values()))
  assert set(ex) == set(spec.keys())


def test_ids_unique_and_stable(tiny):
  _, examples = tiny
  assert sorted(examples["train"]) == [sp.example_id("train", i) for i in range(48)]
  assert sorted(examples["val"]) == [sp.example_id("val", i) for i in range(16)]


def test_every_field_decodes_consistently(tiny):
  _, examples = tiny
  for split in sp.SPLITS:
    for ex in examples[split].values():
      h, w, c = ex["image"].shape
      assert c == 3 and max(h, w) == 64 and ex["image"].dtype == np.uint8
      for k in ("mask", "instance_mask", "objectness"):
        assert ex[k].shape == (h, w, 1) and ex[k].dtype == np.uint8, k
      assert ex["has_instances"] and ex["has_objectness"]
      mask = ex["mask"][..., 0]
      present = np.unique(mask[(mask > 0) & (mask != IGNORE_INDEX)])
      np.testing.assert_array_equal(ex["classes"], present)
      for field in POINT_FIELDS:
        pts = ex[field]
        assert pts["y"].dtype == np.float32 and pts["cls"].dtype == np.int32
        assert np.all((pts["y"] >= 0) & (pts["y"] < h) & (pts["x"] >= 0) & (pts["x"] < w)), field
      assert np.all(ex["background_clicks"]["cls"] == 0)
      # Annotators click present classes only (a misclick lands off the object, not on a new class).
      assert set(ex["clicks"]["cls"].tolist()) <= set(present.tolist())
      assert set(ex["random_clicks"]["cls"].tolist()) == set(present.tolist())
      assert np.all(ex["clicks"]["rank"] >= 1) and set(ex["clicks"]["annotator"]) <= {0, 1, 2}
      b = ex["boxes"]
      assert np.all(b["ymin"] <= b["ymax"]) and np.all(b["xmin"] <= b["xmax"])


def test_main_annotator_clicks_almost_every_present_class(tiny):
  """1Point exists for each (image, class) bar the crowd's ~1 % missed classes (paper §4)."""
  _, examples = tiny
  pairs = clicked = 0
  for ex in examples["train"].values():
    first = (ex["clicks"]["annotator"] == 0) & (ex["clicks"]["rank"] == 1)
    for c in ex["classes"]:
      pairs += 1
      clicked += np.count_nonzero(first & (ex["clicks"]["cls"] == c)) == 1
  assert clicked / pairs > 0.9, (clicked, pairs)


def test_stored_example_is_the_recipe_output_and_objectness_comes_from_pixels(tiny):
  """Rebuilding one example from (seed, split, index) gives the stored bytes; the objectness map is
  what `objectness.heatmap` makes from the stored image alone."""
  builder, examples = tiny
  cfg = builder.builder_config
  assert str(builder.version) == "2.0.0"
  recipe = sp._Recipe(cfg.seed, cfg.max_side, cfg.objectness_windows, cfg.objectness_candidates,
                      sp.OBJECTNESS_MODELS["2.0.0"])
  key, fresh = sp.make_example(recipe, "val", 3)
  stored = examples["val"][key]
  np.testing.assert_array_equal(fresh["image"], stored["image"])
  np.testing.assert_array_equal(fresh["mask"], stored["mask"])
  for k, v in fresh["clicks"].items():
    np.testing.assert_array_equal(v, stored["clicks"][k])
  obj_seq = np.random.SeedSequence([cfg.seed, sp.SPLITS.index("val"), 3]).spawn(3)[2]
  heat = objectness.heatmap(stored["image"], rng=np.random.default_rng(obj_seq),
                            num_windows=cfg.objectness_windows,
                            distribution_windows=cfg.objectness_candidates,
                            model=objectness.load_packaged("synthetic_v2.npz"))
  np.testing.assert_array_equal(heat, stored["objectness"][..., 0])


def test_version_1_0_0_is_still_buildable_with_the_release_model(tmp_path):
  """RESULTS.md v1 trained on 1.0.0: its maps came from the release's model, unsmoothed."""
  builder = tfds.builder("synthetic_points/tiny:1.0.0", data_dir=str(tmp_path))
  assert str(builder.version) == "1.0.0" and sp.OBJECTNESS_MODELS["1.0.0"] == "alexe_v22.npz"
  assert objectness.load_packaged("alexe_v22.npz").smooth_k == 0
  recipe = sp._Recipe(1, 48, 100, 2000, sp.OBJECTNESS_MODELS["1.0.0"])
  _, ex = sp.make_example(recipe, "val", 0)
  obj_seq = np.random.SeedSequence([1, sp.SPLITS.index("val"), 0]).spawn(3)[2]
  np.testing.assert_array_equal(
      ex["objectness"][..., 0], objectness.heatmap(ex["image"], rng=np.random.default_rng(obj_seq),
                                                   num_windows=100, distribution_windows=2000))


def test_objectness_is_informative_but_imperfect(tiny):
  from pointseg_jax.data.synthetic_points import stats
  _, examples = tiny
  acc = stats.Accumulator()
  for ex in examples["train"].values():
    acc.add(ex["mask"], ex["instance_mask"], ex["objectness"])
  auc = acc.summary()["objectness_auc_pooled"]
  assert 0.6 < auc < 0.95, auc


def test_prepare_is_idempotent(tiny):
  builder, _ = tiny
  data_dir = os.fspath(builder.data_dir_root)
  files = sorted(os.listdir(builder.data_dir))
  mtimes = [os.path.getmtime(os.path.join(builder.data_dir, f)) for f in files]
  again = prepare("synthetic_points/tiny", data_dir=data_dir)
  assert again.is_prepared() and sorted(os.listdir(again.data_dir)) == files
  assert [os.path.getmtime(os.path.join(again.data_dir, f)) for f in files] == mtimes


@pytest.mark.e2e
def test_a_parallel_train_first_build_is_the_serial_builds_first_records(tmp_path, capfd):
  """The same config in two data dirs, one serial and one with 2 worker processes that builds only
  `train_first=4` of the 11 train images (synthetic_points/demo's mechanism): its train split is
  the same bytes, in the same order, as the first 4 records of the serial build's (what
  `data.train_fraction` trains on); val is whole and identical; every decoded field matches.

  Neither build prints to stdout (issue 15: TFDS printed "Downloading and preparing dataset").
  """
  from pointseg_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  cfg = dict(num_train=11, num_val=3, max_side=40, seed=7, objectness_windows=50,
             objectness_candidates=1000)
  full = SyntheticPoints(config=SyntheticPointsConfig(name="micro", **cfg),
                         data_dir=str(tmp_path / "a"), num_workers=1)
  first = SyntheticPoints(config=SyntheticPointsConfig(name="micro_first", train_first=4, **cfg),
                          data_dir=str(tmp_path / "b"), num_workers=2)
  full.download_and_prepare()
  first.download_and_prepare()
  assert capfd.readouterr().out == ""
  assert first.info.splits["train"].num_examples == 4
  full_train = pipeline.read_records(full, "train")
  assert pipeline.read_records(first, "train") == full_train[:4]
  assert pipeline.read_records(first, "train") != full_train[-4:]   # not just any four
  assert pipeline.read_records(first, "val") == pipeline.read_records(full, "val")
  ids = sorted(_examples(first, "train"))
  assert ids == [sp.example_id("train", i) for i in sp.first_in_file_order("train", 11, 4)]
  for split in sp.SPLITS:
    ea, eb = _examples(full, split), _examples(first, split)
    for key in eb:
      flat_a = tfds.core.utils.flatten_nest_dict(ea[key])
      flat_b = tfds.core.utils.flatten_nest_dict(eb[key])
      assert flat_a.keys() == flat_b.keys()
      for k in flat_a:
        np.testing.assert_array_equal(flat_a[k], flat_b[k], err_msg=f"{key} {k}")
  with pytest.raises(errors.ConfigError, match="train_first=12"):
    sp.first_in_file_order("train", 11, 12)


def test_the_demo_config_is_defaults_first_quarter():
  configs = {c.name: c for c in SyntheticPoints.BUILDER_CONFIGS}
  demo, default = configs["demo"], configs["default"]
  assert demo.train_first == default.num_train // 4 and default.train_first is None
  same = ("num_train", "num_val", "max_side", "seed", "objectness_windows",
          "objectness_candidates")
  assert [getattr(demo, f) for f in same] == [getattr(default, f) for f in same]


def test_prepare_voc_without_data_explains_how_to_get_it(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  with pytest.raises(FileNotFoundError, match="VOCdevkit") as err:
    prepare("voc2012_points", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
  assert "synthetic_points" in str(err.value) and "benchmark_RELEASE" in str(err.value)


def test_prepare_unknown_dataset():
  with pytest.raises(ValueError, match="synthetic_points/tiny"):
    prepare("imagenet2012")


def test_bad_worker_env(monkeypatch):
  monkeypatch.setenv("POINTSEG_DATA_WORKERS", "many")
  with pytest.raises(ValueError, match="POINTSEG_DATA_WORKERS"):
    sp.default_num_workers(1000)
  monkeypatch.setenv("POINTSEG_DATA_WORKERS", "3")
  assert sp.default_num_workers(10) == 3


def test_image_sizes_follow_voc_aspects():
  rng = np.random.default_rng(0)
  sizes = [sp.image_size(rng, 128) for _ in range(400)]
  assert all(max(s) == 128 for s in sizes)
  landscape = np.mean([s == (96, 128) for s in sizes])
  portrait = np.mean([s == (128, 96) for s in sizes])
  assert 0.55 < landscape < 0.75 and 0.17 < portrait < 0.33


@pytest.mark.e2e
def test_data_package_import_does_not_load_tensorflow():
  code = ("import sys, pointseg_jax.data, pointseg_jax.data.synthetic_points.scenes; "
          "print('tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"


def test_stats_cli_prints_the_table_and_refuses_no_source(tmp_path, run_cli):
  out = tmp_path / "stats.json"
  proc = run_cli("pointseg_jax.data.synthetic_points.stats", "--scenes=3", "--max_side=32",
                 f"--json={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.startswith("| statistic | scenes (3, 32px) |")
  assert json.loads(out.read_text())["scenes (3, 32px)"]["images"] == 3
  proc = run_cli("pointseg_jax.data.synthetic_points.stats")
  assert proc.returncode == 1 and "give at least one of --dataset, --scenes, --voc_samples" in (
      proc.stderr), proc.stderr[-2000:]


def test_precompute_reads_a_prepared_tfds_split_and_refuses_an_unprepared_one(tiny, tmp_path):
  builder, examples = tiny
  out = tmp_path / "maps"
  res = objectness_maps.run(out, "synthetic_points/tiny", split="val[:2]",
                            data_dir=os.fspath(builder.data_dir_root), workers=1, progress=False)
  assert res == {"done": 2, "skipped": 0, "failed": {}}
  written = sorted(p.stem for p in out.glob("*.png"))   # one map per example id of the split
  assert len(written) == 2 and set(written) <= set(examples["val"]), written
  with pytest.raises(errors.MissingInputError, match="not prepared"):
    objectness_maps.run(tmp_path / "maps2", "synthetic_points/tiny",
                        data_dir=str(tmp_path / "empty"), workers=1, progress=False)
  assert not (tmp_path / "maps2").exists()


def test_objectness_maps_cli_refuses_an_unprepared_dataset_before_writing(tmp_path, run_cli):
  """The command's wiring (the library run above writes the maps): one line, nothing created."""
  line = run_cli.error(run_cli("pointseg_jax.data.objectness_maps", "--dataset=synthetic_points/tiny",
                               f"--data_dir={tmp_path / 'empty'}", f"--out={tmp_path / 'x'}"))
  assert "is not prepared" in line and not (tmp_path / "x").exists()
