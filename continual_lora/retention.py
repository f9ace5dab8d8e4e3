"""Retention of the base model's general ability, beyond the paper's metrics.

After every task, prompts that name no learnt concept ("a photo of a dog", a fixed
list per domain, ``retention.prompts``) are sampled from the same fixed latents as
the base model's samples of the same prompts. A metric that can say so scores how
much of the base model's behaviour the samples keep (``Metric.retention``): an image
metric, the mean cosine of each sample to the base model's sample of the same prompt
and noise; CLIP-T, how well the samples still match their prompt, relative to the
base model's. Either way the base model scores exactly 1.0, and a chain whose
general prompts drift toward its concepts scores less.

Columns of a checkpoint's ``retention/scores.csv``: ``method,run,after_task,prompt,metric,value``
(one row per prompt and metric).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from continual_lora.atomic import write_csv
from continual_lora.generation import read_index

GROUP = "retention"  # the samples' folder and concept column
COLUMNS = ("method", "run", "after_task", "prompt", "metric", "value")


def prompt_samples(prompts: Iterable[str]) -> list[tuple[str, str]]:
    """What ``generation.generate_prompt_samples`` draws for the retention prompts."""
    return [(GROUP, prompt) for prompt in prompts]


def retention_metrics(candidates: Iterable[str]) -> list[str]:
    """Those of ``candidates`` (``retention.metrics`` where set, else the experiment's
    own metrics) that can score retention."""
    # Here, not at module level: the registry imports torch, which the config checks
    # have loaded anyway but a table job need not.
    from continual_lora.scoring import METRICS

    return [name for name in candidates if name in METRICS and METRICS[name].scores_retention]


def _by_prompt(samples_dir: Path) -> dict[int, tuple[str, dict[int, Path]]]:
    prompts: dict[int, tuple[str, dict[int, Path]]] = {}
    for row in read_index(samples_dir):
        prompt, files = prompts.setdefault(int(row["template"]), (row["prompt"], {}))
        files[int(row["sample"])] = samples_dir / row["file"]
    return prompts


def score_retention(
    *,
    samples_dir: str | Path,
    base_dir: str | Path,
    metrics: dict[str, dict[str, Any]],
    method: str,
    run: str,
    after_task: int,
    out_csv: str | Path,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Score each prompt's samples against the base model's samples of it, sample k
    against base sample k (the same initial noise), with every metric."""
    from continual_lora.scoring import get_metric

    model, base = _by_prompt(Path(samples_dir)), _by_prompt(Path(base_dir))
    if {i: (p, sorted(f)) for i, (p, f) in model.items()} != {i: (p, sorted(f)) for i, (p, f) in base.items()}:
        raise ValueError(
            f"{samples_dir} and {base_dir} hold different retention prompts or samples: "
            "both must be drawn with the same retention settings"
        )
    rows = []
    for name, settings in metrics.items():
        metric = get_metric(name, settings, device)
        for template, (prompt, files) in sorted(model.items()):
            order = sorted(files)
            samples = [Image.open(files[k]).convert("RGB") for k in order]
            base_samples = [Image.open(base[template][1][k]).convert("RGB") for k in order]
            value = metric.retention(samples, base_samples, [prompt] * len(order))
            log(f"{name} retention on {prompt!r}: {value:.4f}")
            rows.append({"method": method, "run": run, "after_task": after_task, "prompt": prompt,
                         "metric": name, "value": value})  # fmt: skip
    write_csv(out_csv, COLUMNS, rows)
    return rows


def read_retention(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p, dtype={"run": str}, keep_default_na=False) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))


def per_run_retention(retention: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, run, after_task, metric): the mean over the prompts."""
    keys = ["method", "run", "after_task", "metric"]
    return retention.groupby(keys, sort=False, as_index=False)["value"].mean()


def retention_curves(retention: pd.DataFrame) -> pd.DataFrame:
    """Per (method, metric, after_task): mean and population std over runs, and n_runs."""
    per_run = per_run_retention(retention)
    grouped = per_run.groupby(["method", "metric", "after_task"], sort=False)["value"]
    return grouped.agg(mean="mean", std=lambda v: v.std(ddof=0), n_runs="count").reset_index()


def final_retention(retention: pd.DataFrame) -> pd.DataFrame:
    """Per (method, metric): retention after each run's last task, mean and
    population std over runs."""
    per_run = per_run_retention(retention)
    last = per_run[per_run.after_task == per_run.groupby(["method", "run", "metric"])["after_task"].transform("max")]
    grouped = last.groupby(["method", "metric"], sort=False)["value"]
    return grouped.agg(retention_mean="mean", retention_std=lambda v: v.std(ddof=0)).reset_index()

