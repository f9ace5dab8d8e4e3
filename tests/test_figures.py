"""Figure data against hand-computed values, and every plot writing a real PNG and PDF."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_task_updates import TASK1, TASK2, TASK3

from continual_lora import figures, task_updates
from continual_lora.aggregation import mean_matrix

NAN = np.nan


def _row(method, run, after_task, eval_task, concept, value, metric="dino"):
    return {"method": method, "run": run, "after_task": after_task, "eval_task": eval_task,
            "concept": concept, "metric": metric, "value": value}  # fmt: skip


# M[i, t] for run "0" and run "1" of naive, tasks 1..3 (rows: eval task, columns: after task).
RUN0 = np.array([[0.8, 0.6, 0.4], [NAN, 0.9, 0.7], [NAN, NAN, 0.5]])
RUN1 = np.array([[0.6, 0.6, 0.2], [NAN, 0.7, 0.5], [NAN, NAN, 0.9]])
CONCEPTS = {"0": ["dog", "cat", "vase"], "1": ["cat", "vase", "dog"]}
BASE = {"dog": 0.30, "cat": 0.20, "vase": 0.10}


@pytest.fixture
def scores() -> pd.DataFrame:
    rows = [_row("base", "", 0, "", c, v) for c, v in BASE.items()]
    for run, matrix in (("0", RUN0), ("1", RUN1)):
        for (i, t), value in np.ndenumerate(matrix):
            if i <= t:
                rows.append(_row("naive", run, t + 1, i + 1, CONCEPTS[run][i], value))
                # A second method and another metric, which must not leak into naive/dino.
                rows.append(_row("magmax", run, t + 1, i + 1, CONCEPTS[run][i], value / 2))
                rows.append(_row("naive", run, t + 1, i + 1, CONCEPTS[run][i], 99.0, metric="clip_i"))
    return pd.DataFrame(rows)


@pytest.fixture
def csv_scores(scores, tmp_path) -> pd.DataFrame:
    """Through a CSV, as the pipeline reads it: the empty eval_task and run come back as NaN."""
    path = tmp_path / "scores.csv"
    scores.to_csv(path, index=False)
    return pd.read_csv(path)


def test_score_matrix_is_the_mean_over_runs_with_nan_below_the_diagonal(csv_scores):
    matrix = mean_matrix(csv_scores, "naive", "dino")
    expected = np.array([[0.7, 0.6, 0.3], [NAN, 0.8, 0.6], [NAN, NAN, 0.7]])
    np.testing.assert_allclose(matrix, expected, equal_nan=True)
    np.testing.assert_allclose(mean_matrix(csv_scores, "magmax", "dino"), expected / 2, equal_nan=True)


def test_score_matrix_averages_within_a_run_before_across_runs(scores):
    # Run 0 scored twice on cell (1, 1) (0.8 and 1.0 -> 0.9); run 1 once (0.6).
    extra = pd.DataFrame([_row("naive", "0", 1, 1, "dog", 1.0)])
    matrix = mean_matrix(pd.concat([scores, extra]), "naive", "dino")
    assert matrix[0, 0] == pytest.approx((0.9 + 0.6) / 2)


def test_score_matrix_rejects_an_unknown_method(scores):
    with pytest.raises(ValueError, match="no task scores"):
        mean_matrix(scores, "ortho_init", "dino")


def test_first_task_curve_data_and_the_base_line(csv_scores):
    curves = figures.first_task_curves(csv_scores, "dino")
    naive = curves[curves["method"] == "naive"].sort_values("after_task")
    np.testing.assert_allclose(naive["mean"], [0.7, 0.6, 0.3])
    np.testing.assert_allclose(naive["std"], np.std([[0.8, 0.6, 0.4], [0.6, 0.6, 0.2]], axis=0, ddof=0))
    assert set(curves["method"]) == {"naive", "magmax"}
    # Run 0 began with dog (0.30), run 1 with cat (0.20).
    assert figures.base_first_task_score(csv_scores, "dino") == pytest.approx(0.25)


def test_method_order_puts_base_first_and_keeps_unknown_methods():
    assert figures.ordered_methods(["magmax", "extra", "naive", "base", "ortho_init"]) == [
        "base", "naive", "ortho_init", "magmax", "extra"
    ]  # fmt: skip


# ----------------------------------------------------------------------------- plots


def _assert_written(paths, min_side=300):
    png, pdf = paths
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    with Image.open(png) as image:
        width, height = image.size
    assert min_side <= width <= 6000 and min_side <= height <= 6000, (width, height)
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000


def test_save_figure_keeps_dots_in_the_stem(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 3))
    fig.subplots().plot([0, 1], [0, 1])
    paths = figures.save_figure(fig, tmp_path / "sub" / "heatmap_v1.5")
    assert [p.name for p in paths] == ["heatmap_v1.5.png", "heatmap_v1.5.pdf"]
    _assert_written(paths)


def test_plot_heatmap(csv_scores, tmp_path):
    matrix = mean_matrix(csv_scores, "naive", "dino")
    _assert_written(figures.plot_heatmap(matrix, "naive", "dino", tmp_path / "heatmap"))


def test_heatmap_overview_puts_every_method_on_one_scale(csv_scores, tmp_path):
    methods = sorted(set(csv_scores.method) - {"base"})
    matrices = {method: mean_matrix(csv_scores, method, "dino") for method in methods}
    paths = figures.plot_heatmap_overview(matrices, "dino", tmp_path / "heatmaps")
    _assert_written(paths)
    # Ten panels, five to a row: two rows, each panel as wide as a five-task heatmap needs.
    many = {name: matrices[methods[0]] for name in figures.METHOD_ORDER}
    image = Image.open(figures.plot_heatmap_overview(many, "dino", tmp_path / "ten")[0])
    width, height = image.size
    assert 1.5 < width / height < 3.5


def test_plots_of_a_lower_is_better_metric(csv_scores, tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "higher_is_better", lambda metric: False)
    matrix = mean_matrix(csv_scores, "naive", "dino")
    _assert_written(figures.plot_heatmap(matrix, "naive", "dino", tmp_path / "heatmap_lower"))
    summary = pd.DataFrame({"method": ["naive", "naive"], "run": ["0", "1"], "metric": ["dino", "dino"],
                            "plasticity": [0.2, 0.3], "avg_forgetting": [0.1, 0.15]})  # fmt: skip
    _assert_written(figures.plot_plasticity_forgetting(summary, "dino", tmp_path / "pf_lower"))


def test_plot_first_task_curve(csv_scores, tmp_path):
    _assert_written(figures.plot_first_task_curve(csv_scores, "dino", tmp_path / "first_task"))


def test_plot_sample_grid_with_a_missing_cell(tmp_path):
    rows = ["task 1: dog", "task 2: a rather long concept name"]
    methods = ["naive", "magmax", "base"]
    grid = {(r, m): Image.new("RGB", (32, 32), (40 * i, 80, 160)) for i, r in enumerate(rows) for m in methods}
    del grid[(rows[1], "magmax")]
    _assert_written(figures.plot_sample_grid(grid, rows, methods, "a V* in a jail", tmp_path / "grid"))


def test_plot_plasticity_forgetting(tmp_path):
    rng = np.random.default_rng(0)
    summary = pd.DataFrame(
        [{"method": m, "run": str(r), "metric": "dino", "plasticity": 0.7 + 0.05 * rng.standard_normal(),
          "avg_forgetting": 0.1 + 0.02 * rng.standard_normal()}
         for m in figures.METHOD_ORDER for r in range(3)]
        + [{"method": "naive", "run": "0", "metric": "clip_i", "plasticity": 9.0, "avg_forgetting": 9.0}]
    )  # fmt: skip
    _assert_written(figures.plot_plasticity_forgetting(summary, "dino", tmp_path / "pf"))


def test_plot_sign_conflicts_and_norm_ratio(tmp_path):
    adapters = [TASK1, TASK2, TASK3]
    _assert_written(figures.plot_sign_conflicts(task_updates.sign_conflicts(adapters, 1.0), "naive", tmp_path / "sc"))
    _assert_written(figures.plot_update_norm_ratio(task_updates.update_norm_ratio(adapters, 1.0), "naive", tmp_path / "nr"))
