"""The objectness prior as training reads it: superpixel smoothing, calibration, the threshold
statistics of `data.objectness_eval`, learning both on a TFDS train split
(`data.objectness_learn`), and the packaged models."""
import json

import numpy as np
import pytest

from pointseg_jax import errors
from pointseg_jax import objectness
from pointseg_jax.data import objectness_eval, objectness_learn
from pointseg_jax.data.synthetic_points import stats
from pointseg_jax.objectness import evaluate, learn, model as model_lib, render


def test_superpixel_average_by_hand():
  values = np.array([[1.0, 3.0, 10.0], [5.0, 7.0, 10.0]])
  labels = np.array([[0, 0, 2], [1, 1, 2]])
  np.testing.assert_array_equal(render.superpixel_average(values, labels),
                                [[2, 2, 10], [6, 6, 10]])


def test_calibrate_maps_levels_and_empty_table_is_identity():
  o = np.array([[0, 5], [255, 128]], np.uint8)
  np.testing.assert_array_equal(render.calibrate(o, ()), o)
  table = tuple(255 - np.arange(256))
  np.testing.assert_array_equal(render.calibrate(o, table), [[255, 250], [0, 127]])


def test_threshold_stats_by_hand():
  pos, neg = np.zeros(256), np.zeros(256)
  pos[200], pos[10] = 3, 1     # object pixels: three with P > 1/2, one below
  neg[10], neg[200] = 5, 1     # background: five below, one above
  s = evaluate.threshold_stats(pos, neg)
  assert s["accuracy_p05"] == pytest.approx((3 + 5) / 10)
  assert s["accuracy_all_background"] == pytest.approx(6 / 10)
  assert s["object_below_p05"] == pytest.approx(1 / 4)
  # pos > neg: 3 x 5; ties count 1/2: 3 x 1 at 200 and 1 x 5 at 10.
  assert s["pooled_auc"] == pytest.approx((15 + 1.5 + 2.5) / 24)
  assert s["p_in"] == pytest.approx((3 * 201 + 11) / 4 / 257)
  # The level where P crosses 1/2: o = 127 is P = 128/257 < 1/2, o = 128 is 129/257 >= 1/2.
  pos, neg = np.zeros(256), np.zeros(256)
  pos[128], neg[127] = 1, 1
  assert evaluate.threshold_stats(pos, neg)["accuracy_p05"] == 1.0


def test_calibration_table_is_the_pooled_monotone_frequency():
  # Per level (pos + 1) / (n + 2) with weight n + 2: empty levels are 1/2 (weight 2).
  pos, neg = np.zeros(256), np.zeros(256)
  pos[10], neg[10] = 1, 99      # 2 / 102: below the empty levels 0..9 -> pooled with them
  pos[100], neg[100] = 89, 9    # 90 / 100
  pos[101], neg[101] = 49, 49   # 50 / 100: below 0.9 -> pooled, and so are the empty 102..255
  table = learn.calibration_table(pos, neg)
  assert len(table) == 256 and all(np.diff(table) >= 0)
  low = (10 * 1 + 2) / (10 * 2 + 102)                 # levels 0..10
  high = (90 + 50 + 154 * 1) / (100 + 100 + 154 * 2)  # levels 100..255
  assert set(table[:11]) == {round(low * 257 - 1)} == {24}
  assert set(table[11:100]) == {128}                  # 1/2 -> 127.5 -> 128: P >= 1/2
  assert set(table[100:]) == {round(high * 257 - 1)} == {148}


def test_model_round_trip_with_rendering_fields_and_old_files(tmp_path):
  base = model_lib.default_model()
  assert base.smooth_k == 0 and base.calibration == ()   # the release's model renders as before
  table = tuple(int(v) for v in np.arange(256) // 2)
  path = model_lib.save(base.replace(smooth_k=800.0, calibration=table), tmp_path / "m")
  back = model_lib.load(path)
  assert back.smooth_k == 800.0 and back.calibration == table
  with np.load(path) as z:
    arrays = {k: z[k] for k in z.files}
  arrays["calibration"] = np.arange(10)
  np.savez(tmp_path / "bad.npz", **arrays)
  with pytest.raises(errors.DataError, match="calibration has 10 levels, expected 256"):
    model_lib.load(tmp_path / "bad.npz")
  del arrays["calibration"], arrays["smooth_k"]   # a model file written before both fields
  np.savez(tmp_path / "old.npz", **arrays)
  old = model_lib.load(tmp_path / "old.npz")
  assert old.smooth_k == 0 and old.calibration == ()


def test_smoothed_map_is_constant_on_each_superpixel_and_calibrated():
  rng = np.random.default_rng(0)
  image = rng.integers(60, 90, (48, 64, 3), dtype=np.uint8)
  image[10:30, 20:45] = (200, 40, 40)
  table = tuple(int(v) for v in np.minimum(np.arange(256) + 7, 255))
  model = model_lib.default_model().replace(smooth_k=300.0, calibration=table)
  o = objectness.heatmap(image, rng=0, model=model, distribution_windows=5000)
  raw = objectness.heatmap(image, rng=0, model=model.replace(calibration=()),
                           distribution_windows=5000)
  np.testing.assert_array_equal(o, np.asarray(table)[raw])
  from pointseg_jax.objectness import pipeline  # the superpixels the map was averaged over
  labels = pipeline.smoothing_superpixels(image, model, pipeline.DEFAULT_MAX_SIDE)
  assert labels.max() >= 1
  for s in np.unique(labels):
    assert len(np.unique(raw[labels == s])) == 1
  assert raw[10:30, 20:45].mean() > raw.mean()


def test_smoothing_superpixels_are_upsampled_to_the_input_size():
  image = np.zeros((60, 80, 3), np.uint8)
  image[:, 40:] = 255
  model = model_lib.default_model().replace(smooth_k=300.0)
  from pointseg_jax.objectness import pipeline
  labels = pipeline.smoothing_superpixels(image, model, max_side=20)   # cues at 15 x 20
  assert labels.shape == (60, 80)
  # Nearest upsampling by 4: every 4 x 4 block is one working pixel.
  blocks = labels.reshape(15, 4, 20, 4)
  assert (blocks == blocks[:, :1, :, :1]).all()
  # Away from the blurred edge, each half is one superpixel, and they differ.
  assert len(np.unique(labels[:, :32])) == 1 and len(np.unique(labels[:, 48:])) == 1
  assert labels[0, 0] != labels[0, 79]


def test_packaged_synthetic_model_loads_and_missing_one_is_clear():
  m = objectness.load_packaged("synthetic_v2.npz")
  assert m.smooth_k > 0 and len(m.calibration) == 256 and "train" in m.source
  with pytest.raises(errors.MissingInputError, match="no packaged objectness model 'nope.npz'"):
    objectness.load_packaged("nope.npz")


def test_split_statistics_agree_with_the_stats_accumulator(tiny_data_dir):
  res = objectness_eval.run("synthetic_points/tiny", "val", tiny_data_dir, progress=False)
  acc = stats.Accumulator()
  for _, _, labels, o in objectness_eval.examples("synthetic_points/tiny", "val", tiny_data_dir):
    acc.add(labels, objectness=o)
  assert res["images"] == 16 and res["without_objectness"] == 0
  assert res["pooled_auc"] == pytest.approx(acc.summary()["objectness_auc_pooled"])
  assert 0 < res["object_below_p05"] < 1 and res["accuracy_all_background"] > 0.5


def test_split_statistics_of_an_unprepared_dataset_is_one_clear_error(tmp_path):
  with pytest.raises(errors.MissingInputError, match="--dataset synthetic_points/tiny is not "
                                                     "prepared in .*or pass --data_dir"):
    objectness_eval.run("synthetic_points/tiny", "val", str(tmp_path), progress=False)
  with pytest.raises(errors.MissingInputError, match="is not prepared in"):
    objectness_learn.boxes("synthetic_points/tiny", "train", str(tmp_path))   # before iterating


def _run_command(module, monkeypatch, *args):
  """module.main with its flags parsed from args into fresh FlagValues (as `python -m module`)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  own = flags.FlagValues()
  module.define_flags(own)
  own([module.__name__, *map(str, args)])
  monkeypatch.setattr(module, "FLAGS", own)
  return module.main([module.__name__])


def test_pooled_statistics_of_examples_by_hand():
  """Two stored 1 x 2 maps and one example without a map (counted, left out); void ignored."""
  examples = [("a", None, np.array([[1, 0]]), np.array([[200, 10]], np.uint8)),
              ("b", None, np.array([[0, 255]]), np.array([[200, 0]], np.uint8)),
              ("c", None, np.array([[1, 1]]), None)]
  res = evaluate.evaluate_examples(examples, progress=False)
  assert res["images"] == 2 and res["without_objectness"] == 1
  # Object pixel: 200; background: 10 and 200 -> AUC = (1 + 0.5) / 2; per image: a 1.0, b nan.
  assert res["pooled_auc"] == pytest.approx(0.75) and res["mean_auc_per_image"] == 1.0
  assert res["object_pixels"] == 1 and res["background_pixels"] == 2
  assert res["accuracy_p05"] == pytest.approx(2 / 3)   # 200 object right, 10 right, 200 wrong


def test_split_statistics_command_writes_what_the_library_returns(tiny_data_dir, tmp_path,
                                                                  monkeypatch, capsys):
  out = tmp_path / "r.json"
  _run_command(objectness_eval, monkeypatch, "--dataset=synthetic_points/tiny", "--split=val[:4]",
               f"--data_dir={tiny_data_dir}", f"--json={out}")
  res = json.loads(out.read_text())
  want = objectness_eval.run("synthetic_points/tiny", "val[:4]", tiny_data_dir, progress=False)
  assert res["maps"] == "stored" and res["images"] == 4
  assert {k: res[k] for k in want} == pytest.approx(want)
  assert f"pooled AUC {want['pooled_auc']:.3f}" in capsys.readouterr().out


def test_learning_cues_and_rendering_on_a_train_split(tiny_data_dir, tmp_path, monkeypatch,
                                                      capsys):
  boxes = list(objectness_learn.boxes("synthetic_points/tiny", "train[:4]", tiny_data_dir))
  assert len(boxes) == 4
  assert all(b.ndim == 2 and b.shape[1] == 4 and (b[:, 2] >= b[:, 0]).all() for _, _, b in boxes)
  # The command: cues on train[:4], smoothing and calibration on train[4:8].
  _run_command(objectness_learn, monkeypatch, "--dataset=synthetic_points/tiny",
               "--split=train[:4]", f"--data_dir={tiny_data_dir}", "--windows_per_image=2000",
               "--render_split=train[4:8]", "--smooth_grid=0,300", "--distribution_windows=2000",
               "--num_windows=100", f"--out={tmp_path / 'm.npz'}")
  printed = capsys.readouterr().out
  report = json.loads(printed[:printed.rindex("wrote ")])
  model = model_lib.load(tmp_path / "m.npz")
  assert report["images"] == 4 and report["MS"]["positives"] > 0
  assert "synthetic_points/tiny train[:4]" in model.source and "train[4:8]" in model.source
  render_report = report["render"]
  assert render_report["smooth_k"] in (0.0, 300.0) and model.smooth_k == render_report["smooth_k"]
  aucs = {float(k): v for k, v in render_report["pooled_auc_by_smooth_k"].items()}
  assert aucs[model.smooth_k] == max(aucs.values())
  assert len(model.calibration) == 256 and all(np.diff(model.calibration) >= 0)
  after = render_report["calibration"]["after"]
  assert after["accuracy_p05"] >= after["accuracy_all_background"] - 1e-9
