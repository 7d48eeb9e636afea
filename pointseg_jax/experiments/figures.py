"""The results' figures: Fig. 6a (mIoU vs annotation hours), the equal-budget curve and the
convergence curves (docs/experiments.md).

Many rows share 1Point's annotation hours, so their labels sit in a column beside the axes,
spread to a minimum gap and joined to their points by thin lines (`spread`), never on top of
each other as in v1's figure.
"""

import pathlib

from pointseg_jax import supervision
from pointseg_jax.experiments import annotation_cost

VOC_TRAIN_IMAGES = 10582
FONT = 7                           # label size, points
GAP = FONT * 1.35 / 72             # minimum distance between two labels' centres, inches
NOT_IN_PAPER = "not in the paper: "
WIDTH = 13.0                       # Fig. 6a, inches: axes 5.6, label column, the paper's panel
BEYOND_RADII = ("grown_r2", "grown_r5", "grown_r25")   # the paper's radii taken literally
# The val curves drawn (a few rows of each kind; the table has every row's last value).
CURVE_ROWS = ("image", "image_obj", "point_noobj", "point", "all_points", "box", "full",
              "scratch_point", "scratch_full")


def spread(ys, gap: float, lo: float, hi: float) -> list[float]:
  """Positions as near as they can be to `ys` (in order), at least `gap` apart, within
  [lo, hi] where room allows: push up from the lowest, then back down from the top."""
  order = sorted(range(len(ys)), key=lambda i: ys[i])
  placed = [max(ys[i], lo) for i in order]
  for k in range(1, len(placed)):
    placed[k] = max(placed[k], placed[k - 1] + gap)
  if placed and placed[-1] > hi:
    placed[-1] = hi
    for k in range(len(placed) - 2, -1, -1):
      placed[k] = min(placed[k], placed[k + 1] - gap)
  out = [0.0] * len(ys)
  for k, i in enumerate(order):
    out[i] = placed[k]
  return out


def label(name: str, row: dict) -> str:
  """The paper's name of a row; a radius where rows share one; † marks rows beyond the paper."""
  text = row["paper_name"]
  beyond = text.startswith(NOT_IN_PAPER)
  text = text[len(NOT_IN_PAPER):] if beyond else text
  for prefix, what in (("grown_r", "Img + Obj + 1Point grown"), ("squiggle_r", "Img + Obj + squiggle")):
    if name.startswith(prefix):
      text, beyond = f"{what}, r = {name[len(prefix):]} px", beyond or name in BEYOND_RADII
  return text + (" †" if beyond else "")


def _pyplot():
  import matplotlib   # pylint: disable=g-import-not-at-top  (heavy; only when drawing)
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt   # pylint: disable=g-import-not-at-top
  return plt


def _axes(plt, width: float, height: float, plot_width: float):
  """A figure whose axes' size in inches is known (labels are placed in inches)."""
  fig = plt.figure(figsize=(width, height))
  left, bottom, top = 0.75, 0.6, 0.35
  ax = fig.add_axes([left / width, bottom / height, plot_width / width,
                     (height - bottom - top) / height])
  return fig, ax, height - bottom - top


def _plain_log_x(ax):
  from matplotlib import ticker   # pylint: disable=g-import-not-at-top
  ax.set_xscale("log")
  # Hours span less than two decades: label 1, 2, 3, 5 × 10^k (not 1.1 × 10^1, not every tick).
  plain = ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "1235" else "")
  ax.xaxis.set_major_formatter(plain)
  ax.xaxis.set_minor_formatter(plain)
  ax.tick_params(axis="x", which="both", labelsize=8)


def _label_column(ax, points, axes_height: float) -> None:
  """points: [(x, y, text, colour)] in data units; labels in a column right of the axes."""
  y0, y1 = ax.get_ylim()
  ys = [(y - y0) / (y1 - y0) for _, y, _, _ in points]
  gap = GAP / axes_height
  for (x, y, text, color), at in zip(points, spread(ys, gap, gap / 2, 1 - gap / 2)):
    ax.annotate(text, xy=(x, y), xycoords="data", xytext=(1.04, at), textcoords="axes fraction",
                fontsize=FONT, va="center", color=color, annotation_clip=False,
                arrowprops={"arrowstyle": "-", "lw": 0.4, "color": color, "alpha": 0.5,
                            "shrinkA": 0, "shrinkB": 3})


def _finish(ax, xlabel: str, ylabel: str, title: str, legend_size: int = 7) -> None:
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=legend_size, loc="lower right")


def _color(regime: str) -> str:
  return {"box": "C2", "full": "C3"}.get(regime, "C0")


def plot_fig6a(rows: dict, path: pathlib.Path, num_train: int) -> None:
  """mIoU vs annotation hours (paper's cost model): every finished row that trains on the whole
  set, the equal-budget runs as lines; the paper's VOC Fig. 6a in a second panel."""
  plt = _pyplot()
  fig, ax, axes_height = _axes(plt, WIDTH, 6.0, 5.6)
  points = []
  for name, r in rows.items():
    if r["annotation_hours"] is None or r.get("budget_seconds") or r["miou_mean"] is None:
      continue
    ax.errorbar(r["annotation_hours"], r["miou_mean"], yerr=r["miou_std"] or 0, fmt="o",
                ms=4, capsize=2, color=_color(r["regime"]))
    points.append((r["annotation_hours"], r["miou_mean"], label(name, r), _color(r["regime"])))
  for regime in ("full", "box"):
    series = sorted((r["annotation_hours"], r["miou_mean"], r["miou_std"] or 0)
                    for r in rows.values()
                    if r["regime"] == regime and r.get("budget_seconds") and r["miou_mean"] is not None)
    if series:
      x, y, e = zip(*series)
      ax.errorbar(x, y, yerr=e, fmt="--s", ms=3, color=_color(regime), capsize=2,
                  alpha=0.6, label=f"{regime} on the images a budget buys")
  point = rows.get("point")
  if point and point["annotation_hours"]:
    ax.axvline(point["annotation_hours"], color="grey", ls=":", lw=1, label="1Point's hours")
  _plain_log_x(ax)
  _finish(ax, f"annotation hours (paper's cost model; {num_train} train images)", "val mIoU (%)",
          "embedded benchmark: mean ± std over seeds († beyond the paper)")
  _label_column(ax, points, axes_height)

  paper = fig.add_axes([9.3 / WIDTH, 0.6 / 6.0, 3.4 / WIDTH, (6.0 - 0.95) / 6.0])
  for regime in ("image", "point", "box", "full"):
    row = supervision.get_regime(regime)
    h = annotation_cost.hours(regime, VOC_TRAIN_IMAGES)
    paper.plot(h, row.paper_miou, "o", color=_color(regime))
    paper.annotate(row.paper, (h, row.paper_miou), fontsize=FONT, xytext=(4, 3),
                   textcoords="offset points")
  _plain_log_x(paper)
  _finish(paper, f"annotation hours ({VOC_TRAIN_IMAGES} VOC train images)",
          "VOC 2012 val mIoU (%)", "paper, Fig. 6a")
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_equal_budget(rows: dict, path: pathlib.Path) -> None:
  """Full masks and boxes on the images that 1, 2 and 4 times 1Point's hours buy, and on the
  whole set (hollow), against 1Point on the whole set: which labels an hour buys best."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7.0, 4.6))
  whole = _whole(rows)
  for regime in ("full", "box"):
    series = sorted((r["annotation_hours"], r) for r in rows.values()
                    if r["regime"] == regime and r["miou_mean"] is not None
                    and (r.get("budget_seconds") or r["train_images"] == whole))
    if not series:
      continue
    color = _color(regime)
    ax.plot([h for h, _ in series], [r["miou_mean"] for _, r in series], "-", color=color,
            alpha=0.6, label=f"{supervision.get_regime(regime).paper}: mean over seeds")
    for h, r in series:
      ax.plot([h] * len(r["miou_per_seed"]), r["miou_per_seed"], ".", color=color, ms=3)
      ax.plot(h, r["miou_mean"], "s", color=color, ms=6,
              mfc=color if r.get("budget_seconds") else "white")
      ax.annotate(f"{r['train_images']} img", (h, r["miou_mean"]), fontsize=FONT,
                  xytext=(5, -9), textcoords="offset points", color=color)
  point = rows.get("point")
  if point and point["miou_mean"] is not None:
    ax.plot([point["annotation_hours"]] * len(point["miou_per_seed"]), point["miou_per_seed"],
            ".", color="C0", ms=3)
    ax.plot(point["annotation_hours"], point["miou_mean"], "*", color="C0", ms=11,
            label=f"{point['paper_name']}, {point['train_images']} img")
    for k in (1, 2, 4):
      ax.axvline(k * point["annotation_hours"], color="grey", ls=":", lw=0.8)
  _plain_log_x(ax)
  _finish(ax, "annotation hours (paper's cost model; dotted: 1, 2, 4 × 1Point's)", "val mIoU (%)",
          "equal budget: filled = a budget's images, hollow = the whole set; dots = seeds")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _whole(rows: dict) -> int:
  return max((r["train_images"] for r in rows.values() if r["train_images"]), default=0)


def plot_convergence(summaries: list[dict], holdout: list[dict], chosen: str,
                     path: pathlib.Path, names=CURVE_ROWS) -> None:
  """Left: hold-out mIoU vs step of the schedule search's arms (the one chosen in bold: the
  only curves a choice was made on). Right: val mIoU vs step of a few table rows, the seeds'
  mean and their range (read only to show convergence, never to choose)."""
  plt = _pyplot()
  fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 4.6))
  for s in sorted(holdout, key=lambda s: s["run"]):
    steps, miou = _curve(s)
    bold = s["run"] == chosen
    left.plot(steps, miou, "-o" if bold else "-", ms=3, lw=2.2 if bold else 0.9,
              alpha=1 if bold else 0.6, label=s["run"] + (" (chosen)" if bold else ""))
  _finish(left, "step", "hold-out mIoU (%), train[1800:]",
          "schedule search, Img + Obj + 1Point, seed 0", legend_size=6)
  for k, name in enumerate(names):
    runs = [s for s in summaries if s["run"] == name and s.get("eval_miou_by_step")]
    if not runs:
      continue
    curves = [_curve(s) for s in runs]
    steps = curves[0][0]
    if any(c[0] != steps for c in curves):
      raise ValueError(f"{name}: seeds evaluated at different steps")
    per_step = list(zip(*(c[1] for c in curves)))
    mean = [sum(v) / len(v) for v in per_step]
    color = f"C{k % 10}"
    right.plot(steps, mean, marker="o", ms=3, color=color,
               ls="--" if name.startswith("scratch_") else "-",
               label=f"{name} ({len(runs)} seed{'s' * (len(runs) > 1)})")
    right.fill_between(steps, [min(v) for v in per_step], [max(v) for v in per_step],
                       color=color, alpha=0.15, lw=0)
  _finish(right, "step", "val mIoU (%)", "Table 1 v2 rows: seeds' mean, band = their range",
          legend_size=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _curve(summary: dict):
  by_step = sorted((int(k), 100 * v) for k, v in summary["eval_miou_by_step"].items())
  return [k for k, _ in by_step], [v for _, v in by_step]
