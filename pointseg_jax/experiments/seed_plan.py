r"""Seeds per row of Table 1 v2 from a power calculation on the v1 per-seed paired differences.

  python -m pointseg_jax.experiments.seed_plan        # the table in docs/experiments.md

For each finding (table1_v2.FINDINGS) the planning sd is the larger of
  - its own v1 paired sd: the sd over seeds of b - a in the committed v1 summaries (3 seeds),
    variances pooled over the v1 schedules that ran both rows (1,600 and 4,800 steps);
  - its group's pooled v1 paired sd (table1_v2.group: comparisons among the click regimes,
    across loss families, or pretrained vs scratch, for which v1 has no pairs: sqrt(2) times the
    pooled per-row sd, the sd of a difference of two unpaired runs),
so a lucky small 3-seed sd does not shrink the plan. The seeds a finding needs: the fewest with
80 % power for its planned effect at the per-finding alpha its verdict uses
(paired_tests.seeds_needed). A row gets the most any of its findings needs, at least MIN_SEEDS
(MIN_SEEDS_SMALL when a finding's planned effect is <= 2 points), at most MAX_SEEDS (compute);
the power each finding then has is listed beside it, at alpha and at alpha / (findings in its
family), the level Holm's first step uses (the family-wise mark).
"""
import json
import math
import pathlib

import numpy as np

from pointseg_jax.experiments import paired_tests
from pointseg_jax.experiments import table1_v2
from pointseg_jax.experiments import verdicts

TARGET_POWER = 0.8
MIN_SEEDS, MIN_SEEDS_SMALL, SMALL_EFFECT, MAX_SEEDS = 3, 5, 2.0, 5


def load_v1(repo: pathlib.Path, sources: dict[str, tuple[str, ...]]) -> dict:
  """{schedule label: {run: {seed: mIoU %}}} from the committed v1 summaries."""
  out = {}
  for label, dirs in sources.items():
    summaries = [json.loads(p.read_text()) for d in dirs
                 for p in sorted((repo / d).glob("*/seed*/summary.json"))]
    out[label] = verdicts.per_seed(summaries)
  return out


def paired_variances(v1: dict, b: str, a: str) -> list[float]:
  """The variance of b - a over seeds, one per v1 schedule that ran both rows."""
  out = []
  for values in v1.values():
    d = verdicts.differences(values, b, a, math.inf)
    if len(d) >= 2:
      out.append(float(np.var(d, ddof=1)))
  return out


def row_variances(v1: dict, names) -> list[float]:
  return [float(np.var(list(values[n].values()), ddof=1)) for values in v1.values()
          for n in names if len(values.get(n, {})) >= 2]


def plan(findings, v1: dict, v1_name, group, rows=()) -> tuple[list[dict], dict[str, int]]:
  """(one dict per finding: own / group / planning sd, seeds needed, power at the chosen seeds;
  {row: seeds}, in the order of `rows` then the findings' rows). v1_name(row) -> the row's v1
  name or None; group(finding) -> its group. A row in no finding (a descriptive curve's point)
  gets MIN_SEEDS."""
  own = {}
  for f in findings:
    b, *a_names = [v1_name(r) for r in f.rows()]
    # Several a: the largest of the b-vs-a variances v1 has (the plan must hold for every
    # pair). 'init' pairs a row with itself from scratch: v1 (all scratch) has no such pair.
    per_a = [] if b is None or group(f) == "init" else [
        v for v in (paired_variances(v1, b, a) for a in a_names if a is not None) if v]
    own[f.what] = max(per_a, key=np.mean) if per_a else []
  by_group = {}
  for f in findings:
    by_group.setdefault(group(f), []).extend(own[f.what])
  every_row = sorted({v1_name(r) for f in findings for r in f.rows()} - {None})
  unpaired = math.sqrt(2 * np.mean(row_variances(v1, every_row)))
  family_size = {}
  for f in findings:
    family_size[f.family] = family_size.get(f.family, 0) + 1
  items = []
  for f in findings:
    variances = by_group[group(f)]
    sd_group = math.sqrt(np.mean(variances)) if variances else unpaired
    sd_own = math.sqrt(np.mean(own[f.what])) if own[f.what] else None
    sd = max(sd_group, sd_own or 0.0)
    need = paired_tests.seeds_needed(f.relation, f.planned_effect, sd, verdicts.ALPHA,
                                     TARGET_POWER, f.margin, n_max=50)
    items.append({"finding": f.what, "family": f.family, "group": group(f),
                  "relation": f.relation, "planned_effect": f.planned_effect,
                  "margin": f.margin, "sd_own_v1": sd_own, "sd_group_v1": sd_group,
                  "sd_plan": sd, "alpha_holm_first": verdicts.ALPHA / family_size[f.family],
                  "seeds_needed": need})
  seeds = {row: 0 for row in rows}
  for f, item in zip(findings, items):
    low = MIN_SEEDS_SMALL if abs(f.planned_effect) <= SMALL_EFFECT else MIN_SEEDS
    want = min(MAX_SEEDS, max(low, item["seeds_needed"] or MAX_SEEDS))
    for row in f.rows():
      seeds[row] = max(seeds.get(row, 0), want)
  seeds = {row: n or MIN_SEEDS for row, n in seeds.items()}
  for f, item in zip(findings, items):
    n = min(seeds[r] for r in f.rows())
    item["seeds"] = n
    item["power"], item["power_holm_first"] = (
        paired_tests.power(f.relation, f.planned_effect, item["sd_plan"], n, alpha, f.margin)
        for alpha in (verdicts.ALPHA, item["alpha_holm_first"]))
  return items, seeds


def markdown(items: list[dict], seeds: dict[str, int]) -> str:
  def num(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"
  lines = ["| finding | family | relation | planned b − a | v1 sd (own) | v1 sd (group) | "
           f"planning sd | seeds needed (80 % at α = {verdicts.ALPHA:g}) | seeds | power | "
           "power at α / k (Holm's first step) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for i in items:
    rel = i["relation"] + (f" ±{i['margin']:g}" if i["margin"] else "")
    lines.append(f"| {i['finding']} | {i['family']} | {rel} | {i['planned_effect']:+.2f} | "
                 f"{num(i['sd_own_v1'])} | {num(i['sd_group_v1'])} ({i['group']}) | "
                 f"{num(i['sd_plan'])} | {i['seeds_needed'] or '> 50'} | {i['seeds']} | "
                 f"{i['power']:.2f} | {i['power_holm_first']:.2f} (α = "
                 f"{i['alpha_holm_first']:.4f}) |")
  lines += ["", "| row | seeds |", "|---|---|"]
  lines += [f"| `{row}` | {n} |" for row, n in seeds.items()]
  lines += ["", f"{len(seeds)} rows, {sum(seeds.values())} runs."]
  return "\n".join(lines) + "\n"


def main():
  repo = pathlib.Path(__file__).resolve().parents[2]
  items, seeds = plan(table1_v2.FINDINGS, load_v1(repo, table1_v2.V1_SOURCES),
                      table1_v2.v1_name, table1_v2.group, [r.name for r in table1_v2.ALL_RUNS])
  print(markdown(items, seeds), end="")


if __name__ == "__main__":
  main()
