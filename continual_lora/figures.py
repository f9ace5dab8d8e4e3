"""The paper's figures (docs/reproduction.md), drawn from the pipeline's tables, samples
and the task-update matrices of continual_lora.task_updates.

Every plot builds a ``matplotlib.figure.Figure`` directly rather than going through
pyplot, so nothing depends on a display or on global figure state, and each one is
written as a PNG (to look at) and a PDF (to print) by ``save_figure``.

Methods keep one colour, marker and position everywhere (``METHOD_ORDER``); the
colours are the Okabe-Ito palette (and Tol's, past its eight), which stay
distinguishable under the common colour-vision deficiencies, and the base model is
always a dashed grey line.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure

from continual_lora.aggregation import numeric_tasks

METHOD_ORDER = (
    "naive",
    "merge_and_init",
    "ortho_init",
    "magmax",
    "c_lora",
    "o_lora",
    "task_arithmetic",
    "running_average",
    "ties",
    "dare",
)
BASE = "base"
# A column of the concept's own training image, beside the models' samples.
TRAINING_IMAGE = "training_image"

METHOD_LABELS = {
    TRAINING_IMAGE: "Training image",
    BASE: "Base model",
    "naive": "Naive fine-tuning",
    "merge_and_init": "Merge & init",
    "ortho_init": "Orthogonal init",
    "magmax": "MagMax",
    "c_lora": "C-LoRA",
    "o_lora": "O-LoRA",
    "task_arithmetic": "Task arithmetic",
    "running_average": "Running average",
    "ties": "TIES",
    "dare": "DARE",
}
# The paper's four in Okabe-Ito colours; the others in the rest of that palette and
# Tol's, all distinguishable with the common colour-vision deficiencies.
METHOD_COLOURS = {
    "naive": "#D55E00",  # vermillion
    "merge_and_init": "#0072B2",  # blue
    "ortho_init": "#009E73",  # bluish green
    "magmax": "#CC79A7",  # reddish purple
    "c_lora": "#E69F00",  # orange
    "o_lora": "#56B4E9",  # sky blue
    "task_arithmetic": "#000000",  # black
    "running_average": "#882255",  # wine
    "ties": "#44AA99",  # teal
    "dare": "#999933",  # olive
}
# Markers repeat the colour coding for greyscale prints.
METHOD_MARKERS = {
    "naive": "o",
    "merge_and_init": "s",
    "ortho_init": "^",
    "magmax": "D",
    "c_lora": "v",
    "o_lora": "P",
    "task_arithmetic": "X",
    "running_average": "*",
    "ties": "h",
    "dare": "p",
}
_SPARE_COLOURS = ("#332288", "#117733", "#AA4499", "#661100")
_SPARE_MARKERS = ("<", ">", "d", "8")
BASE_STYLE = {"color": "0.45", "linestyle": "--", "linewidth": 1.8}

METRIC_LABELS = {
    "dino": "DINO",
    "clip_i": "CLIP-I",
    "clip_t": "CLIP-T",
    "csd": "CSD",
    "colour_structure": "Colour/structure",
    "denoise": "Denoising score",
}

_STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 13,
    # TrueType fonts keep the PDF's text selectable and editable.
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}
_DPI = 150


# ----------------------------------------------------------------------------- styling


@contextmanager
def _style():
    # Fonts are resolved when artists are created, so the whole drawing runs inside it.
    with matplotlib.rc_context(_STYLE):
        yield


def ordered_methods(methods: Iterable[str]) -> list[str]:
    """A training image and the base model first, then the paper's methods in their fixed
    order, then any others as given."""
    methods = list(dict.fromkeys(methods))
    known = [m for m in (TRAINING_IMAGE, BASE, *METHOD_ORDER) if m in methods]
    return known + [m for m in methods if m not in known]


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def method_colour(method: str) -> str:
    if method == TRAINING_IMAGE:
        return "0.1"
    if method == BASE:
        return BASE_STYLE["color"]
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    # An unknown method still gets a stable colour, the same in every figure.
    return _SPARE_COLOURS[sum(map(ord, method)) % len(_SPARE_COLOURS)]


def method_marker(method: str) -> str:
    return METHOD_MARKERS.get(method, _SPARE_MARKERS[sum(map(ord, method)) % len(_SPARE_MARKERS)])


def higher_is_better(metric: str) -> bool:
    # Imported here: the scoring package pulls in torch and every backend, which a
    # caller that only plots synthetic matrices should not pay for.
    from continual_lora.scoring import METRICS

    if metric not in METRICS:
        raise KeyError(f"unknown metric {metric!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[metric].higher_is_better


def metric_label(metric: str, with_direction: bool = True) -> str:
    label = METRIC_LABELS.get(metric, metric)
    if not with_direction:
        return label
    return f"{label} ({'↑' if higher_is_better(metric) else '↓'} better)"


def format_value(value: float) -> str:
    """Few enough digits to fit a heatmap cell, enough to tell methods apart."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# ----------------------------------------------------------------------------- saving


def save_figure(fig: Figure, out_stem: str | Path) -> list[Path]:
    """Write ``{out_stem}.png`` and ``{out_stem}.pdf``; returns both paths."""
    stem = Path(out_stem)
    if stem.suffix in (".png", ".pdf"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    # Built from the name, not with_suffix, so a stem with dots in it keeps them.
    png, pdf = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")
    with _style():
        fig.savefig(png, dpi=_DPI, bbox_inches="tight")
        # No creation date, so rerunning a rule on the same data gives the same bytes.
        fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None})
    return [png, pdf]


# ----------------------------------------------------------------------------- score tables


def first_task_curves(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per method and ``after_task``: mean, std and count over runs of the score on task 1."""
    scores = numeric_tasks(scores)
    rows = scores[(scores["metric"] == metric) & (scores["eval_task"] == 1) & (scores["method"] != BASE)]
    if rows.empty:
        raise ValueError(f"no scores on the first task for metric {metric!r}")
    per_run = rows.groupby(["method", "run", "after_task"])["value"].mean()
    # Population std over runs, as in the summary tables.
    curves = per_run.groupby(level=["method", "after_task"]).agg(["mean", lambda v: v.std(ddof=0), "count"])
    curves.columns = ["mean", "std", "count"]
    return curves.rename(columns={"count": "n_runs"}).reset_index()


def base_first_task_score(scores: pd.DataFrame, metric: str) -> float | None:
    """The base model's score on the concepts the runs learnt first, averaged over runs.

    Runs with different seeds may start with different concepts, so the base line is
    taken over exactly those concepts; None when the base model was not scored on them.
    """
    scores = numeric_tasks(scores)
    scores = scores[scores["metric"] == metric]
    firsts = scores[(scores["eval_task"] == 1) & (scores["method"] != BASE)][["run", "concept"]].drop_duplicates()
    base = scores[scores["method"] == BASE].groupby("concept")["value"].mean()
    values = [base[c] for c in firsts["concept"] if c in base.index]
    return float(np.mean(values)) if values else None


# ----------------------------------------------------------------------------- heatmaps


def _text_colour(cmap: Colormap, norm: Normalize, value: float) -> str:
    r, g, b, _ = cmap(norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _heatmap_size(n: int) -> tuple[float, float]:
    side = max(4.2, 0.55 * n + 1.6)
    return side + 1.4, side


def _annotated_heatmap(
    fig: Figure,
    matrix: np.ndarray,
    *,
    cmap: str,
    norm: Normalize,
    labels: Sequence[str] | None = None,
    colorbar_label: str,
) -> tuple[Any, Any]:
    """One square heatmap, NaN cells blank, each defined cell with its value (or label) in it;
    returns the axes and the colour bar."""
    ax = fig.subplots()
    image = _draw_heatmap(ax, matrix, cmap=cmap, norm=norm, labels=labels)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label(colorbar_label)
    return ax, colorbar


def _draw_heatmap(ax, matrix: np.ndarray, *, cmap: str, norm: Normalize, labels: Sequence[str] | None = None, fontsize=None):
    """The cells of one heatmap on ``ax``; returns the image (for a colour bar)."""
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="0.93")
    masked = np.ma.masked_invalid(matrix)
    image = ax.imshow(masked, cmap=colormap, norm=norm, interpolation="nearest")
    n_rows, n_cols = matrix.shape
    fontsize = fontsize or (10 if max(n_rows, n_cols) <= 6 else 8)
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            text = labels[i * n_cols + j] if labels is not None else format_value(value)
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color=_text_colour(colormap, norm, value))  # fmt: skip
    ax.set_xticks(range(n_cols), [str(k + 1) for k in range(n_cols)])
    ax.set_yticks(range(n_rows), [str(k + 1) for k in range(n_rows)])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return image


def plot_heatmap(
    matrix: np.ndarray,
    method: str,
    metric: str,
    out_stem: str | Path,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
) -> list[Path]:
    """The paper's "model after task" x "performance on task" matrix of one method.

    Pass the same ``vmin``/``vmax`` for every method to make their colours comparable.
    The lower triangle (tasks not yet seen) is blank; brighter is always better.
    """
    matrix = np.array(matrix, dtype=np.float64)
    matrix[np.tril_indices_from(matrix, k=-1)] = np.nan
    finite = matrix[np.isfinite(matrix)]
    if vmin is None:
        vmin = float(finite.min()) if finite.size else 0.0
    if vmax is None:
        vmax = float(finite.max()) if finite.size else 1.0
    if vmax <= vmin:
        vmax = vmin + 1e-9
    with _style():
        fig = Figure(figsize=_heatmap_size(matrix.shape[0]), layout="constrained")
        ax, _ = _annotated_heatmap(
            fig, matrix,
            cmap="viridis" if higher_is_better(metric) else "viridis_r",
            norm=Normalize(vmin, vmax),
            colorbar_label=metric_label(metric),
        )  # fmt: skip
        ax.set_xlabel("model after task")
        ax.set_ylabel("performance on task")
        ax.set_title(f"{method_label(method)}: {metric_label(metric, with_direction=False)}")
    return save_figure(fig, out_stem)


def plot_heatmap_overview(matrices: Mapping[str, np.ndarray], metric: str, out_stem: str | Path) -> list[Path]:
    """Every method's heatmap side by side, on one colour scale with one colour bar, so
    that many methods compare at a glance (the per-method heatmaps give each its own
    figure)."""
    methods = ordered_methods(matrices)
    masked = {}
    for method in methods:
        matrix = np.array(matrices[method], dtype=np.float64)
        matrix[np.tril_indices_from(matrix, k=-1)] = np.nan
        masked[method] = matrix
    finite = np.concatenate([m[np.isfinite(m)] for m in masked.values()])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    norm = Normalize(vmin, vmax if vmax > vmin else vmin + 1e-9)
    n_cols = min(5, len(methods))
    n_rows = -(-len(methods) // n_cols)
    n_tasks = max(m.shape[0] for m in masked.values())
    panel = max(2.6, 0.5 * n_tasks + 0.6)
    with _style():
        fig = Figure(figsize=(panel * n_cols + 1.2, panel * n_rows + 0.8), layout="constrained")
        axes = np.atleast_1d(fig.subplots(n_rows, n_cols)).ravel()
        for ax, method in zip(axes, methods):
            image = _draw_heatmap(ax, masked[method], cmap="viridis" if higher_is_better(metric) else "viridis_r",
                                  norm=norm, fontsize=8)  # fmt: skip
            ax.set_title(method_label(method), fontsize=11)
        for ax in axes[len(methods):]:
            ax.set_visible(False)
        for ax in axes[::n_cols]:
            ax.set_ylabel("performance on task")
        for ax in axes[(n_rows - 1) * n_cols:]:
            ax.set_xlabel("model after task")
        fig.colorbar(image, ax=list(axes[: len(methods)]), fraction=0.02, pad=0.02).set_label(metric_label(metric))
        fig.suptitle(f"{metric_label(metric, with_direction=False)}: model after task x performance on task")
    return save_figure(fig, out_stem)


# ----------------------------------------------------------------------------- first-task curve


def plot_first_task_curve(scores: pd.DataFrame, metric: str, out_stem: str | Path) -> list[Path]:
    """Score on each run's first task after every later task: mean over runs, +-1 std band."""
    base = base_first_task_score(scores, metric)
    return _plot_task_curves(
        first_task_curves(scores, metric),
        ylabel=f"{metric_label(metric)} on task 1",
        title=f"First task's {metric_label(metric, with_direction=False)} as later tasks are learnt",
        base=None if base is None else (base, format_value(base)),
        final=format_value,
        out_stem=out_stem,
    )


def _plot_task_curves(curves: pd.DataFrame, *, ylabel: str, title: str, base, final, out_stem) -> list[Path]:
    """One line per method over ``after_task`` (``mean``, a +-1 ``std`` band where
    ``n_runs`` > 1), the base model dashed at ``base`` (value, label) where given."""
    n_tasks = int(curves["after_task"].max())
    with _style():
        fig = Figure(figsize=(max(8.0, 0.45 * n_tasks + 4.0), 4.4), layout="constrained")
        ax = fig.subplots()
        for method in ordered_methods(curves["method"]):
            curve = curves[curves["method"] == method].sort_values("after_task")
            x, mean, std = curve["after_task"].to_numpy(), curve["mean"].to_numpy(), curve["std"].to_numpy()
            colour = method_colour(method)
            # The final value sits in the legend, where it cannot collide with the lines.
            ax.plot(x, mean, color=colour, marker=method_marker(method), markersize=5, linewidth=2,
                    label=f"{method_label(method)} (final {final(mean[-1])})")  # fmt: skip
            if (curve["n_runs"] > 1).any():
                ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.18, linewidth=0)
        if base is not None:
            ax.axhline(base[0], **BASE_STYLE, label=f"{method_label(BASE)} ({base[1]})")
        n_runs = int(curves["n_runs"].max())
        ax.set_xticks(range(1, n_tasks + 1))
        ax.set_xlim(0.7, n_tasks + 0.3)
        ax.set_xlabel("model after task")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} (mean ± std, {n_runs} run{'s' if n_runs != 1 else ''})")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return save_figure(fig, out_stem)


# ----------------------------------------------------------------------------- retention


def plot_retention(curves: pd.DataFrame, metric: str, out_stem: str | Path) -> list[Path]:
    """Retention of the general prompts after every task, per method: mean over runs,
    +-1 std band; the base model is 1 by definition."""
    curves = curves[curves["metric"] == metric]
    if curves.empty:
        raise ValueError(f"no retention scores for metric {metric!r}")
    return _plot_task_curves(
        curves,
        ylabel=f"retention ({METRIC_LABELS.get(metric, metric)})",
        title="General prompts: how much of the base model's samples each model keeps",
        base=(1.0, "1, by definition"),
        final=lambda value: f"{value:.3f}",
        out_stem=out_stem,
    )


# ----------------------------------------------------------------------------- sample grid


def _wrap(label: str, width: int) -> str:
    # Hyphens stay: "fine-" / "tuning" over two lines reads worse than a slightly wide title.
    return "\n".join(textwrap.wrap(label, width, break_on_hyphens=False)) or label


def plot_sample_grid(
    grid: Mapping[tuple[str, str], Any],
    rows: Sequence[str],
    methods: Sequence[str],
    title: str,
    out_stem: str | Path,
    *,
    cell_inches: float = 1.7,
) -> list[Path]:
    """One image per (task row, method column); columns follow ``ordered_methods``.

    A missing image leaves a labelled blank cell rather than failing, so a partly
    finished pipeline can still be inspected.
    """
    columns = ordered_methods(methods)
    # About as many characters as fit across one cell at the title's font size.
    title_chars = max(10, round(10 * cell_inches))
    with _style():
        fig = Figure(figsize=(cell_inches * len(columns) + 1.8, cell_inches * len(rows) + 0.8), layout="constrained")
        fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.02)
        axes = fig.subplots(len(rows), len(columns), squeeze=False)
        for r, row in enumerate(rows):
            for c, method in enumerate(columns):
                ax = axes[r, c]
                image = grid.get((row, method))
                if image is None:
                    ax.set_facecolor("0.93")
                    ax.text(0.5, 0.5, "missing", ha="center", va="center", color="0.4", transform=ax.transAxes)
                else:
                    ax.imshow(np.asarray(image.convert("RGB")))
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(image is None)
                if r == 0:
                    ax.set_title(_wrap(method_label(method), title_chars), color=method_colour(method), fontweight="bold")
                if c == 0:
                    ax.set_ylabel(_wrap(row, 18), rotation=0, ha="right", va="center", labelpad=8)
        fig.suptitle(title)
    return save_figure(fig, out_stem)


# ----------------------------------------------------------------------------- plasticity vs forgetting


def plot_plasticity_forgetting(summary_per_run: pd.DataFrame, metric: str, out_stem: str | Path) -> list[Path]:
    """Average forgetting (x, lower better) against plasticity (y); mean +-std per method, faint runs."""
    rows = summary_per_run[(summary_per_run["metric"] == metric) & (summary_per_run["method"] != BASE)]
    if rows.empty:
        raise ValueError(f"no per-run summary for metric {metric!r}")
    up = higher_is_better(metric)
    with _style():
        fig = Figure(figsize=(7.6, 4.6), layout="constrained")
        ax = fig.subplots()
        for method in ordered_methods(rows["method"]):
            runs = rows[rows["method"] == method]
            x, y = runs["avg_forgetting"].to_numpy(float), runs["plasticity"].to_numpy(float)
            colour, marker = method_colour(method), method_marker(method)
            ax.scatter(x, y, color=colour, marker=marker, s=22, alpha=0.35, linewidths=0)
            # ddof=1 is undefined for one run; no bar then rather than a misleading zero.
            xerr = x.std(ddof=1) if len(x) > 1 else None
            yerr = y.std(ddof=1) if len(y) > 1 else None
            ax.errorbar(x.mean(), y.mean(), xerr=xerr, yerr=yerr, color=colour, marker=marker, markersize=9,
                        markeredgecolor="black", markeredgewidth=0.6, capsize=4, linewidth=1.6,
                        label=f"{method_label(method)}: F {format_value(x.mean())}, P {format_value(y.mean())}")  # fmt: skip
        # The good corner: little forgetting, and the best plasticity for this metric.
        ax.text(0.02, 0.98 if up else 0.02, ("↖" if up else "↙") + " better", transform=ax.transAxes,
                ha="left", va="top" if up else "bottom", color="0.35", fontsize=10)  # fmt: skip
        name = metric_label(metric, with_direction=False)
        ax.set_xlabel(f"average forgetting of {name} (↓ better)")
        ax.set_ylabel(f"plasticity, {name} ({'↑' if up else '↓'} better)")
        ax.set_title(f"Plasticity vs forgetting ({name}; mean ± std over runs)")
        ax.grid(True, alpha=0.3)
        ax.margins(0.15)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return save_figure(fig, out_stem)


def plot_sign_conflicts(matrix: np.ndarray, method: str, out_stem: str | Path) -> list[Path]:
    """Pairwise sign-conflict shares as a heatmap in percent; the trivial diagonal is blank.

    The colour scale runs to at least 50%, the share two unrelated dense updates reach,
    so "no more conflict than chance" reads the same in every method's figure.
    """
    shown = 100 * np.array(matrix, dtype=np.float64)
    np.fill_diagonal(shown, np.nan)
    finite = shown[np.isfinite(shown)]
    vmax = max(50.0, float(finite.max()) if finite.size else 50.0)
    labels = [f"{v:.0f}%" if np.isfinite(v) else "" for v in shown.ravel()]
    with _style():
        fig = Figure(figsize=_heatmap_size(matrix.shape[0]), layout="constrained")
        ax, _ = _annotated_heatmap(fig, shown, cmap="cividis", norm=Normalize(0.0, vmax), labels=labels,
                                   colorbar_label="opposite-sign updates (% of weights)")  # fmt: skip
        ax.set_xlabel("task j")
        ax.set_ylabel("task i")
        ax.set_title(f"{method_label(method)}: sign conflicts\nbetween task updates (50% = chance)")
    return save_figure(fig, out_stem)


def plot_update_norm_ratio(matrix: np.ndarray, method: str, out_stem: str | Path) -> list[Path]:
    """``||delta_i|| / ||delta_j||`` on a log colour scale centred on 1 (equal norms)."""
    ratio = np.array(matrix, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log2(ratio)
    log_ratio[~np.isfinite(log_ratio)] = np.nan
    finite = np.abs(log_ratio[np.isfinite(log_ratio)])
    bound = max(float(finite.max()) if finite.size else 1.0, 0.1)
    labels = [format_value(v) if np.isfinite(v) else "" for v in ratio.ravel()]
    with _style():
        fig = Figure(figsize=_heatmap_size(ratio.shape[0]), layout="constrained")
        ax, colorbar = _annotated_heatmap(fig, log_ratio, cmap="PuOr", norm=Normalize(-bound, bound),
                                          labels=labels, colorbar_label="norm ratio (log scale)")  # fmt: skip
        # Ticks at powers of two, labelled as ratios, so the bar reads like the cells.
        reach = int(np.floor(bound))
        step = max(1, -(-reach // 4))  # at most about nine ticks, however skewed the norms
        powers = step * np.arange(-(reach // step), reach // step + 1)
        colorbar.set_ticks(powers, labels=[f"{2**p:g}" if p >= 0 else f"1/{2**-p:g}" for p in powers])
        ax.set_xlabel("task j")
        ax.set_ylabel("task i")
        ax.set_title(f"{method_label(method)}: update norm ratio\n||Δi|| / ||Δj||")
    return save_figure(fig, out_stem)
