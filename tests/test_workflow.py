"""The real Snakefile: the graph of the continual chain, and a run on the micro config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from snakemake_harness import dry_run_jobs, job_counts, run_snakemake

from continual_lora import layout
from continual_lora.checkpoint import CHECKPOINT_FILES, load_tensors
from continual_lora.experiment import experiments_from_config

CONFIGS = Path(__file__).parent / "configs"


@pytest.fixture(scope="module")
def dag_training_jobs(tmp_path_factory):
    """The train_task jobs of a dry run of tests/configs/dag.yaml."""
    output = run_snakemake(tmp_path_factory.mktemp("dag"), CONFIGS / "dag.yaml", "--dry-run")
    return [job for job in dry_run_jobs(output) if job.rule == "train_task"]


def test_dry_run_builds_one_training_job_per_task_chained_on_the_previous_handoff(dag_training_jobs):
    config = yaml.safe_load((CONFIGS / "dag.yaml").read_text())
    jobs = dag_training_jobs
    expected = sum(
        len(config["methods"]) * len(e["order_seeds"]) * len(e["training_seeds"]) * e["n_tasks"]
        for e in config["experiments"].values()
    )
    assert len(jobs) == expected == 4 * (4 * 3 * 2 + 3 * 1 * 1)

    for job in jobs:
        w = job.wildcards
        inputs = set(job.paths("input"))
        concept_dirs = {p for p in inputs if "/data/" in p}
        assert len(concept_dirs) == 1  # the task's own data, no other concept's
        assert "results/models/tiny" in inputs
        earlier = {p for p in inputs if p.endswith(".safetensors")}
        task = int(w["task"])
        if task == 1:
            assert earlier == set()
        else:
            previous = f"results/{w['experiment']}/{w['method']}/{w['run']}/task{task - 1}/checkpoint/handoff.safetensors"
            assert earlier == {previous}
        assert inputs == concept_dirs | {"results/models/tiny"} | earlier


def test_dry_run_trains_the_tasks_of_a_run_in_its_shuffled_order(dag_training_jobs):
    experiments = experiments_from_config(yaml.safe_load((CONFIGS / "dag.yaml").read_text()) | {"methods": []})
    assert dag_training_jobs
    for job in dag_training_jobs:
        w = job.wildcards
        concept = experiments[w["experiment"]].task(w["run"], int(w["task"])).name
        assert f"results/{w['experiment']}/data/{concept}" in job.paths("input")


def test_micro_run_writes_the_checkpoint_contract_for_every_task(micro_run):
    config = yaml.safe_load((CONFIGS / "micro.yaml").read_text())
    experiments = experiments_from_config(config)
    for experiment in experiments.values():
        for method in config["methods"]:
            for run in experiment.runs:
                for task in range(1, experiment.n_tasks + 1):
                    folder = micro_run / f"results/{experiment.name}/{method}/{run}/task{task}/checkpoint"
                    assert sorted(p.name for p in folder.iterdir()) == sorted(CHECKPOINT_FILES)
                    meta = json.loads((folder / "meta.json").read_text())
                    assert meta["method"] == method and meta["task"] == task
                    assert meta["concept"] == experiment.task(run, task).name
                    assert meta["rank"] == 2 and meta["alpha"] == 4 and meta["scale"] == 2.0
                    assert meta["steps"] == 3 and meta["packages"]["torch"]
                    handoff = load_tensors(folder / "handoff.safetensors")
                    key_suffixes = {k.rsplit(".", 2)[-2] for k in handoff.tensors}
                    if method in ("merge_and_init", "magmax"):
                        assert handoff.kind == "delta" and all(k.endswith(".weight") for k in handoff.tensors)
                        assert not any(".lora_" in k for k in handoff.tensors)
                    else:
                        assert handoff.kind == "adapter" and key_suffixes == {"lora_A", "lora_B"}
                    # diffusers' module paths, attention projections only
                    assert all(re.match(r"(down_blocks|mid_block|up_blocks)\..*\.(to_q|to_k|to_v|to_out\.0)\.", k) for k in handoff.tensors)
                audit = json.loads((micro_run / f"results/{experiment.name}/{method}/{run}/chain_audit.json").read_text())
                assert audit["passed"] and len(audit["tasks"]) == experiment.n_tasks


def test_micro_run_logs_progress_and_benchmarks_training(micro_run):
    logs = list((micro_run / "results/logs").rglob("train_task.log"))
    assert len(logs) == 2 * 4 * 2
    for log in logs:
        assert re.search(r"step 3/3 loss \d+\.\d+", log.read_text())
    assert len(list((micro_run / "results/benchmarks").rglob("train_task.tsv"))) == len(logs)
    assert (micro_run / "results/models/tiny_samples.png").stat().st_size > 0


def test_micro_run_samples_each_method_with_its_configured_sampler(micro_run):
    # micro.yaml gives merge_and_init its own scheduler, as the presets do the paper's
    # DPM-Solver quirk; the others keep the model's own (the tiny model's DPM-Solver).
    logs = sorted((micro_run / "results/logs").rglob("generate_*samples.log"))
    methods = [path.relative_to(micro_run / "results/logs").parts[1] for path in logs]
    assert len(logs) == 2 * (1 + 4 * 2) and set(methods) == {"base", "naive", "merge_and_init", "ortho_init", "magmax"}
    for method, log in zip(methods, logs):
        sampler = "EulerDiscreteScheduler" if method == "merge_and_init" else "DPMSolverMultistepScheduler"
        assert f"with {sampler}, guidance the pipeline default" in log.read_text(), (method, log)


def test_micro_run_is_complete_and_a_second_invocation_has_nothing_to_do(micro_run):
    assert "Nothing to be done" in run_snakemake(micro_run, CONFIGS / "micro.yaml", "--dry-run")


def test_choosing_which_model_ortho_init_is_evaluated_as_retrains_nothing(micro_run, tmp_path):
    config = yaml.safe_load((CONFIGS / "micro.yaml").read_text())
    assert config["method_settings"]["ortho_init"] == {"evaluate": "trained"}
    config["method_settings"]["ortho_init"] = {"evaluate": "handoff"}
    changed = tmp_path / "handoff.yaml"
    changed.write_text(yaml.safe_dump(config))
    jobs = dry_run_jobs(run_snakemake(micro_run, changed, "--dry-run"))
    checkpoints = sum(e.n_tasks * len(e.runs) for e in experiments_from_config(config).values())
    rerun = {(job.rule, job.wildcards.get("method")) for job in jobs}
    assert not {rule for rule, _ in rerun} & {"train_task", "audit_chain", "prepare_concept", "pretrain_tiny_model"}
    assert {method for rule, method in rerun if rule in ("generate_samples", "score_samples")} == {"ortho_init"}
    assert sum(job.rule == "score_samples" for job in jobs) == checkpoints


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": ["naive", "lora_soup"]}, "config key 'methods' names unknown method(s) 'lora_soup'"),
        ({"lora": {"rank": 0}}, "0 is less than the minimum of 1"),
        ({"experiments": {"bad/name": {"domain": "objects", "dataset": {"source": "synthetic"}}}}, "does not match"),
    ],
)
def test_a_bad_config_stops_the_workflow_before_any_job_with_a_clear_message(tmp_path, change, message):
    config = yaml.safe_load((CONFIGS / "micro.yaml").read_text()) | change
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump(config))
    output = run_snakemake(tmp_path, configfile, "--dry-run", cores=1, gpu=None, ok=False)
    assert message in output, output[-3000:]
    assert not (tmp_path / "results").exists()


def test_micro_run_scores_every_seen_task_and_summarizes(micro_run):
    import diffusers
    import pandas as pd
    import torch

    from continual_lora.aggregation import COMPOSITION_COLUMNS, RETENTION_COLUMNS, SUMMARY_COLUMNS
    from continual_lora.evaluation import SCORE_COLUMNS

    config = yaml.safe_load((CONFIGS / "micro.yaml").read_text())
    for experiment in experiments_from_config(config).values():
        metrics = config["experiments"][experiment.name]["metrics"]
        root = micro_run / "results" / experiment.name
        base = pd.read_csv(root / "base/scores.csv", keep_default_na=False)
        assert tuple(base.columns) == SCORE_COLUMNS
        assert set(base.after_task) == {0} and set(base.run) == {""} and set(base.eval_task) == {""}
        assert len(base) == experiment.n_tasks * len(metrics)
        for method in config["methods"]:
            for run in experiment.runs:
                for task in range(1, experiment.n_tasks + 1):
                    scores = pd.read_csv(root / f"{method}/{run}/task{task}/scores.csv")
                    assert sorted(scores.eval_task.unique()) == list(range(1, task + 1))
                    assert set(scores.metric) == set(metrics) and len(scores) == task * len(metrics)
                    assert scores.value.notna().all()
        summary = pd.read_csv(root / "tables/summary.csv")
        # micro.yaml turns retention and composition on (test_beyond_paper.py).
        assert tuple(summary.columns) == SUMMARY_COLUMNS + RETENTION_COLUMNS + COMPOSITION_COLUMNS
        assert set(summary.method) == {"base", *config["methods"]}
        assert (root / "tables/summary.md").read_text().startswith("| Method |")
        assert "\\begin{tabular}" in (root / "tables/summary.tex").read_text()
        # The environment the tables were made in, as pip constraints, headed by what
        # every checkpoint was trained with (all in this one environment).
        environment = (root / "tables/environment.txt").read_text().splitlines()
        n_checkpoints = len(config["methods"]) * len(experiment.runs) * experiment.n_tasks
        assert f"# {n_checkpoints} checkpoint(s) trained with accelerate " in "\n".join(environment)
        assert not any("differing" in line for line in environment)
        assert f"torch=={torch.__version__}" in environment and f"diffusers=={diffusers.__version__}" in environment


def test_micro_run_draws_every_figure_and_builds_the_report(micro_run, micro_report):
    config = yaml.safe_load((CONFIGS / "micro.yaml").read_text())
    methods = config["methods"]
    for name, spec in config["experiments"].items():
        figures = micro_run / "results" / name / "figures"
        expected = {f"scores/heatmap_{metric}_{method}" for metric in spec["metrics"] for method in methods}
        expected |= {f"scores/first_task_{m}" for m in spec["metrics"]} | {f"scores/plasticity_forgetting_{m}" for m in spec["metrics"]}
        expected |= {f"scores/heatmaps_{m}" for m in spec["metrics"]}
        expected |= {f"sign_conflicts/{kind}_{method}" for kind in ("sign_conflicts", "norm_ratio") for method in methods}
        n_templates = min(2, len(config["evaluation"]["templates"][spec["domain"]]))
        expected |= {f"samples/{kind}_template{t}" for kind in ("samples", "right_after") for t in range(n_templates)}
        for stem in expected:
            for suffix in (".png", ".pdf"):
                assert (figures / f"{stem}{suffix}").stat().st_size > 1000, stem
    report = micro_report.read_text(errors="replace")
    assert len(report) > 100_000 and "summary.csv" in report and "heatmap_" in report


def test_micro_run_of_the_methods_beyond_the_paper_audits_every_chain_and_tables_every_method(tmp_path):
    import pandas as pd

    config = yaml.safe_load((CONFIGS / "micro_zoo.yaml").read_text())
    run_snakemake(tmp_path, CONFIGS / "micro_zoo.yaml", "all")
    (experiment,) = experiments_from_config(config).values()
    root = tmp_path / "results" / experiment.name
    for method in config["methods"]:
        audit = json.loads((root / method / "order0_seed0/chain_audit.json").read_text())
        assert audit["passed"] and len(audit["tasks"]) == experiment.n_tasks, (method, audit)
        # The regularized methods trained task 2 with their penalty, and it was not zero.
        meta = json.loads((root / method / "order0_seed0/task2/checkpoint/meta.json").read_text())
        if method in ("c_lora", "o_lora"):
            assert [step for step, _ in meta["penalty_curve"]] == [1, 2, 3] and meta["penalty_curve"][-1][1] > 0, method
            log = (tmp_path / "results/logs" / experiment.name / method / "order0_seed0/task2/train_task.log").read_text()
            assert re.search(r"step 3/3 loss \d+\.\d+ penalty \S+", log), log
        else:
            assert meta["penalty_curve"] == []
    summary = pd.read_csv(root / "tables/summary.csv")
    assert set(summary.method) == {"base", *config["methods"]}
    assert summary.loc[summary.method != "base", "avg_score_mean"].notna().all()


def test_a_config_that_names_its_own_tiny_model_leaves_the_other_configs_model_in_place(tmp_path):
    first = yaml.safe_load((CONFIGS / "nano.yaml").read_text())
    second = json.loads(json.dumps(first))
    second["tiny_model"].update(name="nano-other", seed=1)
    runs = []
    for label, config, name in (("first", first, "tiny"), ("second", second, "nano-other")):
        configfile = tmp_path / f"{label}.yaml"
        configfile.write_text(yaml.safe_dump(config))
        runs.append((configfile, layout.path(layout.TINY_MODEL, model=name)))
    for configfile, model in runs:
        run_snakemake(tmp_path, configfile, model)
    # Each model in its own folder, pretrained with its own settings, with its own log.
    weights = [next((tmp_path / model / "unet").glob("*.safetensors")).read_bytes() for _, model in runs]
    assert weights[0] != weights[1]
    assert (tmp_path / layout.log(runs[1][1], "pretrain_tiny_model")).is_file()
    # Back to the first config: its model is still the one it made, and nothing runs again.
    configfile, model = runs[0]
    assert job_counts(run_snakemake(tmp_path, configfile, model, "--dry-run")) == {}
    assert next((tmp_path / model / "unet").glob("*.safetensors")).read_bytes() == weights[0]
