"""Statistics of a sweep's per-seed summaries: mean +- std per run, per-seed differences, verdicts.

Numbers are mIoU in percent. A seed fixes the initial weights and the batch order, which every
regime shares, so per-seed differences are paired; the pooled-sigma verdict and the paired
differences are documented in docs/experiments.md.
"""
import math

import numpy as np

from pointseg_jax import supervision
from pointseg_jax.experiments import annotation_cost


def mean_std(values):
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def median(values):
  values = [v for v in values if v is not None]
  return float(np.median(values)) if values else None


def collect(summaries: list[dict], runs=()) -> dict:
  """{run: {n, seeds, miou_mean, miou_std, half_mean, hours, paper_miou, ...}} (% numbers).

  runs: the Run definitions, in table order (their budget tells equal-budget rows, which have no
  paper number); summaries of runs not among them follow, by name."""
  runs_by_name = {r.name: r for r in runs}
  by_run = {}
  for s in summaries:
    by_run.setdefault(s["run"], []).append(s)
  rows = {}
  for name in [r.name for r in runs if r.name in by_run] + sorted(
      set(by_run) - set(runs_by_name)):
    group = sorted(by_run[name], key=lambda s: s["seed"])
    regime = supervision.get_regime(group[0]["regime"])
    mious = [None if s["miou"] is None else 100 * s["miou"] for s in group]
    mean, std = mean_std(mious)
    halves = []
    for s in group:
      steps = sorted(int(k) for k in s["eval_miou_by_step"])
      half = str(steps[-1] // 2) if len(steps) > 1 else None
      if half in s["eval_miou_by_step"]:
        halves.append(100 * s["eval_miou_by_step"][half])
    half_mean, _ = mean_std(halves)
    cost = annotation_cost.seconds_per_image(regime.name)
    budget = getattr(runs_by_name.get(name), "budget_seconds", None)
    images = group[0]["train_images"]
    rows[name] = {
        "regime": regime.name, "paper_name": regime.paper, "n": len(group),
        "seeds": [s["seed"] for s in group],
        "miou_mean": mean, "miou_std": std, "miou_per_seed": mious,
        "diverged_seeds": [s["seed"] for s in group if s.get("error")],
        "miou_half_steps_mean": half_mean,
        "budget_seconds": budget,
        "paper_miou": regime.paper_miou if budget is None else None,
        "seconds_per_image": cost, "train_images": images,
        "annotation_hours": None if cost is None else round(cost * images / 3600, 2),
        # A resumed run's summary times only its last process: the mean is over whole runs.
        "wall_time_s_mean": mean_std([s["wall_time_s"] for s in group
                                      if not s.get("resumed_from_step")])[0],
        "train_steps_per_sec_median": median([s.get("train_steps_per_sec") for s in group]),
    }
  return rows


def paired(b: dict, a: dict) -> dict:
  """b - a seed by seed (a seed fixes the initial weights and the batch order, which every
  regime shares): shown beside the pooled-sigma verdict, not part of it (docs/experiments.md)."""
  by_seed = dict(zip(a["seeds"], a["miou_per_seed"]))
  diffs = [vb - by_seed[seed] for seed, vb in zip(b["seeds"], b["miou_per_seed"])
           if vb is not None and by_seed.get(seed) is not None]
  mean, sd = mean_std(diffs)
  return {"paired_differences": diffs, "paired_mean": mean, "paired_sd": sd}


def findings(rows: dict, claims) -> list[dict]:
  """Per claim (what, b, a names, relation, paper numbers): b - (best of a), the pooled per-seed
  std sigma, and the verdict vs 2 sigma."""
  out = []
  for what, b, a_names, relation, paper in claims:
    item = {"finding": what, "b": b, "a": list(a_names), "relation": relation, "paper": paper}
    present = [a for a in a_names if a in rows and rows[a]["miou_mean"] is not None]
    if b not in rows or len(present) < len(a_names):
      missing = [n for n in (b, *a_names) if n not in rows]
      out.append({**item, "verdict": f"pending ({', '.join(missing)} not run yet)"})
      continue
    a = max(present, key=lambda n: rows[n]["miou_mean"])
    diff = rows[b]["miou_mean"] - rows[a]["miou_mean"]
    stds = [rows[n]["miou_std"] for n in (a, b)]
    sigma = None if None in stds else math.sqrt((stds[0] ** 2 + stds[1] ** 2) / 2)
    item.update(compared_with=a, difference=diff, sigma=sigma,
                n=min(rows[a]["n"], rows[b]["n"]), **paired(rows[b], rows[a]))
    if sigma is None:
      item["verdict"] = "pending (needs >= 2 seeds for a spread)"
    elif relation == ">":
      item["verdict"] = ("reproduced (> 2 sigma)" if diff > 2 * sigma else
                         "same sign, within 2 sigma" if diff > 0 else
                         "not reproduced: reversed by > 2 sigma" if diff < -2 * sigma else
                         "not reproduced: opposite sign, within 2 sigma")
    else:
      item["verdict"] = ("consistent (within 2 sigma)" if abs(diff) <= 2 * sigma else
                         "not reproduced: differ by > 2 sigma")
    out.append(item)
  return out
