"""Forgetting tables from scores.csv files, against hand-computed values."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from continual_lora.aggregation import SUMMARY_COLUMNS, per_run_scores, read_scores, run_matrix, summary_table, to_latex, to_markdown
from continual_lora.evaluation import SCORE_COLUMNS

# Per run, M[i][t] (0-based) for a 2-task chain; None = not yet seen.
RUNS = {
    ("naive", "order0_seed0"): [[0.8, 0.4], [None, 0.9]],  # forgets 0.4 on task 1
    ("naive", "order5_seed0"): [[0.6, 0.5], [None, 0.7]],  # forgets 0.1
    ("magmax", "order0_seed0"): [[0.7, 0.7], [None, 0.6]],  # forgets nothing
}
BASE = {"a": 0.2, "b": 0.4}


def write_scores(folder):
    paths = []
    for (method, run), matrix in RUNS.items():
        for after in (1, 2):
            path = folder / f"{method}_{run}_{after}.csv"
            with open(path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=SCORE_COLUMNS)
                writer.writeheader()
                for task in range(1, after + 1):
                    writer.writerow({"method": method, "run": run, "after_task": after, "eval_task": task,
                                     "concept": "ab"[task - 1], "metric": "dino", "value": matrix[task - 1][after - 1]})  # fmt: skip
            paths.append(path)
    base = folder / "base.csv"
    with open(base, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SCORE_COLUMNS)
        writer.writeheader()
        for concept, value in BASE.items():
            writer.writerow({"method": "base", "run": "", "after_task": 0, "eval_task": "", "concept": concept, "metric": "dino", "value": value})
    return [*paths, base]


def test_run_matrix_places_each_score(tmp_path):
    scores = read_scores(write_scores(tmp_path))
    m = run_matrix(scores, "naive", "order0_seed0", "dino")
    assert np.array_equal(m, np.array([[0.8, 0.4], [np.nan, 0.9]]), equal_nan=True)


def test_per_run_and_summary_by_hand(tmp_path):
    scores = read_scores(write_scores(tmp_path))
    per_run = per_run_scores(scores).set_index(["method", "run"])
    assert per_run.loc[("naive", "order0_seed0"), "avg_forgetting"] == pytest.approx(0.4 / 2)
    assert per_run.loc[("naive", "order5_seed0"), "avg_score"] == pytest.approx((0.5 + 0.7) / 2)
    assert per_run.loc[("magmax", "order0_seed0"), "plasticity"] == pytest.approx((0.7 + 0.6) / 2)

    summary = summary_table(scores, ["naive", "magmax"])
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert list(summary.method) == ["base", "naive", "magmax"]
    naive = summary[summary.method == "naive"].iloc[0]
    # average scores 0.65 and 0.6; forgetting 0.2 and 0.05; population std
    assert naive.avg_score_mean == pytest.approx(0.625) and naive.avg_score_std == pytest.approx(0.025)
    assert naive.avg_forgetting_mean == pytest.approx(0.125) and naive.avg_forgetting_std == pytest.approx(0.075)
    assert naive.n_runs == 2
    base = summary[summary.method == "base"].iloc[0]
    assert base.avg_score_mean == pytest.approx(0.3) and np.isnan(base.avg_forgetting_mean)


def test_markdown_and_latex_tables_show_every_method(tmp_path):
    summary = summary_table(read_scores(write_scores(tmp_path)), ["naive", "magmax"])
    markdown = to_markdown(summary)
    assert "| naive | 0.625 ± 0.025 | 0.125 ± 0.075 | 1.000 ± 0.000 |" in markdown
    latex = to_latex(summary, "Objects")
    assert "naive & 0.625 $\\pm$ 0.025 & 0.125 $\\pm$ 0.075 & 1.000 $\\pm$ 0.000 \\\\" in latex
    assert latex.count("\\midrule") == 2 and "\\begin{tabular}{lccc}" in latex


def test_share_of_tasks_learnt_against_the_base_model(tmp_path, monkeypatch):
    # Base a=0.75, b=0.4: naive order0 beats it on both tasks (0.8, 0.9), naive order5
    # (0.6, 0.7) and magmax (0.7, 0.6) only on task 2.
    monkeypatch.setitem(BASE, "a", 0.75)
    scores = read_scores(write_scores(tmp_path))
    per_run = per_run_scores(scores).set_index(["method", "run"])
    assert per_run.loc[("naive", "order0_seed0"), "beats_base"] == 1.0
    assert per_run.loc[("naive", "order5_seed0"), "beats_base"] == 0.5
    assert per_run.loc[("magmax", "order0_seed0"), "beats_base"] == 0.5

    summary = summary_table(scores, ["naive", "magmax"]).set_index("method")
    assert summary.loc["naive", "beats_base_mean"] == pytest.approx(0.75)
    assert summary.loc["naive", "beats_base_std"] == pytest.approx(0.25)
    assert np.isnan(summary.loc["base", "beats_base_mean"])
    assert "| naive | 0.625 ± 0.025 | 0.125 ± 0.075 | 0.750 ± 0.250 |" in to_markdown(summary.reset_index())


def test_beats_base_share_is_strict_and_follows_the_metric_direction():
    import pandas as pd

    from continual_lora.aggregation import beats_base_share

    rows = pd.DataFrame(
        {"after_task": [1, 2, 2, 3], "eval_task": [1, 1, 2, 3], "concept": ["a", "a", "b", "c"], "value": [0.5, 0.1, 0.3, 0.9]}
    )
    base = pd.Series({"a": 0.4, "b": 0.3, "c": 1.0})
    # Diagonal a=0.5, b=0.3, c=0.9; the off-diagonal 0.1 is not looked at; a tie is no win.
    assert beats_base_share(rows, base, higher_is_better=True) == pytest.approx(1 / 3)
    assert beats_base_share(rows, base, higher_is_better=False) == pytest.approx(1 / 3)
    assert np.isnan(beats_base_share(rows, None, higher_is_better=True))
    assert np.isnan(beats_base_share(rows, base.drop("c"), higher_is_better=True))


def test_mean_matrix_averages_runs_position_by_position(tmp_path):
    from continual_lora.aggregation import mean_matrix, write_mean_matrices

    scores = read_scores(write_scores(tmp_path))
    expected = np.array([[0.7, 0.45], [np.nan, 0.8]])
    assert np.allclose(mean_matrix(scores, "naive", "dino"), expected, equal_nan=True)
    (path,) = write_mean_matrices(scores, ["naive"], tmp_path / "m")
    assert path.read_text().splitlines()[:2] == ["eval_task,after_task1,after_task2", "1,0.7,0.45"]
