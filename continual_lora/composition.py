"""Composition of learnt concepts, beyond the paper's metrics.

After the last task, prompts that combine two learnt concepts ("a photo of sks house
next to zwz flower"; for styles, two looks in one image) are sampled from the
evaluation's fixed latents, and each sample is scored against each concept's
references separately, with the experiment's image metrics, as the paper scores one
concept. A model that keeps every concept but cannot combine them scores well on the
paper's metrics and poorly here.

The pairs are the experiment's concepts in their canonical order, each with the next
and the last with the first: every concept is in two pairs, once named first and
once second, whatever the run's task order, so the base model's samples serve every
run. Columns of a ``composition/scores.csv``: ``method,run,pair,concept,metric,value``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from continual_lora.atomic import write_csv
from continual_lora.data.concepts import Concept
from continual_lora.generation import read_index

SEPARATOR = "+"  # between the two concept names of a pair; never in a concept name
COLUMNS = ("method", "run", "pair", "concept", "metric", "value")


def concept_pairs(concepts: Sequence[Concept]) -> list[tuple[Concept, Concept]]:
    """Each concept with the next, the last with the first (one pair for two concepts)."""
    if len(concepts) < 2:
        return []
    if len(concepts) == 2:
        return [(concepts[0], concepts[1])]
    return [(concepts[i], concepts[(i + 1) % len(concepts)]) for i in range(len(concepts))]


def pair_name(a: Concept, b: Concept) -> str:
    return f"{a.name}{SEPARATOR}{b.name}"


def prompt_samples(concepts: Sequence[Concept], templates: Iterable[str]) -> list[tuple[str, str]]:
    """What ``generation.generate_prompt_samples`` draws: every pair in every template,
    '{a}' and '{b}' filled with the two concepts' subjects."""
    templates = list(templates)
    return [
        (pair_name(a, b), template.format(a=a.subject, b=b.subject))
        for a, b in concept_pairs(concepts)
        for template in templates
    ]


def composition_metrics(experiment_metrics: Iterable[str]) -> list[str]:
    """The experiment's metrics that compare samples with a concept's references, and
    nothing else (not denoise, which queries the model; not CLIP-T, which reads only
    the prompt, the same for both concepts of a pair)."""
    from continual_lora.scoring import METRICS

    def compares(cls) -> bool:
        return cls.uses_samples and cls.uses_references and not cls.uses_model

    return [name for name in experiment_metrics if name in METRICS and compares(METRICS[name])]


def score_composition(
    *,
    samples_dir: str | Path,
    concept_dirs: dict[str, str | Path],
    metrics: dict[str, dict[str, Any]],
    method: str,
    run: str,
    out_csv: str | Path,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Score every pair's samples against each of its two concepts' references."""
    from continual_lora.scoring import ScoringInput, get_metric

    samples_dir = Path(samples_dir)
    by_pair: dict[str, list[dict]] = defaultdict(list)
    for row in read_index(samples_dir):
        by_pair[row["concept"]].append(row)
    jobs = {}
    for pair, entries in by_pair.items():
        samples = [Image.open(samples_dir / e["file"]).convert("RGB") for e in entries]
        prompts = [e["prompt"] for e in entries]
        for concept in pair.split(SEPARATOR):
            jobs[(pair, concept)] = ScoringInput.from_concept_dir(concept_dirs[concept], samples, prompts)
    rows = []
    for name, settings in metrics.items():
        metric = get_metric(name, settings, device)
        for (pair, concept), job in jobs.items():
            value = metric.score(job)
            log(f"{name} of {pair} on {concept}: {value:.4f}")
            rows.append({"method": method, "run": run, "pair": pair, "concept": concept, "metric": name, "value": value})
    write_csv(out_csv, COLUMNS, rows)
    return rows


def read_composition(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p, dtype={"run": str}, keep_default_na=False) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))


def composition_summary(composition: pd.DataFrame) -> pd.DataFrame:
    """Per (method, metric): each run's mean over its pairs and their concepts, then
    mean and population std over runs."""
    per_run = composition.groupby(["method", "run", "metric"], sort=False, as_index=False)["value"].mean()
    grouped = per_run.groupby(["method", "metric"], sort=False)["value"]
    return grouped.agg(composition_mean="mean", composition_std=lambda v: v.std(ddof=0)).reset_index()


def composition_table(composition: pd.DataFrame, method_order: Sequence[str]) -> pd.DataFrame:
    """Per (method, metric, pair, concept): mean and population std over runs, the base
    model first, then the methods in ``method_order``."""
    keys = ["method", "metric", "pair", "concept"]
    table = composition.groupby(keys, sort=False)["value"].agg(
        mean="mean", std=lambda v: v.std(ddof=0), n_runs="count"
    ).reset_index()
    order = {m: i for i, m in enumerate(["base", *method_order])}
    return table.sort_values("method", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
