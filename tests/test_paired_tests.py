"""experiments/paired_tests.py: paired t-tests, TOST, Holm and power, against hand-computed cases.

With df = 2 the t distribution has a closed form, P(T > t) = 1/2 - t / (2 sqrt(2 + t^2)), so
3-seed cases are checked without scipy. Power is checked against G*Power's published sample
sizes and against simulation.
"""
import math

import numpy as np
import pytest
from scipy import stats

from pointseg_jax.experiments import paired_tests as pt


def t2_sf(t):
  """P(T > t) for Student's t with 2 degrees of freedom (closed form)."""
  return 0.5 - t / (2 * math.sqrt(2 + t * t))


def test_one_sided_by_hand():
  """d = 1, 2, 4: mean 7/3, sd sqrt(7/3), se sqrt(7/9), t = sqrt(7) = 2.6458, p = 0.05904."""
  r = pt.compare([1.0, 2.0, 4.0], ">")
  assert (r.n, r.mean, r.sd) == (3, pytest.approx(7 / 3), pytest.approx(math.sqrt(7 / 3)))
  assert r.p == pytest.approx(t2_sf(math.sqrt(7)), rel=1e-12) == pytest.approx(0.059041, abs=1e-6)
  assert r.p_opposite == pytest.approx(1 - r.p)
  mirrored = pt.compare([-1.0, -2.0, -4.0], "<")          # '<' is '>' on -d
  assert (mirrored.p, mirrored.p_opposite) == (pytest.approx(r.p), pytest.approx(r.p_opposite))
  assert pt.compare([1.0, 2.0, 4.0], "!=").p == pytest.approx(2 * r.p)
  assert math.isnan(pt.compare([1.0, 2.0, 4.0], "!=").p_opposite)
  # scipy's paired test on the two rows gives the same p as ours on their differences.
  a = np.array([30.0, 25.0, 28.0])
  assert pt.compare(a + [1, 2, 4] - a, ">").p == pytest.approx(
      stats.ttest_rel(a + [1, 2, 4], a, alternative="greater").pvalue)


def test_tost_by_hand():
  """d = 0.5, -0.5, 1, margin 2: mean 1/3, se = sqrt(7/36); against -2: t = sqrt(28),
  p = 0.01695; against +2: t = -(5/3)/se, p = 0.03171; TOST p = the larger. Opposite claim
  (|delta| > 2): p = 1 - 0.03171 (the mean lies inside the margin)."""
  d = [0.5, -0.5, 1.0]
  se = math.sqrt(7 / 36)
  p_low, p_high = t2_sf((1 / 3 + 2) / se), t2_sf((2 - 1 / 3) / se)
  assert (p_low, p_high) == (pytest.approx(0.016954, abs=1e-6), pytest.approx(0.031707, abs=1e-6))
  r = pt.compare(d, "~", margin=2.0)
  assert r.p == pytest.approx(max(p_low, p_high), rel=1e-10)
  assert r.p_opposite == pytest.approx(1 - p_high, rel=1e-10)
  # Shift by 3: mean 3.33 is beyond +2, the opposite claim is what the data show.
  far = pt.compare([x + 3 for x in d], "~", margin=2.0)
  assert far.p > 0.9 and far.p_opposite == pytest.approx(t2_sf((3 + 1 / 3 - 2) / se))


def test_constant_differences_and_bad_input():
  """No spread (every seed the same difference): the sign decides, no nan."""
  assert pt.compare([1.5, 1.5, 1.5], ">").p == 0.0
  assert pt.compare([1.5, 1.5, 1.5], "<").p == 1.0
  assert pt.compare([0.0, 0.0], "!=").p == 1.0
  assert pt.compare([0.5, 0.5, 0.5], "~", margin=2.0).p == 0.0
  with pytest.raises(ValueError, match=">= 2 finite"):
    pt.compare([1.0], ">")
  with pytest.raises(ValueError, match=">= 2 finite"):
    pt.compare([1.0, float("nan")], ">")
  with pytest.raises(ValueError, match="margin"):
    pt.compare([1.0, 2.0], "~")
  with pytest.raises(ValueError, match="margin"):
    pt.compare([1.0, 2.0], ">", margin=2.0)
  with pytest.raises(ValueError, match="relation"):
    pt.compare([1.0, 2.0], ">=")


def test_confidence_interval_matches_the_tests():
  """The 90 % interval's low end is > 0 exactly when the one-sided test passes at 5 %."""
  d = [1.0, 2.0, 4.0]
  low, high = pt.confidence_interval(d, 0.90)
  # df = 2: the q quantile is (2q - 1) / sqrt(2 q (1 - q)); q = 0.95.
  half = 0.9 / math.sqrt(2 * 0.05 * 0.95) * math.sqrt(7 / 9)
  assert (low, high) == (pytest.approx(7 / 3 - half), pytest.approx(7 / 3 + half))
  assert low < 0 and pt.compare(d, ">").p > 0.05               # 0.059: both say "not shown"
  d2 = [1.2, 2.0, 3.0]
  assert (pt.confidence_interval(d2, 0.9)[0] > 0) == (pt.compare(d2, ">").p < 0.05)


def test_holm_by_hand():
  """p = .01, .04, .03, .005 (k = 4): sorted .005*4 = .02, .01*3 = .03, .03*2 = .06,
  .04*1 = .04 -> .06 (monotone); nan is not a test and does not count in k."""
  assert pt.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
  out = pt.holm([0.01, float("nan"), 0.04])
  assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
  assert pt.holm([0.6, 0.7]) == [1.0, 1.0]
  assert pt.holm([]) == []


def test_power_matches_gpower():
  """G*Power 3 (t tests, difference from constant, d = 0.5, alpha = .05, power .80): one-tailed
  n = 27 (actual power 0.8118), two-tailed n = 34 (0.8078)."""
  assert pt.power(">", 0.5, 1.0, 27, 0.05) == pytest.approx(0.8118, abs=5e-4)
  assert pt.power("!=", 0.5, 1.0, 34, 0.05) == pytest.approx(0.8078, abs=5e-4)
  assert pt.seeds_needed(">", 0.5, 1.0, 0.05) == 27
  assert pt.seeds_needed("!=", 0.5, 1.0, 0.05) == 34
  assert pt.power("<", -2.0, 1.0, 5, 0.05) == pytest.approx(pt.power(">", 2.0, 1.0, 5, 0.05))
  assert pt.seeds_needed(">", 0.1, 5.0, 0.001, n_max=10) is None
  with pytest.raises(ValueError, match="n >= 2"):
    pt.power(">", 1.0, 1.0, 1, 0.05)


@pytest.mark.parametrize("relation,effect,margin", [(">", 2.0, None), ("~", 0.4, 2.0),
                                                    ("~", 0.0, 2.0), ("!=", 1.5, None)])
def test_power_matches_simulation(relation, effect, margin):
  """40,000 simulated 5-seed experiments (sd 1.3, alpha 0.05): the share that shows the claim is
  the power within 3 standard errors (~0.007)."""
  n, sd, alpha, reps = 5, 1.3, 0.05, 40_000
  d = np.random.default_rng(0).normal(effect, sd, size=(reps, n))
  mean, se = d.mean(1), d.std(1, ddof=1) / math.sqrt(n)
  if relation == ">":
    shown = stats.t.sf(mean / se, n - 1) < alpha
  elif relation == "!=":
    shown = 2 * stats.t.sf(abs(mean) / se, n - 1) < alpha
  else:
    shown = np.maximum(stats.t.sf((mean + margin) / se, n - 1),
                       stats.t.cdf((mean - margin) / se, n - 1)) < alpha
  expected = pt.power(relation, effect, sd, n, alpha, margin)
  assert shown.mean() == pytest.approx(expected, abs=3 * math.sqrt(expected * (1 - expected) / reps)
                                       + 1e-3)
  # And compare() agrees with the vectorised rule on a few of the simulated experiments.
  for row in d[:20]:
    assert (pt.compare(row, relation, margin).p < alpha) == bool(
        shown[np.flatnonzero((d == row).all(1))[0]])


def test_tost_power_limits():
  """Wider margin, more seeds -> more power; no seeds can show equivalence when the true
  difference is the margin itself (power <= alpha)."""
  assert pt.power("~", 0.0, 1.0, 5, 0.05, 2.0) < pt.power("~", 0.0, 1.0, 8, 0.05, 2.0)
  assert pt.power("~", 0.0, 1.0, 5, 0.05, 2.0) < pt.power("~", 0.0, 1.0, 5, 0.05, 3.0)
  assert pt.power("~", 2.0, 1.0, 50, 0.05, 2.0) <= 0.05 + 1e-6
  with pytest.raises(ValueError, match="margin"):
    pt.power("~", 0.0, 1.0, 5, 0.05)
