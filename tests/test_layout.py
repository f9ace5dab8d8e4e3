"""The layout of results/: one module names every file, and the rules and scripts keep
to it and to explicit contracts (lists plus params, never a parsed input key)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from continual_lora import layout

REPO = Path(__file__).resolve().parents[1]


def test_a_template_is_filled_whole_or_names_what_is_missing():
    assert (
        layout.path(layout.HANDOFF, experiment="e", method="naive", run="order0_seed1", task=3)
        == "results/e/naive/order0_seed1/task3/checkpoint/handoff.safetensors"
    )
    with pytest.raises(KeyError, match=r"needs the wildcard\(s\) run, task"):
        layout.path(layout.HANDOFF, experiment="e", method="naive")
    assert layout.partial(layout.FIGURES, figure_set="scores") == "results/{experiment}/figures/scores"


def test_logs_and_benchmarks_mirror_the_folder_they_are_about_and_are_named_after_the_rule():
    assert layout.log(layout.TASK, "train_task") == "results/logs/{experiment}/{method}/{run}/task{task}/train_task.log"
    assert layout.benchmark(layout.BASE, "score_base_samples") == "results/benchmarks/{experiment}/base/score_base_samples.tsv"
    assert layout.log(layout.MODELS, "pretrain_tiny_model") == "results/logs/models/pretrain_tiny_model.log"


def test_the_folders_the_workflow_keeps_for_itself_are_the_ones_it_writes():
    own = {
        Path(template).parts[1]
        for template in (layout.TINY_MODEL, layout.log(layout.TASK, "x"), layout.benchmark(layout.TASK, "x"))
    }
    assert own == set(layout.RESERVED_EXPERIMENT_NAMES)


def code_files():
    return [*REPO.glob("workflow/rules/*.smk"), *REPO.glob("workflow/scripts/*.py"), *REPO.glob("continual_lora/**/*.py")]


def test_no_rule_script_or_module_but_the_layout_spells_a_results_path():
    literal = re.compile(r"""[rf]?["']results/""")
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in code_files()
        if path.name != "layout.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if literal.search(line)
    ]
    assert offenders == []


def test_no_script_reads_an_input_by_a_key_it_builds_or_counts_its_inputs():
    """Scripts take named inputs and lists that the params label; a key built from a
    wildcard or a count of the inputs would tie them to string conventions."""
    patterns = [
        r"snakemake\.input\[f",  # an input key built from values
        r"snakemake\.input\.(items|keys)\(",  # inputs told apart by their names
        r"len\(snakemake\.input",  # structure recovered from the number of inputs
    ]
    offenders = [
        f"{path.name}: {pattern}"
        for path in REPO.glob("workflow/scripts/*.py")
        for pattern in patterns
        if re.search(pattern, path.read_text())
    ]
    assert offenders == []
