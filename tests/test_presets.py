"""The paper-scale presets in config/: their whole graph in a dry run, and an end-to-end
run of each with tiny models of its family.

The end-to-end runs change only what must change to run here in seconds: the model
and the metric networks (tiny random ones of the same classes, saved locally), the
dataset folders (miniatures in the upstream layouts), the sizes (2 tasks, 1 run,
1 method, a few steps, 32 px), and 8-bit AdamW where bitsandbytes is not installed
(it is not a test dependency). Everything else (the precision, the VAE swap, the
templates, the samplers, the paper's metrics per domain) is the preset's own.
"""

from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest
import yaml

import tiny_families
from dataset_fixtures import with_dataset_paths, write_datasets
from snakemake_harness import REPO, dry_run_jobs, job_counts, run_snakemake

PRESETS = REPO / "config"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Both miniature datasets, shared by the module's tests, which only read them."""
    return write_datasets(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module")
def metric_models(dino_dir, clip_dir, csd_checkpoint):
    """The metric_settings of the tiny metric networks (conftest.py)."""
    return {
        "dino": {"model": str(dino_dir)},
        "clip_i": {"model": str(clip_dir)},
        "clip_t": {"model": str(clip_dir)},
        "csd": {"checkpoint": str(csd_checkpoint[0])},
    }


@pytest.mark.parametrize(("preset", "build"), [("sdxl", tiny_families.build_sdxl), ("sd15", tiny_families.build_sd15)])
def test_a_preset_runs_end_to_end_on_tiny_models_of_its_family(preset, build, datasets, metric_models, tmp_path):
    config = with_dataset_paths(yaml.safe_load((PRESETS / f"{preset}.yaml").read_text()), datasets)
    config["base_model"]["name"] = str(build(tmp_path / "model"))
    if config["base_model"].get("vae"):
        config["base_model"]["vae"] = str(tiny_families.build_vae(tmp_path))
    for experiment in config["experiments"].values():
        experiment.update(n_tasks=2, order_seeds=[0], training_seeds=[0])
    config["methods"] = ["merge_and_init"]
    config["training"].update(steps=2, resolution=32, log_every=1)
    if importlib.util.find_spec("bitsandbytes") is None:
        # Not a test dependency (see pyproject.toml); the rest of the recipe is the preset's.
        config["training"]["optimizer"] = "adamw"
    config["metric_settings"] = {name: metric_models[name] for name in config["metric_settings"]}
    config["evaluation"].update(samples_per_prompt=1, inference_steps=2, batch_size=5)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))

    targets = [f"results/{name}/tables/summary.csv" for name in config["experiments"]]
    run_snakemake(tmp_path, configfile, *targets)

    for name, experiment in config["experiments"].items():
        scores = pd.read_csv(tmp_path / f"results/{name}/merge_and_init/order0_seed0/task2/scores.csv")
        assert set(scores["metric"]) == set(experiment["metrics"])
        assert len(scores) == 2 * len(experiment["metrics"])  # tasks 1 and 2, each metric
        assert scores["value"].notna().all()
        summary = pd.read_csv(tmp_path / f"results/{name}/tables/summary.csv")
        assert set(summary["method"]) == {"base", "merge_and_init"}
        samples = list((tmp_path / f"results/{name}/merge_and_init/order0_seed0/task2/samples").rglob("*.png"))
        assert len(samples) == 2 * len(config["evaluation"]["templates"][experiment["domain"]])
        meta = json.loads(
            (tmp_path / f"results/{name}/merge_and_init/order0_seed0/task2/checkpoint/meta.json").read_text()
        )
        assert meta["settings"]["mixed_precision"] == config["training"]["mixed_precision"]
        assert meta["settings"]["optimizer"] == config["training"]["optimizer"]
        assert {k: meta["base_model"][k] for k in config["base_model"]} == config["base_model"]
        # Beyond the paper, as the preset sets it: retention with DINO and CLIP-T,
        # composition with the experiment's image metrics.
        row = summary[summary.method == "merge_and_init"].set_index("metric")
        assert row.loc["dino", ["retention_mean", "composition_mean"]].notna().all()
        assert row.loc["clip_t", "retention_mean"] > 0 and set(experiment["metrics"]) <= set(row.index)


@pytest.mark.parametrize("preset", ["sdxl", "sd15"])
def test_a_preset_dry_runs_the_papers_whole_graph_before_and_after_the_data_is_there(preset, datasets, tmp_path):
    # A fresh working directory: no data/, as on a fresh clone.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    configfile = PRESETS / f"{preset}.yaml"
    config = yaml.safe_load(configfile.read_text())
    # The default target, and the exports beside it (their own target, not in `all`).
    output = run_snakemake(fresh, configfile, "all", "export", "--dry-run")
    counts = job_counts(output)
    exports = {rule: counts.pop(rule) for rule in ("export_model", "export")}
    assert exports == {"export_model": 2 * 4 * 8, "export": 1}
    # job_counts has checked the table's total row; 1 418 of them are retention and
    # composition (README: Beyond the paper), the rest the paper's protocol.
    assert sum(counts.values()) == 2017 + 1418
    # 2 domains x 4 methods x 8 runs (4 task orders x 2 training seeds) x 10 tasks.
    assert counts["train_task"] == counts["generate_samples"] == counts["score_samples"] == 2 * 4 * 8 * 10
    assert counts["prepare_concept"] == 2 * 10
    assert counts["audit_chain"] == 2 * 4 * 8
    assert counts["generate_base_samples"] == counts["summarize_experiment"] == 2
    assert "pretrain_tiny_model" not in counts
    # Beyond the paper, on in the presets: retention after each of the 640 checkpoints,
    # composition after each of the 64 runs' last task, and once for the base model.
    assert counts["sample_retention"] == counts["score_retention"] == 2 * 4 * 8 * 10
    assert counts["sample_composition"] == counts["score_composition"] == 2 * 4 * 8
    assert counts["sample_base_retention"] == counts["sample_base_composition"] == counts["score_base_composition"] == 2
    # One warning, naming each missing dataset, where it belongs and what belongs there.
    assert output.count("Dry run without the data") == 1
    for name, experiment in config["experiments"].items():
        source, folder = experiment["dataset"]["source"], experiment["dataset"]["path"]
        line = f"experiments.{name}.dataset.path: '{folder}' is not there yet; put the "
        assert line in output
        assert f"Until then its 10 concepts show as {source}_missing_01..10." in output
    # The stand-ins are what the job names show, not invented concept names.
    concepts = {job.wildcards["concept"] for job in dry_run_jobs(output) if job.rule == "prepare_concept"}
    assert concepts == {f"{source}_missing_{i:02d}" for source in ("dreambooth", "unlearncanvas") for i in range(1, 11)}
    assert not (fresh / "results").exists()

    # A real run still refuses before any job.
    refused = run_snakemake(fresh, configfile, ok=False)
    assert f"config key 'experiments.{preset}_objects.dataset.path': 'data/dreambooth' is not a directory." in refused
    assert "Dry run without the data" not in refused
    assert not (fresh / "results").exists()

    # With the datasets in place and retention and composition off, the graph is the
    # paper's alone, job for job: the one above without them.
    config = with_dataset_paths(config, datasets)
    config["retention"]["enabled"] = config["composition"]["enabled"] = False
    with_data = tmp_path / "config.yaml"
    with_data.write_text(yaml.safe_dump(config))
    output = run_snakemake(tmp_path, with_data, "--dry-run")
    assert "Dry run without the data" not in output
    beyond = {rule for rule in counts if "retention" in rule or "composition" in rule}
    assert job_counts(output) == {rule: n for rule, n in counts.items() if rule not in beyond}


def test_the_own_concepts_example_dry_runs_before_its_folder_is_there(tmp_path):
    configfile = PRESETS / "own_concepts.yaml"
    config = yaml.safe_load(configfile.read_text())
    (name, experiment), = config["experiments"].items()
    output = run_snakemake(tmp_path, configfile, "--dry-run")
    n = experiment["n_tasks"]
    assert f"experiments.{name}.dataset.path: 'data/my_concepts' is not there yet; put your own concepts" in output
    jobs = dry_run_jobs(output)
    assert {job.wildcards["concept"] for job in jobs if job.rule == "prepare_concept"} == {
        f"folder_missing_{i:02d}" for i in range(1, n + 1)
    }
    assert sum(job.rule == "train_task" for job in jobs) == len(config["methods"]) * n
    assert not (tmp_path / "results").exists()


def test_the_quick_preset_is_the_embedded_default_with_the_plain_pretraining(tmp_path):
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    preset = yaml.safe_load((PRESETS / "tiny-quick.yaml").read_text())
    # Its experiments are the default's under their own names, the synthetic world's own patterns.
    renamed = {name.replace("quick_", "tiny_"): experiment for name, experiment in preset["experiments"].items()}
    assert default["experiments"]["tiny_objects"]["dataset"].pop("pattern_scale") == 2.0
    assert default["tiny_model"]["pattern_scale"] == 2.0
    assert renamed == default["experiments"]
    # The model: the schema's plain pretraining, where the default's is patterned, named
    # and three times as long; nothing else differs.
    model = preset.pop("tiny_model")
    # Under a name of its own, so that the default's model and results stay in place.
    assert model.pop("name") not in ("tiny", default["tiny_model"].get("name"))
    default_model = default.pop("tiny_model")
    assert model == {key: default_model.pop(key) for key in ("resolution", "seed")}
    assert default_model["patterned_fraction"] > 0 and default_model["position_embedding_scale"] == 25.0
    assert default_model["named_ground_fraction"] > 0
    assert default_model["pretrain_steps"] * default_model["batch_size"] == 3 * 4000 * 32
    del preset["experiments"], default["experiments"]
    assert preset == default
    # Its whole graph, the pretraining first.
    counts = job_counts(run_snakemake(tmp_path, PRESETS / "tiny-quick.yaml", "--dry-run"))
    assert counts["pretrain_tiny_model"] == 1
    assert counts["train_task"] == counts["generate_samples"] == 2 * 4 * 5
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["methods-zoo", "own_concepts"])
def test_the_embedded_configs_share_the_defaults_model(name):
    # The same tiny_model settings give the same model under the same folder and cache
    # key, so switching between these configs and the default pretrains nothing again.
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    config = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())
    assert config["base_model"] == default["base_model"]
    assert config["tiny_model"] == default["tiny_model"]
    for key in ("lora", "training"):
        assert config[key] == default[key]


def test_the_methods_zoo_runs_the_defaults_experiments():
    # Its experiments share their names and jobs with the default's (README, "Running them all").
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    zoo = yaml.safe_load((PRESETS / "methods-zoo.yaml").read_text())
    assert zoo["experiments"] == default["experiments"]
    assert set(default["methods"]) < set(zoo["methods"])
    for key in ("metric_settings", "evaluation"):
        assert zoo[key] == default[key]
