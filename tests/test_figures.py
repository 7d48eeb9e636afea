"""The results' figures: labels never overlap, names say which row, every figure draws."""
import pathlib

import pytest

from pointseg_jax.experiments import figures


def test_spread_keeps_free_labels_and_pushes_crowded_ones_apart():
  assert figures.spread([0.1, 0.5, 0.9], 0.1, 0.0, 1.0) == [0.1, 0.5, 0.9]
  # Three labels at one height: pushed up from the lowest, in their input order kept.
  assert figures.spread([0.5, 0.5, 0.5], 0.1, 0.0, 1.0) == pytest.approx([0.5, 0.6, 0.7])
  # Against the top: pushed back down from it, the gap kept.
  assert figures.spread([0.95, 0.2, 0.97], 0.1, 0.0, 1.0) == pytest.approx([0.9, 0.2, 1.0])
  # Below the floor: raised to it.
  assert figures.spread([-0.3, 0.4], 0.1, 0.05, 1.0) == pytest.approx([0.05, 0.4])


def test_spread_of_many_labels_in_a_cluster_is_gap_apart_and_in_order():
  ys = [0.45 + 0.001 * k for k in range(12)]
  placed = figures.spread(ys, 0.05, 0.0, 1.0)
  assert all(b - a >= 0.05 - 1e-12 for a, b in zip(placed, placed[1:]))
  assert placed == sorted(placed) and max(placed) <= 1.0


def test_labels_name_the_radius_and_mark_rows_beyond_the_paper():
  grown = {"paper_name": "Img + Obj + 1Point grown by radius r"}
  assert figures.label("grown_r1.3", grown) == "Img + Obj + 1Point grown, r = 1.3 px"
  assert figures.label("grown_r25", grown) == "Img + Obj + 1Point grown, r = 25 px †"
  squiggle = {"paper_name": "not in the paper: Img + Obj + squiggle"}
  assert figures.label("squiggle_r5", squiggle) == "Img + Obj + squiggle, r = 5 px †"
  assert figures.label("point", {"paper_name": "Img + Obj + 1Point"}) == "Img + Obj + 1Point"


def _row(regime, name, hours, miou, images=2000, budget=None):
  return {"regime": regime, "paper_name": name, "annotation_hours": hours, "miou_mean": miou,
          "miou_std": 1.0, "miou_per_seed": [] if miou is None else [miou - 1, miou + 1], "train_images": images,
          "budget_seconds": budget}


def test_every_figure_draws_a_sweep_with_every_kind_of_row(tmp_path: pathlib.Path):
  rows = {"point": _row("point", "Img + Obj + 1Point", 12.3, 46.0),
          "all_points": _row("all_points", "Img + Obj + AllPoints", 12.9, 45.0),
          "full": _row("full", "Full", 133.2, 55.0),
          "full_budget1x": _row("full", "Full", 12.2, 30.0, images=184, budget=22.1 * 2000),
          "box": _row("box", "Box", 57.0, 30.0),
          "unfinished": _row("box", "Box", 24.0, None, images=862, budget=2 * 22.1 * 2000)}
  figures.plot_fig6a(rows, tmp_path / "a.png", 2000)
  figures.plot_equal_budget(rows, tmp_path / "b.png")
  summaries = [{"run": "point", "seed": k, "eval_miou_by_step": {"10": 0.2 + k / 100, "20": 0.4}}
               for k in range(3)]
  holdout = [{"run": "arm", "eval_miou_by_step": {"5": 0.1, "10": 0.3}}]
  figures.plot_convergence(summaries, holdout, "arm", tmp_path / "c.png")
  assert all((tmp_path / f).stat().st_size > 10_000 for f in ("a.png", "b.png", "c.png"))
  bad = summaries + [{"run": "point", "seed": 3, "eval_miou_by_step": {"15": 0.3}}]
  with pytest.raises(ValueError, match="point: seeds evaluated at different steps"):
    figures.plot_convergence(bad, [], None, tmp_path / "d.png")
