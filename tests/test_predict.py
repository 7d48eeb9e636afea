"""predict.py's split API (predict_split, score_split) and metrics.row_normalized: hand-made cases,
and on a real tiny run the image-by-image confusion matrices add up to what evaluate.py measures."""
import math

import jax
import numpy as np
import pytest

from pointseg_jax import evaluate
from pointseg_jax import metrics
from pointseg_jax import parallel
from pointseg_jax import predict
from pointseg_jax.data import spec as spec_lib


def fake_result(example_id, confusion):
  z = np.zeros((2, 2))
  return predict.ImageResult(example_id, z, z, z, z, z, z, np.asarray(confusion, np.int64))


def test_image_miou_by_hand():
  # rows = truth: class 0 has 3 pixels (2 right), class 1 has 3 (all right, 1 extra predicted).
  r = fake_result(0, [[2, 1], [0, 3]])
  assert r.miou == pytest.approx((2 / 3 + 3 / 4) / 2)
  # A class that is neither in the truth nor predicted does not count.
  assert fake_result(0, [[4, 0, 0], [0, 0, 0], [0, 0, 0]]).miou == 1.0
  assert math.isnan(fake_result(0, np.zeros((2, 2))).miou)   # no valid pixel


def test_row_normalized_by_hand():
  out = metrics.row_normalized([[2, 2, 0], [0, 0, 0], [1, 0, 3]])
  np.testing.assert_allclose(out[0], [0.5, 0.5, 0.0])
  assert np.isnan(out[1]).all()
  np.testing.assert_allclose(out[2], [0.25, 0.0, 0.75])


def test_score_split_keeps_the_first_and_the_worst(monkeypatch):
  # Per-image mIoU (by hand, both classes count wherever truth or prediction has them): 1, 1/4,
  # NaN, 1/4, 1/8. The worst two are ids 14 (1/8) then 11 (1/4, the earlier of the two ties); the
  # NaN image (no valid pixel) counts in the sums but is never "worst".
  confusions = {10: [[1, 0], [0, 1]], 11: [[1, 1], [0, 0]], 12: [[0, 0], [0, 0]],
                13: [[0, 0], [1, 1]], 14: [[1, 3], [0, 0]]}
  results = [fake_result(i, c) for i, c in confusions.items()]
  monkeypatch.setattr(predict, "predict_split", lambda predictor, split=None: iter(results))
  predictor = type("P", (), {"config": type("C", (), {"model": type("M", (), {
      "num_classes": 2})})})()
  scores = predict.score_split(predictor, show=2, worst=2)
  assert scores.example_ids.tolist() == [10, 11, 12, 13, 14]
  np.testing.assert_allclose(scores.image_miou, [1.0, 0.25, np.nan, 0.25, 0.125])
  np.testing.assert_array_equal(scores.confusion, [[3, 4], [1, 2]])
  assert [r.example_id for r in scores.first] == [10, 11]
  assert [r.example_id for r in scores.worst] == [14, 11]


@pytest.mark.e2e
def test_predict_split_adds_up_to_the_eval_confusion(tiny_run):
  workdir, _ = tiny_run
  model = predict.load_model(workdir)
  results = list(predict.predict_split(model))
  assert len(results) == 16 == len({r.example_id for r in results})   # the whole tiny val split
  r = results[0]
  assert r.image.shape == r.pred.shape + (3,) and r.valid.dtype == bool
  # One image's IoU by hand from its arrays.
  keep = r.valid & (r.labels != 255)
  ious = []
  for c in range(21):
    inter = np.sum(keep & (r.pred == c) & (r.labels == c))
    union = np.sum(keep & ((r.pred == c) | (r.labels == c)))
    if union:
      ious.append(inter / union)
  assert r.miou == pytest.approx(np.mean(ious))

  scores = predict.score_split(model, show=3, worst=3)
  assert [x.example_id for x in scores.first] == [x.example_id for x in results[:3]]
  lowest = np.sort(scores.image_miou[np.isfinite(scores.image_miou)])[:3]
  np.testing.assert_allclose([x.miou for x in scores.worst], lowest)
  config = model.config
  mesh = parallel.make_mesh(jax.local_devices()[:1])   # where load_model put the params
  expected = evaluate.evaluate(model.model, model.params, spec_lib.DataSpec.from_config(
      config.data), mesh, split=config.eval.split, batch_size=8, fast_compile=True)
  np.testing.assert_array_equal(scores.confusion, expected["eval/confusion"])
  np.testing.assert_array_equal(sum(x.confusion for x in results), expected["eval/confusion"])
