"""Beyond the paper: retention of the base model's general ability after every task
(continual_lora.retention) and composition of learnt concepts after the last task
(continual_lora.composition). Closed forms of their scores and tables, the config
checks, and the micro run (tests/configs/micro.yaml turns both on)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from snakemake.utils import validate
from snakemake_harness import job_counts, run_snakemake

from continual_lora import composition, layout, retention
from continual_lora.aggregation import summary_table, to_markdown
from continual_lora.config import ConfigError, check_config
from continual_lora.data.concepts import Concept
from continual_lora.experiment import experiments_from_config
from continual_lora.scoring import get_metric, paired_mean_cosine

REPO = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).parent / "configs"
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
MICRO = yaml.safe_load((CONFIGS / "micro.yaml").read_text())
NEW_RULES = {
    "sample_retention", "sample_base_retention", "score_retention", "summarize_retention",
    "sample_composition", "sample_base_composition", "score_composition", "score_base_composition",
    "summarize_composition",
}  # fmt: skip


def concept(name: str) -> Concept:
    return Concept(name=name, domain="objects", prompt=f"a photo of {name}", subject=f"tok {name}", class_word=name)


# --------------------------------------------------------------------------- retention


def test_paired_cosine_compares_row_i_with_row_i_only():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    # cos = 1 for the first pair, 1/sqrt(2) for the second; the cross pairs do not count.
    assert paired_mean_cosine(a, b) == pytest.approx((1 + 2**-0.5) / 2, abs=1e-12)
    assert paired_mean_cosine(a, a) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="one shape"):
        paired_mean_cosine(a, b[:1])


def test_an_image_metric_gives_the_base_models_own_samples_a_retention_of_exactly_one():
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)) for _ in range(3)]
    metric = get_metric("colour_structure", {"size": 24}, "cpu")
    assert metric.retention(images, images, ["p"] * 3) == pytest.approx(1.0, abs=1e-12)
    shifted = images[1:] + images[:1]
    assert metric.retention(shifted, images, ["p"] * 3) < 0.99
    # The same images in another order lose retention: it pairs sample k with base sample k.
    assert not get_metric("denoise", {}, "cpu").scores_retention


def test_retention_tables_average_prompts_then_runs_and_take_each_runs_last_task():
    rows = []
    for run, offset in (("order0_seed0", 0.0), ("order1_seed0", 0.2)):
        for task in (1, 2):
            for prompt, value in (("p0", 0.9), ("p1", 0.7)):
                rows.append({"method": "naive", "run": run, "after_task": task, "prompt": prompt,
                             "metric": "m", "value": value - 0.1 * task + offset})  # fmt: skip
    frame = pd.DataFrame(rows)
    curves = retention.retention_curves(frame)
    # Mean of the two prompts (0.8 - 0.1 t), then of the runs (+0 and +0.2): 0.8 - 0.1 t + 0.1.
    assert curves.set_index("after_task")["mean"].to_dict() == pytest.approx({1: 0.8, 2: 0.7})
    assert curves["std"].tolist() == pytest.approx([0.1, 0.1])
    final = retention.final_retention(frame).iloc[0]
    assert (final.retention_mean, final.retention_std) == pytest.approx((0.7, 0.1))


# --------------------------------------------------------------------------- composition


def test_each_concept_is_in_two_pairs_once_first_once_second():
    concepts = [concept(n) for n in ("a", "b", "c", "d")]
    pairs = [(x.name, y.name) for x, y in composition.concept_pairs(concepts)]
    assert pairs == [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")]
    assert [(x.name, y.name) for x, y in composition.concept_pairs(concepts[:2])] == [("a", "b")]
    assert composition.concept_pairs(concepts[:1]) == []
    prompts = composition.prompt_samples(concepts[:2], ["{a} beside {b}", "{b} under {a}"])
    assert prompts == [("a+b", "tok a beside tok b"), ("a+b", "tok b under tok a")]


def test_composition_summary_averages_pairs_and_concepts_then_runs():
    rows = [
        {"method": "naive", "run": run, "pair": pair, "concept": c, "metric": "m", "value": v}
        for run, values in (("r0", (0.2, 0.4, 0.6, 0.8)), ("r1", (0.0, 0.0, 0.0, 0.4)))
        for (pair, c), v in zip((("a+b", "a"), ("a+b", "b"), ("b+a", "b"), ("b+a", "a")), values)
    ]
    summary = composition.composition_summary(pd.DataFrame(rows)).iloc[0]
    # Run means 0.5 and 0.1: mean 0.3, population std 0.2.
    assert (summary.composition_mean, summary.composition_std) == pytest.approx((0.3, 0.2))


# --------------------------------------------------------------------------- tables


def scores_frame() -> pd.DataFrame:
    rows = [{"method": "base", "run": "", "after_task": 0, "eval_task": np.nan, "concept": "a", "metric": "colour_structure", "value": 0.5}]
    for after, values in ((1, {1: 0.7}), (2, {1: 0.6, 2: 0.8})):
        for task, value in values.items():
            rows.append({"method": "naive", "run": "order0_seed0", "after_task": after, "eval_task": task,
                         "concept": "abc"[task], "metric": "colour_structure", "value": value})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_summary_gains_retention_and_composition_columns_only_where_they_are_scored():
    scores = scores_frame()
    paper = summary_table(scores, ["naive"])
    assert "retention_mean" not in paper and "composition_mean" not in paper
    assert "retention" not in to_markdown(paper)
    kept = pd.DataFrame([{"method": "naive", "run": "order0_seed0", "after_task": t, "prompt": "p",
                          "metric": "colour_structure", "value": v} for t, v in ((1, 0.95), (2, 0.9))])  # fmt: skip
    pairs = pd.DataFrame([{"method": m, "run": r, "pair": "a+b", "concept": "a", "metric": "colour_structure", "value": v}
                          for m, r, v in (("base", "", 0.4), ("naive", "order0_seed0", 0.55))])  # fmt: skip
    table = summary_table(scores, ["naive"], kept, pairs).set_index("method")
    assert table.loc["naive", "retention_mean"] == pytest.approx(0.9)
    assert np.isnan(table.loc["base", "retention_mean"])  # the reference, 1 by definition
    assert table.loc["base", "composition_mean"] == pytest.approx(0.4)
    assert table.loc["naive", "composition_mean"] == pytest.approx(0.55)
    header, _, base, naive = (
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in to_markdown(summary_table(scores, ["naive"], kept, pairs)).splitlines()
    )
    assert header[3:] == ["colour_structure retention ↑", "colour_structure composition ↑"]
    assert base[3:] == ["-", "0.400 ± 0.000"]
    assert naive[3:] == ["0.900 ± 0.000", "0.550 ± 0.000"]


# --------------------------------------------------------------------------- config


def problem(config: dict, directory: Path) -> str:
    config = copy.deepcopy(config)
    with pytest.raises(ConfigError) as error:
        validate(config, str(SCHEMA))
        check_config(config, schema=SCHEMA, directory=directory)
    return str(error.value)


def test_retention_metrics_that_cannot_score_it_are_refused_in_one_sentence(tmp_path):
    config = copy.deepcopy(MICRO)
    config["retention"]["metrics"] = ["denoise"]
    assert problem(config, tmp_path) == (
        "config key 'retention.metrics' names metric 'denoise', which cannot score retention; "
        "these can: clip_i, clip_t, colour_structure, csd, dino."
    )
    config["retention"]["metrics"] = None
    config["experiments"]["micro_objects"]["metrics"] = ["denoise"]
    assert problem(config, tmp_path).startswith(
        "config key 'retention.enabled' is true, but experiment 'micro_objects' scores with no metric that can "
        "score retention (denoise); name some in 'retention.metrics'."
    )
    config["retention"]["enabled"] = False
    assert "composition.enabled" in problem(config, tmp_path)


# --------------------------------------------------------------------------- the workflow


def test_with_both_off_the_graph_is_the_papers_alone(tmp_path):
    config = copy.deepcopy(MICRO)
    config["retention"], config["composition"] = {"enabled": False}, {"enabled": False}
    configfile = tmp_path / "paper_only.yaml"
    configfile.write_text(yaml.safe_dump(config))
    counts = job_counts(run_snakemake(tmp_path, configfile, "--dry-run"))
    assert not NEW_RULES & set(counts)
    on = job_counts(run_snakemake(tmp_path, CONFIGS / "micro.yaml", "--dry-run"))
    assert set(on) - set(counts) == NEW_RULES
    # Per experiment: a retention job pair per checkpoint and one base sampling; a
    # composition job pair per run and for the base; a summary of each.
    checkpoints = 2 * 4 * 2
    assert (on["sample_retention"], on["score_retention"], on["sample_base_retention"]) == (checkpoints, checkpoints, 2)
    assert (on["sample_composition"], on["score_composition"], on["score_base_composition"]) == (8, 8, 2)


def test_micro_run_scores_retention_after_every_task_against_the_base_models_samples(micro_run):
    experiments = experiments_from_config(MICRO)
    for experiment in experiments.values():
        prompts = MICRO["retention"]["prompts"][experiment.domain]
        base = pd.read_csv(micro_run / layout.path(layout.BASE_RETENTION_SAMPLES, experiment=experiment.name) / "index.csv")
        assert sorted(set(base.prompt)) == sorted(prompts) and len(base) == 2 * len(prompts)
        for method in MICRO["methods"]:
            for task in (1, 2):
                where = {"experiment": experiment.name, "method": method, "run": experiment.runs[0], "task": task}
                index = pd.read_csv(micro_run / layout.path(layout.RETENTION_SAMPLES, **where) / "index.csv")
                assert index[["prompt", "template", "sample", "file"]].equals(base[["prompt", "template", "sample", "file"]])
                scores = pd.read_csv(micro_run / layout.path(layout.RETENTION_SCORES, **where))
                assert sorted(scores.prompt) == sorted(prompts) and set(scores.metric) == {"colour_structure"}
                assert ((scores.value > 0) & (scores.value <= 1 + 1e-9)).all() and (scores.after_task == task).all()
        curves = pd.read_csv(micro_run / layout.path(layout.RETENTION_TABLE, experiment=experiment.name))
        assert len(curves) == 4 * 2 and set(curves.method) == set(MICRO["methods"])
        summary = pd.read_csv(micro_run / layout.path(layout.SUMMARY, experiment=experiment.name))
        summary = summary[summary.metric == "colour_structure"].set_index("method")
        last = curves[curves.after_task == 2].set_index("method")["mean"]
        assert summary.loc[last.index, "retention_mean"].to_numpy() == pytest.approx(last.to_numpy())
        assert np.isnan(summary.loc["base", "retention_mean"])
        figures = micro_run / layout.path(layout.RETENTION_FIGURES, experiment=experiment.name)
        assert Image.open(figures / "retention_colour_structure.png").size[0] > 600
        # The grid: a row per prompt, a column for the base model and each method.
        width, height = Image.open(figures / "retention_samples.png").size
        assert width > 5 * 200 and height > len(prompts) * 200


def test_micro_run_scores_each_concept_pair_on_both_concepts_for_the_base_and_every_method(micro_run):
    experiments = experiments_from_config(MICRO)
    for experiment in experiments.values():
        (a, b), = [(x.name, y.name) for x, y in composition.concept_pairs(experiment.concepts)]
        table = pd.read_csv(micro_run / layout.path(layout.COMPOSITION_TABLE, experiment=experiment.name))
        assert table.method.tolist() == [m for m in ("base", *MICRO["methods"]) for _ in (a, b)]
        assert set(table.pair) == {f"{a}+{b}"} and set(table.concept) == {a, b}
        samples = micro_run / layout.path(layout.BASE_COMPOSITION_SAMPLES, experiment=experiment.name)
        subjects = {c.name: c.subject for c in experiment.concepts}
        template = MICRO["composition"]["templates"][experiment.domain][0]
        assert set(pd.read_csv(samples / "index.csv").prompt) == {template.format(a=subjects[a], b=subjects[b])}
        summary = pd.read_csv(micro_run / layout.path(layout.SUMMARY, experiment=experiment.name))
        row = summary[(summary.method == "base") & (summary.metric == "colour_structure")].iloc[0]
        base = table[(table.method == "base") & (table.metric == "colour_structure")]
        assert row.composition_mean == pytest.approx(base["mean"].mean())
        grid = micro_run / layout.path(layout.COMPOSITION_FIGURES, experiment=experiment.name) / "composition_template0.png"
        assert Image.open(grid).size[0] > 500
