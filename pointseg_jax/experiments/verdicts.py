"""The pre-registered decision rule of Table 1 v2: each finding's paired test, Holm in its family.

Fixed before the first v2 result (docs/experiments.md, "Table 1 v2: pre-registration"):
- a finding compares row b with row(s) a on the seeds both have (paired_tests.compare);
- several a ('b above every one of them'): an intersection-union test, p = the largest of the
  b-vs-a p-values (no correction needed); its opposite ('b below one of them') is a union,
  Bonferroni over the a;
- each finding is its own question of the paper and gets its verdict at ALPHA (one-sided test,
  TOST, or two-sided): '>' / '<' reproduced | contradicted (the opposite direction shown) |
  inconclusive; '~' reproduced (equivalent within +-margin) | contradicted (differs by more than
  the margin) | inconclusive; '!=' (no predicted direction) b above a | b below a | no difference
  shown;
- multiple comparisons: Holm's correction within each family, separately for the claims and for
  their opposites; a verdict that also holds after it is marked "family-wise", and only those
  back a statement about several findings at once (docs/experiments.md);
- no verdict in a family until every row of it has its planned seeds ("pending");
- a diverged run (non-finite loss: deterministic, so a rerun diverges again) is a result, never
  dropped: it enters every comparison at DIVERGED_MIOU.
"""
import dataclasses
import math

from pointseg_jax.experiments import paired_tests

ALPHA = 0.05
# mIoU (%) a diverged run counts as: below every trained run, so it can only count against the
# regime that diverged.
DIVERGED_MIOU = 0.0


@dataclasses.dataclass(frozen=True)
class Finding:
  """One claim: b against a (or against each of several a), in a Holm family."""
  what: str
  b: str
  a: tuple[str, ...]
  relation: str                 # '>', '<', '~', '!=' (paired_tests.RELATIONS)
  family: str
  paper: str = ""               # the paper's numbers, e.g. "32.2 vs 29.8"
  # The mean difference b - a the seeds are planned for: the paper's VOC effect, or for a claim
  # the paper does not make the smallest effect of interest (docs/experiments.md).
  planned_effect: float = 0.0
  margin: float | None = None   # '~' only

  def rows(self) -> tuple[str, ...]:
    return (self.b, *self.a)


def per_seed(summaries: list[dict]) -> dict[str, dict[int, float]]:
  """{run: {seed: mIoU %}} from kept summaries; a diverged run counts DIVERGED_MIOU."""
  out = {}
  for s in summaries:
    out.setdefault(s["run"], {})[s["seed"]] = (DIVERGED_MIOU if s["miou"] is None
                                               else 100 * s["miou"])
  return out


def differences(values: dict[str, dict[int, float]], b: str, a: str, n: int) -> list[float]:
  """b - a on the seeds below n that both rows have (seed order)."""
  vb, va = values.get(b, {}), values.get(a, {})
  return [vb[k] - va[k] for k in sorted(vb) if k < n and k in va]


def _one(finding: Finding, values, seeds: dict[str, int]) -> dict:
  """The finding's test on what is there; 'complete' when every pair has its planned seeds."""
  item = {"finding": finding.what, "b": finding.b, "a": list(finding.a),
          "relation": finding.relation, "family": finding.family, "paper": finding.paper,
          "planned_effect": finding.planned_effect, "margin": finding.margin}
  tests, complete = [], True
  for a in finding.a:
    n = min(seeds[finding.b], seeds[a])
    d = differences(values, finding.b, a, n)
    complete &= len(d) == n
    if len(d) >= 2:
      tests.append((a, d, paired_tests.compare(d, finding.relation, finding.margin)))
  item["complete"] = complete and len(tests) == len(finding.a)
  if len(tests) < len(finding.a):
    item.update(p=math.nan, p_opposite=math.nan)
    return item
  # The binding comparison: the largest p (for one a, the only one).
  a, d, t = max(tests, key=lambda x: x[2].p)
  level = 1 - 2 * ALPHA if finding.relation != "!=" else 1 - ALPHA
  item.update(compared_with=a, n=t.n, differences=d, mean=t.mean, sd=t.sd,
              ci=paired_tests.confidence_interval(d, level), ci_level=level, p=t.p,
              p_opposite=min(1.0, len(tests) * min(x[2].p_opposite for x in tests))
              if finding.relation != "!=" else math.nan)
  # Shown, not a verdict: the interval lies below the effect the seeds were planned for (for a
  # paper finding, the paper's own effect).
  item["interval_below_planned_effect"] = (finding.relation == ">"
                                           and item["ci"][1] < finding.planned_effect)
  return item


def _verdict(item: dict, alpha: float) -> str:
  """The verdict at alpha, '; family-wise' when it survives Holm in its family too."""
  shown, opposite = item["p"] < alpha, item["p_opposite"] < alpha
  relation, margin = item["relation"], item["margin"]
  if relation == "!=":
    text = ("no difference shown" if not shown else
            f"{item['b']} above {item['compared_with']}" if item["mean"] > 0 else
            f"{item['b']} below {item['compared_with']}")
  elif relation == "~":
    text = (f"reproduced (equivalent within ±{margin:g})" if shown else
            f"contradicted (differs by more than {margin:g})" if opposite else "inconclusive")
  else:
    text = ("reproduced" if shown else "contradicted (opposite direction)" if opposite else
            "inconclusive")
  holds = (shown and item["p_holm"] < alpha) or (opposite and item["p_opposite_holm"] < alpha)
  return text + ("; family-wise" if holds else "")


def decide(summaries: list[dict], findings, seeds: dict[str, int], alpha: float = ALPHA) -> list:
  """One dict per finding (in order): the paired test, Holm-adjusted p-values and the verdict.
  seeds: the planned seeds per row."""
  values = per_seed(summaries)
  items = [_one(f, values, seeds) for f in findings]
  for family in dict.fromkeys(f.family for f in findings):
    members = [i for i in items if i["family"] == family]
    missing = [i["finding"] for i in members if not i["complete"]]
    for key in ("p", "p_opposite"):
      for item, adjusted in zip(members, paired_tests.holm([i[key] for i in members])):
        item[f"{key}_holm"] = adjusted
    for item in members:
      if missing:
        item["verdict"] = (f"pending ({len(missing)} of {len(members)} findings of family "
                           f"'{family}' lack planned seeds)")
      else:
        item["verdict"] = _verdict(item, alpha)
  for item in items:   # no test (yet), or no opposite claim ('!='): None, as JSON has no nan
    for key in ("p", "p_opposite", "p_holm", "p_opposite_holm"):
      if math.isnan(item[key]):
        item[key] = None
  return items
