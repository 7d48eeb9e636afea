"""A sweep's results as a reader sees them: the markdown table, Fig. 6a, results.json."""
import dataclasses
import pathlib

from pointseg_jax import files
from pointseg_jax.experiments import figures
from pointseg_jax.experiments import statistics


def pm(mean, std, digits=1, signed=False):
  if mean is None:
    return "–"
  sign = "+" if signed else ""
  return f"{mean:{sign}.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def rows_markdown(rows: dict, schedule_name: str, seeds) -> list[str]:
  """The table of runs: mean ± std over seeds, the paper's number, cost and hours, wall time."""
  asked = (f"{seeds} seed(s) asked" if isinstance(seeds, int) else
           "the planned seeds of each row asked")
  lines = [
      f"Schedule `{schedule_name}`, {asked}; val mIoU (%) mean ± std over the seeds "
      "finished (std with ddof=1); wall min/run over the seeds that ran in one piece (a resumed "
      "run's summary times only its last process).",
      "",
      "| run | paper name | seeds | mIoU (%) | mIoU at half the steps | paper VOC (%) | "
      "label cost (s/img) | train images | annotation hours | wall min/run |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, r in rows.items():
    lines.append(
        f"| `{name}` | {r['paper_name']} | {r['n']} | {pm(r['miou_mean'], r['miou_std'])} | "
        f"{pm(r['miou_half_steps_mean'], None)} | "
        f"{'–' if r['paper_miou'] is None else r['paper_miou']} | "
        f"{'–' if r['seconds_per_image'] is None else r['seconds_per_image']} | "
        f"{r['train_images']} | "
        f"{'–' if r['annotation_hours'] is None else r['annotation_hours']} | "
        f"{pm(None if r['wall_time_s_mean'] is None else r['wall_time_s_mean'] / 60, None)} |")
  return lines


def table_markdown(rows: dict, found: list[dict], schedule_name: str, seeds: int) -> str:
  """v1: the runs and the findings under the 2-sigma rule."""
  lines = rows_markdown(rows, schedule_name, seeds)
  lines += ["", "Findings (difference = b − a in mIoU points; σ = the pooled per-seed std "
            "sqrt((σa² + σb²)/2); a finding '>' is reproduced when the difference exceeds 2σ, "
            "'~' when it stays within 2σ; the last column is b − a seed by seed, shown, not "
            "part of the verdict):", "",
            "| finding | paper (VOC) | b | a | difference | σ | verdict | "
            "b − a per seed: mean ± sd |",
            "|---|---|---|---|---|---|---|---|"]
  for f in found:
    diff = "–" if "difference" not in f else f"{f['difference']:+.1f}"
    sigma = "–" if f.get("sigma") is None else f"{f['sigma']:.1f}"
    lines.append(f"| {f['finding']} | {f['paper']} | `{f['b']}` | "
                 f"`{f.get('compared_with', ', '.join(f['a']))}` | {diff} | {sigma} | "
                 f"{f['verdict']} | {pm(f.get('paired_mean'), f.get('paired_sd'), signed=True)} |")
  return "\n".join(lines) + "\n"


def verdicts_markdown(found: list[dict], power: dict) -> str:
  """v2: each finding's pre-registered paired test and verdict (experiments/verdicts.py), with
  its planned power ({finding: power}), which an inconclusive verdict is read against."""
  lines = ["| finding | family | paper (VOC) | b | a | relation | n | "
           "b − a per seed: mean ± sd | interval | p | p (Holm) | power | verdict |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for f in found:
    relation = f["relation"] + (f" ±{f['margin']:g}" if f.get("margin") else "")
    interval = ("–" if "ci" not in f else
                f"[{f['ci'][0]:+.1f}, {f['ci'][1]:+.1f}] ({100 * f['ci_level']:.0f} %)"
                + (f", below {f['planned_effect']:+.1f}" if f.get("interval_below_planned_effect")
                   else ""))
    p = "–" if f["p"] is None else f"{f['p']:.3g}"
    p_holm = "–" if f["p_holm"] is None else f"{f['p_holm']:.3g}"
    lines.append(f"| {f['finding']} | {f['family']} | {f['paper'] or '–'} | `{f['b']}` | "
                 f"`{f.get('compared_with', ', '.join(f['a']))}` | {relation} | {f.get('n', 0)} | "
                 f"{pm(f.get('mean'), f.get('sd'), signed=True)} | {interval} | {p} | {p_holm} | "
                 f"{power[f['finding']]:.2f} | {f['verdict']} |")
  return "\n".join(lines) + "\n"


def seeds_markdown(rows: dict, seeds: dict) -> str:
  """Every seed's val mIoU (%) beside its row: the paired tests' inputs, readable. A diverged
  seed is shown as such (it enters the tests at verdicts.DIVERGED_MIOU)."""
  width = max(seeds.values())
  lines = ["| run | planned seeds | " + " | ".join(f"seed {k}" for k in range(width)) + " |",
           "|---|---|" + "---|" * width]
  for name, r in rows.items():
    by_seed = dict(zip(r["seeds"], r["miou_per_seed"]))
    cells = [_seed_cell(k, by_seed, r["diverged_seeds"], seeds.get(name, 0))
             for k in range(width)]
    lines.append(f"| `{name}` | {seeds.get(name, 0)} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _seed_cell(seed, by_seed, diverged, planned) -> str:
  if seed in diverged:
    return "diverged"
  if seed in by_seed:
    return "–" if by_seed[seed] is None else f"{by_seed[seed]:.1f}"
  return "·" if seed < planned else ""   # ·: planned, not finished yet


def write_results(out: pathlib.Path, summaries: list[dict], schedule, seeds: int,
                  num_train: int, command: str, *, runs=(), claims=()) -> dict:
  """results.json, table.md and fig6a.png from the kept summaries (statistics.collect's `runs`,
  statistics.findings' `claims`)."""
  rows = statistics.collect(summaries, runs)
  found = statistics.findings(rows, claims)
  results = {"schedule": dataclasses.asdict(schedule), "seeds": seeds, "command": command,
             "num_train_images": num_train, "rows": rows, "findings": found,
             "runs_finished": len(summaries)}
  files.write_json(out / "results.json", results, indent=1)
  files.write_text(out / "table.md", table_markdown(rows, found, schedule.name, seeds))
  if rows:
    figures.plot_fig6a(rows, out / "fig6a.png", num_train)
  return results
