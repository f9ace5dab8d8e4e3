"""Scoring one model's samples on every task it has seen, into one ``scores.csv``.

Columns: ``method,run,after_task,eval_task,concept,metric,value``. The base model's
file has ``after_task`` 0 and empty ``run`` and ``eval_task``. Each metric's network
is loaded once per job and scores every task.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from continual_lora.atomic import write_csv
from continual_lora.generation import read_index
from continual_lora.scoring import ModelHandle, ScoringInput, get_metric

SCORE_COLUMNS = ("method", "run", "after_task", "eval_task", "concept", "metric", "value")


def score_samples(
    *,
    samples_dir: str | Path,
    concept_dirs: dict[str, str | Path],
    metrics: dict[str, dict[str, Any]],
    model: Callable[[], ModelHandle],
    method: str,
    run: str,
    after_task: int,
    out_csv: str | Path,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Score every task in ``samples_dir``'s index with every metric.

    ``metrics`` maps a metric name to its settings; ``model`` loads the evaluated
    model, called only when a metric queries the model itself.
    """
    samples_dir = Path(samples_dir)
    backends = {name: get_metric(name, settings, device) for name, settings in metrics.items()}
    with_samples = any(metric.uses_samples for metric in backends.values())
    handle = model() if any(metric.uses_model for metric in backends.values()) else None
    # Each task's samples and references are read once, whatever the number of metrics.
    by_task: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in read_index(samples_dir):
        by_task[(row["task"], row["concept"])].append(row)
    jobs = {}
    for (task, concept), entries in by_task.items():
        entries = entries if with_samples else []
        samples = [Image.open(samples_dir / e["file"]).convert("RGB") for e in entries]
        jobs[(task, concept)] = ScoringInput.from_concept_dir(
            concept_dirs[concept], samples, [e["prompt"] for e in entries], model=handle
        )
    rows = []
    for name, metric in backends.items():
        for (task, concept), job in jobs.items():
            value = metric.score(job)
            log(f"{name} on task {task or '-'} ({concept}): {value:.4f}")
            rows.append({"method": method, "run": run, "after_task": after_task, "eval_task": task,
                         "concept": concept, "metric": name, "value": value})  # fmt: skip
    write_csv(out_csv, SCORE_COLUMNS, rows)
    return rows
