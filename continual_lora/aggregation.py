"""From every checkpoint's scores to an experiment's forgetting tables.

Per run and metric, the matrix M[i, t] (score on task i after task t) gives average
score, average forgetting and plasticity (``continual_lora.forgetting``), and the
share of tasks learnt: those whose score right after their training, M[i, i], is
better than the base model's on the same concept. The summary is the mean and
population standard deviation over runs, one row per method and metric, with the
base model as the reference row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from continual_lora.forgetting import continual_scores
from continual_lora.scoring import METRICS

SUMMARY_COLUMNS = (
    "method", "metric", "avg_score_mean", "avg_score_std", "avg_forgetting_mean", "avg_forgetting_std",
    "beats_base_mean", "beats_base_std", "n_runs",
)  # fmt: skip
BASE = "base"


def read_scores(paths: list[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p, dtype={"run": str}, keep_default_na=False, na_values={"eval_task": [""]}) for p in paths]
    scores = pd.concat(frames, ignore_index=True)
    scores["run"] = scores["run"].fillna("")
    return scores


def run_matrix(scores: pd.DataFrame, method: str, run: str, metric: str) -> np.ndarray:
    """M[i, t] of one run (0-based), NaN where task i is not yet seen after task t."""
    rows = scores[(scores.method == method) & (scores.run == run) & (scores.metric == metric)]
    n_tasks = int(rows.after_task.max())
    matrix = np.full((n_tasks, n_tasks), np.nan)
    for row in rows.itertuples():
        matrix[int(row.eval_task) - 1, int(row.after_task) - 1] = row.value
    return matrix


def numeric_tasks(scores: pd.DataFrame) -> pd.DataFrame:
    # CSV round trips leave the base model's empty eval_task as NaN or "", so the
    # task columns are coerced rather than trusted to be ints.
    out = scores.copy()
    out["after_task"] = pd.to_numeric(out["after_task"], errors="coerce")
    out["eval_task"] = pd.to_numeric(out["eval_task"], errors="coerce")
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    return out


def task_rows(scores: pd.DataFrame, method: str, metric: str) -> pd.DataFrame:
    scores = numeric_tasks(scores)
    rows = scores[(scores["method"] == method) & (scores["metric"] == metric) & scores["eval_task"].notna()]
    if rows.empty:
        raise ValueError(f"no task scores for method {method!r} and metric {metric!r}")
    return rows


def mean_matrix(scores: pd.DataFrame, method: str, metric: str) -> np.ndarray:
    """``M[i, t]``: mean over runs of the score on task i+1 after task t+1; NaN where i > t.

    A run's cell is first averaged over its own rows, so a run that happens to have
    more rows in a cell does not outweigh the others.
    """
    rows = task_rows(scores, method, metric)
    n_tasks = int(rows["after_task"].max())
    per_run = rows.groupby(["run", "eval_task", "after_task"])["value"].mean()
    cells = per_run.groupby(level=["eval_task", "after_task"]).mean()
    matrix = np.full((n_tasks, n_tasks), np.nan)
    for (eval_task, after_task), value in cells.items():
        i, t = int(eval_task) - 1, int(after_task) - 1
        if 0 <= i <= t:
            matrix[i, t] = value
    return matrix


def write_mean_matrices(scores: pd.DataFrame, methods: list[str], folder: str | Path) -> list[Path]:
    """One CSV per method and metric: rows eval_task, columns after_task (1-based)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for method in methods:
        for metric in dict.fromkeys(scores.metric):
            matrix = mean_matrix(scores, method, metric)
            labels = range(1, matrix.shape[0] + 1)
            frame = pd.DataFrame(matrix, index=pd.Index(labels, name="eval_task"), columns=[f"after_task{t}" for t in labels])
            path = folder / f"{method}_{metric}.csv"
            frame.to_csv(path)
            written.append(path)
    return written


PER_RUN_COLUMNS = ("method", "run", "metric", "avg_score", "avg_forgetting", "plasticity", "beats_base")


def per_run_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, run, metric): average score, average forgetting,
    plasticity, and the share of tasks learnt (``beats_base``; NaN without base scores)."""
    records = []
    trained = scores[scores.method != BASE]
    base = _base_scores(scores)
    for (method, run, metric), rows in trained.groupby(["method", "run", "metric"], sort=False):
        higher = METRICS[metric].higher_is_better
        result = continual_scores(run_matrix(scores, method, run, metric), higher)
        records.append({"method": method, "run": run, "metric": metric, "avg_score": result.average_score,
                        "avg_forgetting": result.average_forgetting, "plasticity": result.plasticity,
                        "beats_base": beats_base_share(rows, base.get(metric), higher)})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=list(PER_RUN_COLUMNS))


def _base_scores(scores: pd.DataFrame) -> dict[str, pd.Series]:
    """Per metric, the base model's score per concept."""
    base = numeric_tasks(scores[scores.method == BASE])
    return {metric: group.groupby("concept")["value"].mean() for metric, group in base.groupby("metric")}


def beats_base_share(rows: pd.DataFrame, base: pd.Series | None, higher_is_better: bool) -> float:
    """The share of a run's tasks whose score right after training it (eval_task ==
    after_task) is strictly better than the base model's on the same concept."""
    rows = numeric_tasks(rows)
    diagonal = rows[rows.eval_task == rows.after_task].groupby("concept")["value"].mean()
    if base is None or diagonal.empty or not diagonal.index.isin(base.index).all():
        return np.nan
    margin = diagonal - base.loc[diagonal.index]
    return float(((margin > 0) if higher_is_better else (margin < 0)).mean())


# Beyond the paper (continual_lora.retention, continual_lora.composition): columns the
# summary has only where the experiment scores them.
RETENTION_COLUMNS = ("retention_mean", "retention_std")
COMPOSITION_COLUMNS = ("composition_mean", "composition_std")


def summary_table(
    scores: pd.DataFrame,
    method_order: list[str],
    retention: pd.DataFrame | None = None,
    composition: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mean and population std over runs; the base row's score is its mean over the
    experiment's concepts, and it has no forgetting. Where given, the retention of
    the general prompts after the last task (none for the base row, which is the
    reference: 1 by definition) and the composition score (``retention.csv`` and
    ``composition.csv`` rows) join as columns, by method and metric."""
    table = _paper_summary(scores)
    for extra in (_final_retention(retention), _composition(composition)):
        if extra is not None:
            table = table.merge(extra, on=["method", "metric"], how="outer")
    # A metric scored for retention only (clip_t beside DINO) has no score rows; it has no
    # run count either, and comes after the experiment's own metrics.
    table["n_runs"] = table["n_runs"].astype("Int64")
    scored = set(scores.metric)
    order = {m: i for i, m in enumerate([BASE, *method_order])}

    def sort_key(column: pd.Series) -> pd.Series:
        if column.name == "method":
            return column.map(order)
        return column.map(lambda metric: (metric not in scored, metric))

    return table.sort_values(["metric", "method"], key=sort_key).reset_index(drop=True)


def _final_retention(retention: pd.DataFrame | None) -> pd.DataFrame | None:
    if retention is None or retention.empty:
        return None
    from continual_lora.retention import final_retention

    return final_retention(retention)


def _composition(composition: pd.DataFrame | None) -> pd.DataFrame | None:
    if composition is None or composition.empty:
        return None
    from continual_lora.composition import composition_summary

    return composition_summary(composition)


def _paper_summary(scores: pd.DataFrame) -> pd.DataFrame:
    per_run = per_run_scores(scores)
    rows = []
    base = scores[scores.method == BASE]
    for metric, group in base.groupby("metric", sort=False):
        rows.append({"method": BASE, "metric": metric, "avg_score_mean": group.value.mean(), "avg_score_std": 0.0,
                     "avg_forgetting_mean": np.nan, "avg_forgetting_std": np.nan,
                     "beats_base_mean": np.nan, "beats_base_std": np.nan, "n_runs": 1})  # fmt: skip
    for (method, metric), group in per_run.groupby(["method", "metric"], sort=False):
        rows.append({
            "method": method, "metric": metric,
            "avg_score_mean": group.avg_score.mean(), "avg_score_std": group.avg_score.std(ddof=0),
            "avg_forgetting_mean": group.avg_forgetting.mean(), "avg_forgetting_std": group.avg_forgetting.std(ddof=0),
            "beats_base_mean": group.beats_base.mean(), "beats_base_std": group.beats_base.std(ddof=0),
            "n_runs": len(group),
        })  # fmt: skip
    return pd.DataFrame.from_records(rows, columns=list(SUMMARY_COLUMNS))


def _cell(mean: float, std: float, latex: bool) -> str:
    if np.isnan(mean):
        return "--" if latex else "-"
    return f"{mean:.3f} $\\pm$ {std:.3f}" if latex else f"{mean:.3f} ± {std:.3f}"


def _columns(summary: pd.DataFrame, metric: str) -> list[tuple[str, str, bool]]:
    """(label, column stem, higher is better) of the metric's columns: the paper's
    score and forgetting, the share of tasks learnt where base scores give it, then
    retention and composition where the metric has them."""
    higher = METRICS[metric].higher_is_better
    rows = summary[summary.metric == metric]
    columns = [("score", "avg_score", higher), ("forgetting", "avg_forgetting", False)]
    if "beats_base_mean" in rows and rows["beats_base_mean"].notna().any():
        columns.append(("learnt", "beats_base", True))
    for label, stem in (("retention", "retention"), ("composition", "composition")):
        if f"{stem}_mean" in rows and rows[f"{stem}_mean"].notna().any():
            # Retention is 1 for the base model and less where the model drifted.
            columns.append((label, stem, True if stem == "retention" else higher))
    if rows["avg_score_mean"].isna().all():
        columns = [c for c in columns if c[1] in ("retention", "composition")]  # a metric scored for retention only
    return columns


def _layout(summary: pd.DataFrame, latex: bool) -> tuple[list[str], list[list[str]]]:
    """The paper's layout: a row per method; per metric an average-score and an
    average-forgetting column, and retention and composition where scored (↑ / ↓
    marks which way is better)."""
    metrics = list(dict.fromkeys(summary.metric))
    methods = list(dict.fromkeys(summary.method))
    methods = [BASE, *[m for m in methods if m != BASE]] if BASE in methods else methods
    up, down = ("$\\uparrow$", "$\\downarrow$") if latex else ("↑", "↓")
    columns = {metric: _columns(summary, metric) for metric in metrics}
    header = ["Method"]
    for metric in metrics:
        name = metric.replace("_", "\\_") if latex else metric
        header += [f"{name} {label} {up if higher else down}" for label, _, higher in columns[metric]]
    body = []
    for method in methods:
        row = [method.replace("_", "\\_") if latex else method]
        for metric in metrics:
            match = summary[(summary.method == method) & (summary.metric == metric)]
            if match.empty:
                row += ["--" if latex else "-"] * len(columns[metric])
                continue
            r = match.iloc[0]
            row += [_cell(r[f"{stem}_mean"], r[f"{stem}_std"], latex) for _, stem, _ in columns[metric]]
        body.append(row)
    return header, body


def to_markdown(summary: pd.DataFrame) -> str:
    header, body = _layout(summary, latex=False)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def to_latex(summary: pd.DataFrame, caption: str) -> str:
    header, body = _layout(summary, latex=True)
    lines = [
        "\\begin{table}[t]", "\\centering", f"\\caption{{{caption}}}",
        "\\begin{tabular}{l" + "c" * (len(header) - 1) + "}", "\\toprule",
        " & ".join(header) + " \\\\", "\\midrule",
    ]  # fmt: skip
    for i, row in enumerate(body):
        lines.append(" & ".join(row) + " \\\\")
        if i == 0 and row[0] == BASE:
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"
