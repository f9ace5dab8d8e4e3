"""An experiment's figures, assembled from its tables, samples and adapters.

Each function fills one folder with PNG and PDF files (``continual_lora.figures``
draws them); the workflow puts every PNG into the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from continual_lora import figures, task_updates
from continual_lora.aggregation import mean_matrix
from continual_lora.checkpoint import load_tensors
from continual_lora.composition import SEPARATOR
from continual_lora.data.concepts import read_concept
from continual_lora.generation import read_index


def score_figures(scores: pd.DataFrame, per_run: pd.DataFrame, methods: list[str], out_dir: str | Path) -> list[Path]:
    """Per metric: a heatmap per method on one colour scale, all of them in one overview
    figure, the first task's score across later tasks, and the plasticity/forgetting
    scatter."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for metric in dict.fromkeys(scores.metric):
        matrices = {method: mean_matrix(scores, method, metric) for method in methods}
        values = np.concatenate([m[~np.isnan(m)] for m in matrices.values()])
        for method, matrix in matrices.items():
            written += figures.plot_heatmap(
                matrix, method, metric, out_dir / f"heatmap_{metric}_{method}", vmin=values.min(), vmax=values.max()
            )
        written += figures.plot_heatmap_overview(matrices, metric, out_dir / f"heatmaps_{metric}")
        written += figures.plot_first_task_curve(scores, metric, out_dir / f"first_task_{metric}")
        written += figures.plot_plasticity_forgetting(per_run, metric, out_dir / f"plasticity_forgetting_{metric}")
    return written


def _add_base_cells(grid: dict, rows: list[str], base_samples: str | Path, base_index: list[dict], template: int, sample: int) -> None:
    """The base model's sample of each row's concept ("task t: concept"), in the base column."""
    for label in rows:
        concept = label.split(": ", 1)[1]
        for row in base_index:
            if row["concept"] == concept and int(row["template"]) == template and int(row["sample"]) == sample:
                grid[(label, figures.BASE)] = Image.open(Path(base_samples) / row["file"]).convert("RGB")


def sample_grid_figures(
    final_samples: dict[str, str | Path],
    base_samples: str | Path,
    templates: dict[int, str],
    out_dir: str | Path,
    sample: int = 0,
) -> list[Path]:
    """After the last task of one run: rows are its tasks in order, columns the base
    model and the methods; one figure per template (index: text)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_index = read_index(base_samples)
    written: list[Path] = []
    for template, text in templates.items():
        grid, rows = {}, []
        for method, folder in final_samples.items():
            for row in read_index(folder):
                if int(row["template"]) == template and int(row["sample"]) == sample:
                    label = f"task {row['task']}: {row['concept']}"
                    if label not in rows:
                        rows.append(label)
                    grid[(label, method)] = Image.open(Path(folder) / row["file"]).convert("RGB")
        _add_base_cells(grid, rows, base_samples, base_index, template, sample)
        title = f"Samples after the last task: {text.replace('{}', 'V*')!r}"
        written += figures.plot_sample_grid(
            grid, rows, [figures.BASE, *final_samples], title, out_dir / f"samples_template{template}"
        )
    return written


def right_after_figures(
    samples: dict[str, list[str | Path]],
    base_samples: str | Path,
    concept_dirs: dict[str, str | Path],
    templates: dict[int, str],
    out_dir: str | Path,
    sample: int = 0,
) -> list[Path]:
    """Plasticity to the eye: rows are one run's tasks in order, and each method's cell
    is its sample of task t drawn right after training task t (``samples``: per method,
    the samples folder after each task, in task order), beside a training image of the
    concept and the base model's sample from the same noise; one figure per template."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_index = read_index(base_samples)
    written: list[Path] = []
    for template, text in templates.items():
        grid, rows = {}, []
        for method, folders in samples.items():
            for task, folder in enumerate(folders, start=1):
                for row in read_index(folder):
                    if (int(row["task"]), int(row["template"]), int(row["sample"])) == (task, template, sample):
                        label = f"task {task}: {row['concept']}"
                        if label not in rows:
                            rows.append(label)
                        grid[(label, method)] = Image.open(Path(folder) / row["file"]).convert("RGB")
        for label in rows:
            concept = label.split(": ", 1)[1]
            grid[(label, figures.TRAINING_IMAGE)] = read_concept(concept_dirs[concept]).load_train_images()[0]
        _add_base_cells(grid, rows, base_samples, base_index, template, sample)
        title = f"Right after training each task: {text.replace('{}', 'V*')!r}"
        written += figures.plot_sample_grid(
            grid, rows, [figures.TRAINING_IMAGE, figures.BASE, *samples], title, out_dir / f"right_after_template{template}"
        )
    return written


def retention_figures(curves: pd.DataFrame, methods: list[str], out_dir: str | Path) -> list[Path]:
    """Per metric, the retention of the general prompts across tasks, one line per method."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = curves[curves["method"].isin(methods)]
    written: list[Path] = []
    for metric in dict.fromkeys(curves["metric"]):
        written += figures.plot_retention(curves, metric, out_dir / f"retention_{metric}")
    return written


def _prompt_cells(folders: dict[str, Path], row_label, sample: int) -> dict[int, dict]:
    """template -> {(row label, method): image} of sample ``sample`` in each folder."""
    cells: dict[int, dict] = {}
    for method, folder in folders.items():
        for row in read_index(folder):
            if int(row["sample"]) == sample:
                image = Image.open(folder / row["file"]).convert("RGB")
                cells.setdefault(int(row["template"]), {})[(row_label(row), method)] = image
    return cells


def retention_grid_figures(
    final_samples: dict[str, str | Path], base_samples: str | Path, out_dir: str | Path, sample: int = 0
) -> list[Path]:
    """After the last task of one run: rows are the general prompts, columns the base
    model and the methods, every cell from the same initial noise."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = {figures.BASE: Path(base_samples)} | {m: Path(f) for m, f in final_samples.items()}
    grid = {key: image for cells in _prompt_cells(folders, lambda row: row["prompt"], sample).values()
            for key, image in cells.items()}  # fmt: skip
    rows = list(dict.fromkeys(prompt for prompt, _ in grid))
    title = "General prompts after the last task: does each model still draw what the base model drew?"
    return figures.plot_sample_grid(grid, rows, list(folders), title, out_dir / "retention_samples")


def composition_grid_figures(
    final_samples: dict[str, str | Path], base_samples: str | Path, out_dir: str | Path, sample: int = 0
) -> list[Path]:
    """After the last task of one run: rows are the concept pairs, columns the base
    model and the methods; one figure per composition template."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = {figures.BASE: Path(base_samples)} | {m: Path(f) for m, f in final_samples.items()}
    prompts = {(int(row["template"]), row["concept"]): row["prompt"] for row in read_index(folders[figures.BASE])}
    written: list[Path] = []
    for template, cells in sorted(_prompt_cells(folders, lambda row: row["concept"], sample).items()):
        pairs = list(dict.fromkeys(pair for pair, _ in cells))
        grid = {(pair.replace(SEPARATOR, " + "), method): image for (pair, method), image in cells.items()}
        rows = [pair.replace(SEPARATOR, " + ") for pair in pairs]
        first = prompts[(template, pairs[0])]
        title = f"Two learnt concepts in one prompt, after the last task (e.g. {first!r})"
        written += figures.plot_sample_grid(grid, rows, list(folders), title, out_dir / f"composition_template{template}")
    return written


def sign_conflict_figures(task_loras: dict[str, list[str | Path]], out_dir: str | Path) -> list[Path]:
    """Per method, over one run's tasks: the share of weights whose task updates
    disagree in sign, and the ratio of their norms."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for method, paths in task_loras.items():
        stored = [load_tensors(p) for p in paths]
        adapters = [s.factors() for s in stored]
        scales = [s.scale for s in stored]
        written += figures.plot_sign_conflicts(
            task_updates.sign_conflicts(adapters, scales), method, out_dir / f"sign_conflicts_{method}"
        )
        written += figures.plot_update_norm_ratio(
            task_updates.update_norm_ratio(adapters, scales), method, out_dir / f"norm_ratio_{method}"
        )
    return written
