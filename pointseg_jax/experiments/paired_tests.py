"""Paired t-tests on per-seed differences, their power, and Holm's correction (Table 1 v2).

A seed fixes what is not pretrained (the score layers' init), the dropout masks and the batch
order, and every row of a sweep shares them, so b and a are compared on the n differences
d_k = b_k - a_k of the seeds both have: a paired t-test is a one-sample t-test on d, df = n - 1,
t = (mean(d) - delta0) / (sd(d) / sqrt(n)). Relations (docs/experiments.md, "Table 1 v2"):

  '>'   one-sided, H1: delta > 0 (the paper's direction; '<' the mirror)
  '~'   equivalence within +-margin: TOST (Schuirmann 1987), two one-sided tests against -margin
        and +margin; p = the larger of the two
  '!='  two-sided, for a comparison with no predicted direction

`compare` also gives the p-value of the opposite claim (delta < 0 for '>', |delta| > margin for
'~'), so a verdict can say "contradicted" and not only "not shown". Power: the noncentral t for
the t tests, and for TOST the exact integral over the sample sd's chi distribution. scipy.stats
does the distributions; the formulas are checked against hand-computed df = 2 cases, G*Power and
simulation (tests/test_paired_tests.py).
"""
import dataclasses
import math

import numpy as np
from scipy import integrate
from scipy import stats

RELATIONS = (">", "<", "~", "!=")


@dataclasses.dataclass(frozen=True)
class PairedTest:
  """One comparison b - a over n paired seeds."""
  relation: str
  n: int
  mean: float            # mean paired difference (mIoU points)
  sd: float              # its standard deviation over seeds (ddof = 1)
  p: float               # H0: the claim does not hold (small p: the claim is shown)
  p_opposite: float      # H0: the opposite claim does not hold; nan for '!='
  margin: float | None = None


def _p(d: np.ndarray, null: float, alternative: str) -> float:
  """One-sample t-test p-value of d against `null`. All d equal (sd 0): the sign decides."""
  if np.ptp(d) == 0:
    diff = float(d[0]) - null
    shown = {"greater": diff > 0, "less": diff < 0, "two-sided": diff != 0}[alternative]
    return 0.0 if shown else 1.0
  return float(stats.ttest_1samp(d, null, alternative=alternative).pvalue)


def compare(diffs, relation: str, margin: float | None = None) -> PairedTest:
  """The paired test of one claim on the per-seed differences b - a (needs >= 2 seeds)."""
  d = np.asarray(diffs, dtype=float)
  if relation not in RELATIONS:
    raise ValueError(f"relation {relation!r}: one of {RELATIONS}")
  if d.ndim != 1 or d.size < 2 or not np.all(np.isfinite(d)):
    raise ValueError(f"need >= 2 finite paired differences, got {d.tolist()}")
  if (relation == "~") != (margin is not None and margin > 0):
    raise ValueError("an equivalence ('~') needs a margin > 0, and only it takes one")
  if relation == ">":
    p, p_opp = _p(d, 0.0, "greater"), _p(d, 0.0, "less")
  elif relation == "<":
    p, p_opp = _p(d, 0.0, "less"), _p(d, 0.0, "greater")
  elif relation == "~":
    p = max(_p(d, -margin, "greater"), _p(d, margin, "less"))
    # |delta| > margin: the side the mean lies on (size <= alpha + the other side's ~0).
    p_opp = min(_p(d, margin, "greater"), _p(d, -margin, "less"))
  else:
    p, p_opp = _p(d, 0.0, "two-sided"), math.nan
  return PairedTest(relation, int(d.size), float(d.mean()), float(d.std(ddof=1)), p, p_opp,
                    margin)


def confidence_interval(diffs, level: float) -> tuple[float, float]:
  """Two-sided t interval for the mean difference. A one-sided test or TOST at alpha matches the
  (1 - 2 alpha) interval: '>' holds when its low end is > 0, '~' when it lies inside +-margin."""
  d = np.asarray(diffs, dtype=float)
  half = stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
  return float(d.mean() - half), float(d.mean() + half)


def holm(pvalues) -> list[float]:
  """Holm's step-down adjusted p-values (valid under any dependence): the k p-values sorted
  ascending, p_(i) * (k - i + 1), made monotone, capped at 1; nan (no test yet) stays nan and
  does not count in k."""
  p = np.asarray(pvalues, dtype=float)
  out = np.full(p.shape, np.nan)
  idx = np.flatnonzero(~np.isnan(p))
  order = idx[np.argsort(p[idx], kind="stable")]
  k, running = len(order), 0.0
  for i, j in enumerate(order):
    running = max(running, min(1.0, (k - i) * p[j]))
    out[j] = running
  return out.tolist()


def power(relation: str, effect: float, sd: float, n: int, alpha: float,
          margin: float | None = None) -> float:
  """P(the test shows the claim) when the true mean difference is `effect` and the per-seed
  paired sd is `sd`, with n seeds at level alpha."""
  if n < 2 or sd <= 0:
    raise ValueError(f"power needs n >= 2 and sd > 0 (n={n}, sd={sd})")
  df, se = n - 1, sd / math.sqrt(n)
  if relation in (">", "<"):
    ncp = (effect if relation == ">" else -effect) / se
    return float(stats.nct.sf(stats.t.ppf(1 - alpha, df), df, ncp))
  if relation == "!=":
    crit, ncp = stats.t.ppf(1 - alpha / 2, df), effect / se
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
  if not margin or margin <= 0:
    raise ValueError("an equivalence ('~') needs a margin > 0")
  # TOST rejects when -margin + c s/sqrt(n) < mean < margin - c s/sqrt(n); the mean is normal and
  # independent of s, and df s^2 / sd^2 is chi-square(df): integrate over u = df s^2 / sd^2.
  crit = stats.t.ppf(1 - alpha, df)
  u_max = df * (margin * math.sqrt(n) / (crit * sd)) ** 2   # above it the interval is empty

  def given_u(u):
    half = margin - crit * sd * math.sqrt(u / df) / math.sqrt(n)
    inside = stats.norm.cdf((half - effect) / se) - stats.norm.cdf((-half - effect) / se)
    return inside * stats.chi2.pdf(u, df)

  value, _ = integrate.quad(given_u, 0.0, u_max, limit=200)
  return float(min(1.0, max(0.0, value)))


def seeds_needed(relation: str, effect: float, sd: float, alpha: float, target: float = 0.8,
                 margin: float | None = None, n_max: int = 200) -> int | None:
  """The fewest seeds (>= 2) whose power reaches `target`; None when n_max does not."""
  for n in range(2, n_max + 1):
    if power(relation, effect, sd, n, alpha, margin) >= target:
      return n
  return None
