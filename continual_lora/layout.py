"""Where the workflow keeps every file it writes: one template per kind of file.

The rules name their outputs, logs and benchmarks with these templates and Snakemake
fills in the ``{wildcards}``; the input functions, the config checks and the tools
that read a finished run fill them with :func:`path`. Nothing else spells a path
under ``results/``.

Importing this module imports nothing heavy: every Snakemake job process loads it.
"""

from __future__ import annotations

import re
from pathlib import Path

_WILDCARD = re.compile(r"\{(\w+)\}")

RESULTS = "results"

# The files of one trained task's checkpoint folder (continual_lora.checkpoint).
HANDOFF_FILE = "handoff.safetensors"
TASK_LORA_FILE = "task_lora.safetensors"
INIT_LORA_FILE = "init_lora.safetensors"
META_FILE = "meta.json"
CHECKPOINT_FILES = (HANDOFF_FILE, TASK_LORA_FILE, INIT_LORA_FILE, META_FILE)

# The embedded tiny base model and its sample grid, under the name tiny_model.name
# gives them ("tiny" unless a config names its own model).
MODELS = "results/models"
TINY_MODEL = MODELS + "/{model}"
TINY_SAMPLES = MODELS + "/{model}_samples.png"

# One experiment: its prepared data, the base model's samples and scores, its tables
# and figures.
EXPERIMENT = "results/{experiment}"
DATA = EXPERIMENT + "/data"
CONCEPT = DATA + "/{concept}"
BASE = EXPERIMENT + "/base"
BASE_SAMPLES = BASE + "/samples"
BASE_SCORES = BASE + "/scores.csv"
TABLES = EXPERIMENT + "/tables"
SUMMARY = TABLES + "/summary.csv"
SUMMARY_MARKDOWN = TABLES + "/summary.md"
SUMMARY_LATEX = TABLES + "/summary.tex"
PER_RUN = TABLES + "/per_run.csv"
MATRICES = TABLES + "/matrices"
ENVIRONMENT = TABLES + "/environment.txt"
FIGURES = EXPERIMENT + "/figures/{figure_set}"
FIGURE_SETS = ("scores", "samples", "sign_conflicts")

# Beyond the paper (continual_lora.retention, continual_lora.composition): the base
# model's samples of the general prompts and of the concept pairs, the experiment's
# tables and figures of both.
BASE_RETENTION_SAMPLES = BASE + "/retention/samples"
BASE_COMPOSITION_SAMPLES = BASE + "/composition/samples"
BASE_COMPOSITION_SCORES = BASE + "/composition/scores.csv"
RETENTION_TABLE = TABLES + "/retention.csv"
COMPOSITION_TABLE = TABLES + "/composition.csv"
RETENTION_FIGURES = EXPERIMENT + "/figures/retention"
COMPOSITION_FIGURES = EXPERIMENT + "/figures/composition"

# One run of one method, and one task of it.
RUN = EXPERIMENT + "/{method}/{run}"
CHAIN_AUDIT = RUN + "/chain_audit.json"
# The model after the run's last task, for diffusers (continual_lora.export).
EXPORT = RUN + "/export"
EXPORT_FILE = "export.json"
TASK = RUN + "/task{task}"
CHECKPOINT = TASK + "/checkpoint"
HANDOFF = CHECKPOINT + "/" + HANDOFF_FILE
TASK_LORA = CHECKPOINT + "/" + TASK_LORA_FILE
INIT_LORA = CHECKPOINT + "/" + INIT_LORA_FILE
META = CHECKPOINT + "/" + META_FILE
SAMPLES = TASK + "/samples"
SCORES = TASK + "/scores.csv"
# Each checkpoint's samples of the general prompts and their retention scores; the
# run's final model's samples of the concept pairs and their scores.
RETENTION_SAMPLES = TASK + "/retention/samples"
RETENTION_SCORES = TASK + "/retention/scores.csv"
COMPOSITION_SAMPLES = RUN + "/composition/samples"
COMPOSITION_SCORES = RUN + "/composition/scores.csv"

# Logs and benchmarks: results/logs/ and results/benchmarks/ mirror the folders above,
# one file per job named after its rule.
LOGS = "results/logs"
BENCHMARKS = "results/benchmarks"
# Folders of results/ that hold the workflow's own files, so no experiment may be named so.
RESERVED_EXPERIMENT_NAMES = ("models", "logs", "benchmarks")


def path(template: str, **wildcards) -> str:
    """``template`` with its wildcards filled in; every one of them must be given."""
    filled = partial(template, **wildcards)
    missing = _WILDCARD.findall(filled)
    if missing:
        raise KeyError(f"{template!r} needs the wildcard(s) {', '.join(missing)}")
    return filled


def in_results(results: str | Path, template: str, **wildcards) -> Path:
    """A file of a run whose results folder is ``results``, wherever it lies (for the
    tools that read a finished run)."""
    return Path(results) / path(template, **wildcards).removeprefix(RESULTS + "/")


def partial(template: str, **wildcards) -> str:
    """``template`` with the given wildcards filled in and the others left for Snakemake."""
    return _WILDCARD.sub(lambda match: str(wildcards.get(match[1], match[0])), template)


def _mirrored(folder: str, root: str) -> str:
    return root + folder.removeprefix(RESULTS)


def log(folder: str, rule: str) -> str:
    """The log of a job of ``rule`` about ``folder`` (one of the templates above)."""
    return f"{_mirrored(folder, LOGS)}/{rule}.log"


def benchmark(folder: str, rule: str) -> str:
    """The benchmark file of a heavy job of ``rule`` about ``folder``."""
    return f"{_mirrored(folder, BENCHMARKS)}/{rule}.tsv"
