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
from snakemake_harness import dry_run_jobs, job_counts, run_snakemake

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
    # The same images in another order lose retention: it pairs sample k with base sample k.
    shifted = images[1:] + images[:1]
    assert metric.retention(shifted, images, ["p"] * 3) < 0.99
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


def write_samples(folder: Path, prompts: list[str], images: list[Image.Image]) -> Path:
    """A samples folder as generate_prompt_samples writes it: two samples per prompt."""
    rows = []
    for template, prompt in enumerate(prompts):
        for sample in range(2):
            file = f"retention/t{template}_s{sample}.png"
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            images[2 * template + sample].save(folder / file)
            rows.append({"prompt": prompt, "template": template, "sample": sample, "task": "", "concept": "retention", "file": file})
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)
    return folder


def test_score_retention_pairs_each_sample_with_the_base_sample_of_its_prompt_and_noise(tmp_path):
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)) for _ in range(4)]
    base = write_samples(tmp_path / "base", ["p0", "p1"], images)
    kwargs = {"metrics": {"colour_structure": {"size": 24}}, "method": "naive", "run": "r", "after_task": 1, "log": lambda _: None}
    same = retention.score_retention(samples_dir=base, base_dir=base, out_csv=tmp_path / "same.csv", **kwargs)
    assert [row["value"] for row in same] == pytest.approx([1.0, 1.0], abs=1e-12)
    # The same images under the other noise: each pairs with a base sample it was not drawn beside.
    swapped = write_samples(tmp_path / "swapped", ["p0", "p1"], [images[1], images[0], images[3], images[2]])
    rows = retention.score_retention(samples_dir=swapped, base_dir=base, out_csv=tmp_path / "swapped.csv", **kwargs)
    metric = get_metric("colour_structure", {"size": 24}, "cpu")
    expected = [paired_mean_cosine(metric.embed([images[1], images[0]]), metric.embed(images[:2])),
                paired_mean_cosine(metric.embed([images[3], images[2]]), metric.embed(images[2:]))]  # fmt: skip
    assert [row["value"] for row in rows] == pytest.approx(expected) and max(expected) < 0.99
    other = write_samples(tmp_path / "other", ["p0", "another prompt"], images)
    with pytest.raises(ValueError, match="different retention prompts or samples"):
        retention.score_retention(samples_dir=other, base_dir=base, out_csv=tmp_path / "other.csv", **kwargs)


def test_clip_t_retention_is_the_ratio_of_prompt_alignments_one_for_the_base_model(clip_dir):
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(4)]
    metric = get_metric("clip_t", {"model": str(clip_dir)}, "cpu")
    prompts = ["a photo of a ball"] * 2
    assert metric.retention(images[:2], images[:2], prompts) == pytest.approx(1.0, abs=1e-12)
    ratio = float(metric.text_similarities(images[2:], prompts).mean() / metric.text_similarities(images[:2], prompts).mean())
    assert metric.retention(images[2:], images[:2], prompts) == pytest.approx(ratio) and ratio != pytest.approx(1.0)


# --------------------------------------------------------------------------- composition


def test_composition_scores_with_the_metrics_that_compare_samples_with_references():
    # Not denoise (it queries the model), not CLIP-T (the prompt is the same for both concepts).
    assert composition.composition_metrics(["clip_i", "clip_t", "denoise", "dino", "csd"]) == ["clip_i", "dino", "csd"]


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


def test_a_metric_scored_for_retention_only_comes_after_the_experiments_own_and_the_base_row_stays_first():
    scores = scores_frame()
    kept = pd.DataFrame([{"method": "naive", "run": "order0_seed0", "after_task": 2, "prompt": "p", "metric": m, "value": v}
                         for m, v in (("colour_structure", 0.9), ("clip_t", 0.97))])  # fmt: skip
    table = summary_table(scores, ["naive"], kept)
    assert table[["metric", "method"]].values.tolist() == [
        ["colour_structure", "base"], ["colour_structure", "naive"], ["clip_t", "naive"]
    ]
    assert table.n_runs.tolist()[:2] == [1, 1] and str(table.n_runs.dtype) == "Int64"
    header, _, base, naive = (
        [cell.strip() for cell in line.strip("|").split("|")] for line in to_markdown(table).splitlines()
    )
    assert header[1:] == ["colour_structure score ↑", "colour_structure forgetting ↓", "colour_structure retention ↑",
                          "clip_t retention ↑"]  # fmt: skip
    assert base[0] == "base" and naive[0] == "naive" and naive[4] == "0.970 ± 0.000"


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


def test_a_retention_metric_of_another_domain_and_a_stray_placeholder_are_refused(tmp_path):
    config = copy.deepcopy(MICRO)
    config["retention"]["metrics"] = ["csd"]
    config["metric_settings"] = {"csd": {"checkpoint": "csd.pth"}}
    assert problem(config, tmp_path) == (
        "config key 'retention.metrics' names metric 'csd', which scores styles only, "
        "but experiment 'micro_objects' is of objects."
    )
    config = copy.deepcopy(MICRO)
    config["composition"]["templates"]["objects"] = ["{a} beside {b} in {place}"]
    assert problem(config, tmp_path).startswith(
        "config key 'composition.templates.objects' holds '{a} beside {b} in {place}', which has a placeholder other than {a} and {b}"
    )


# --------------------------------------------------------------------------- the workflow


def test_with_both_off_the_graph_is_the_papers_alone(tmp_path):
    config = copy.deepcopy(MICRO)
    config["retention"], config["composition"] = {"enabled": False}, {"enabled": False}
    configfile = tmp_path / "paper_only.yaml"
    configfile.write_text(yaml.safe_dump(config))
    counts = job_counts(run_snakemake(tmp_path, configfile, "--dry-run"))
    assert not NEW_RULES & set(counts)
    output = run_snakemake(tmp_path, CONFIGS / "micro.yaml", "--dry-run")
    on = job_counts(output)
    assert set(on) - set(counts) == NEW_RULES
    # The SLURM profile pairs their sampling and scoring in groups of GPU jobs.
    groups = dict(item.split("=", 1) for item in yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())["groups"])
    grouped = {rule for rule in groups if rule in NEW_RULES}
    assert grouped == {rule for rule in NEW_RULES if rule.startswith(("sample_", "score_")) and rule != "sample_base_retention"}
    gpu = {job.rule: job.resources.get("gpu") for job in dry_run_jobs(output) if job.rule in NEW_RULES}
    assert {rule for rule, value in gpu.items() if value == "1"} == grouped | {"sample_base_retention"}
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
