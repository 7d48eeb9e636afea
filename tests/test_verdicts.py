"""experiments/verdicts.py: the pre-registered decision rule on synthetic per-seed numbers."""

import pytest

from pointseg_jax.experiments import paired_tests
from pointseg_jax.experiments import verdicts
from pointseg_jax.experiments.verdicts import Finding

A = [30.0, 25.0, 28.0, 33.0, 27.0]     # row a's per-seed mIoU (%): a shared seed offset


def summaries(run, values):
  return [{"run": run, "seed": k, "miou": None if v is None else v / 100}
          for k, v in enumerate(values)]


def rows(**diffs):
  """Summaries of 'a' (A) and of each b = A + its per-seed differences."""
  out = summaries("a", A)
  for name, d in diffs.items():
    out += summaries(name, [None if x is None else a + x for a, x in zip(A, d)])
  return out


def decide(found, data, seeds=5):
  names = {r for f in found for r in f.rows()}
  return {i["finding"]: i for i in verdicts.decide(data, found, {n: seeds for n in names})}


CLEAR_GAIN = [10.2, 9.5, 11.0, 10.4, 9.9]
NEAR_ZERO = [0.3, -0.2, 0.1, 0.4, -0.1]
NOISE = [2.0, -1.0, 3.0, -2.0, 1.0]           # mean 0.6, sd 2.07


def test_clear_gain_equivalence_and_inconclusive():
  found = (Finding("gain", "up", ("a",), ">", "f"), Finding("same", "flat", ("a",), "~", "f",
                                                                margin=2.0),
           Finding("noisy gain", "noisy", ("a",), ">", "f"),
           Finding("noisy same", "noisy", ("a",), "~", "f", margin=2.0))
  out = decide(found, rows(up=CLEAR_GAIN, flat=NEAR_ZERO, noisy=NOISE))
  assert out["gain"]["verdict"] == "reproduced; family-wise"
  assert out["gain"]["differences"] == pytest.approx(CLEAR_GAIN)
  assert out["gain"]["mean"] == pytest.approx(10.2)
  assert out["same"]["verdict"] == "reproduced (equivalent within ±2); family-wise"
  assert out["same"]["ci"][0] > -2 and out["same"]["ci"][1] < 2 and out["same"]["ci_level"] == 0.9
  # mean 0.6, se 2.07/sqrt(5): t = 0.65, p = 0.28; against +2: t = -1.51, p = 0.10.
  assert out["noisy gain"]["p"] == pytest.approx(paired_tests.compare(NOISE, ">").p)
  assert 0.2 < out["noisy gain"]["p"] < 0.35
  assert out["noisy gain"]["verdict"] == "inconclusive"
  assert out["gain"]["interval_below_planned_effect"] is False     # planned 0: never below
  slow = (Finding("slow gain", "noisy", ("a",), ">", "f", planned_effect=10.0),)
  assert decide(slow, rows(noisy=NOISE))["slow gain"]["interval_below_planned_effect"] is True
  assert out["noisy same"]["verdict"] == "inconclusive"
  # Holm in a family of 4: the smallest p times 4, the next times 3 (monotone).
  holm = paired_tests.holm([out[k]["p"] for k in ("gain", "same", "noisy gain", "noisy same")])
  assert [out[k]["p_holm"] for k in ("gain", "same", "noisy gain", "noisy same")] == \
      pytest.approx(holm)


def test_contradicted_both_ways():
  found = (Finding("should rise", "down", ("a",), ">", "f"),
           Finding("should be level", "far", ("a",), "~", "f", margin=2.0),
           Finding("mirror", "a", ("down",), "<", "f"))
  out = decide(found, rows(down=[-5.0, -6.0, -4.0, -5.5, -4.5], far=[5.0, 6.0, 5.5, 4.5, 5.0]))
  assert out["should rise"]["verdict"] == "contradicted (opposite direction); family-wise"
  assert out["should be level"]["verdict"] == "contradicted (differs by more than 2); family-wise"
  assert out["mirror"]["verdict"] == "contradicted (opposite direction); family-wise"


def test_per_finding_verdict_and_family_wise_mark():
  """Two findings with p = 0.034 and 0.039: each reproduced at 0.05, neither family-wise (Holm:
  0.034 x 2 = 0.068); alone in its family the same finding is family-wise."""
  d1, d2 = [1.0, 2.0, 0.5, 1.5, -0.2], [1.1, 2.0, 0.4, 1.6, -0.3]
  p1, p2 = paired_tests.compare(d1, ">").p, paired_tests.compare(d2, ">").p
  assert 0.025 < p1 < 0.05 and 0.025 < p2 < 0.05
  two = (Finding("one", "b1", ("a",), ">", "f"), Finding("two", "b2", ("a",), ">", "f"))
  out = decide(two, rows(b1=d1, b2=d2))
  assert out["one"]["verdict"] == out["two"]["verdict"] == "reproduced"
  assert [out["one"]["p_holm"], out["two"]["p_holm"]] == pytest.approx(paired_tests.holm([p1, p2]))
  assert min(out["one"]["p_holm"], out["two"]["p_holm"]) == pytest.approx(2 * min(p1, p2))
  assert 2 * min(p1, p2) > 0.05
  alone = (Finding("one", "b1", ("a",), ">", "f"), Finding("two", "b2", ("a",), ">", "g"))
  assert decide(alone, rows(b1=d1, b2=d2))["one"]["verdict"] == "reproduced; family-wise"


def test_two_sided_and_intersection_union():
  found = (Finding("either way", "down", ("a",), "!=", "f"),
           Finding("above both", "up", ("a", "noisy"), ">", "g"))
  out = decide(found, rows(down=[-5.0, -6.0, -4.0, -5.5, -4.5], up=CLEAR_GAIN, noisy=NOISE))
  assert out["either way"]["verdict"] == "down below a; family-wise"
  assert out["either way"]["p_opposite"] is None and out["either way"]["p_opposite_holm"] is None
  # up - noisy = CLEAR_GAIN - NOISE (mean 9.6) is still clear; the binding pair is the larger p.
  iut = out["above both"]
  p_a = paired_tests.compare(CLEAR_GAIN, ">").p
  p_noisy = paired_tests.compare([g - n for g, n in zip(CLEAR_GAIN, NOISE)], ">").p
  assert iut["p"] == pytest.approx(max(p_a, p_noisy))
  assert iut["compared_with"] == ("a" if p_a > p_noisy else "noisy")
  assert iut["verdict"] == "reproduced; family-wise"


def test_pending_until_the_family_has_its_seeds_and_diverged_runs_count():
  found = (Finding("gain", "up", ("a",), ">", "f"), Finding("later", "late", ("a",), ">", "f"))
  data = rows(up=CLEAR_GAIN, late=[1.0, 2.0, None, None, None])
  data = [s for s in data if not (s["run"] == "late" and s["seed"] >= 2)]   # 2 of 5 seeds
  out = decide(found, data)
  assert out["gain"]["verdict"].startswith("pending (1 of 2 findings of family 'f'")
  assert out["later"]["n"] == 2 and not out["later"]["complete"]
  # A diverged run is a result at DIVERGED_MIOU, never dropped: seed 4 of 'up' counts -27.
  diverged = rows(up=CLEAR_GAIN[:4] + [None], late=CLEAR_GAIN)
  out = decide(found, diverged)
  assert out["gain"]["differences"][-1] == pytest.approx(verdicts.DIVERGED_MIOU - A[4])
  assert out["gain"]["n"] == 5 and out["gain"]["verdict"] == "inconclusive"
  # Seeds beyond the plan are not used (the plan is fixed before the results).
  assert decide(found, rows(up=CLEAR_GAIN, late=CLEAR_GAIN), seeds=3)["gain"]["n"] == 3
