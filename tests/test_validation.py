"""Bad input stops the workflow before any job, in one sentence that names the config
key or the file; a training job that diverges or runs out of memory says where and
what to do.

Most cases run the checks the Snakefile runs when it loads (the schema, then
``check_config``) in this process; a few go through the real Snakefile to show that
the message reaches the user and that nothing under results/ is created or changed.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import pytest
import torch
import yaml
from dataset_fixtures import with_dataset_paths, write_dreambooth_fixture
from PIL import Image
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from snakemake_harness import job_counts, run_snakemake

from continual_lora import training
from continual_lora.config import ConfigError, check_config
from continual_lora.data import synthetic
from continual_lora.data.concepts import Concept
from continual_lora.data.sources import RARE_TOKENS, DatasetError, SyntheticSource, check_distinct
from continual_lora.lora import LoraSpec
from continual_lora.training import TrainingSettings, train_task

REPO = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).parent / "configs"
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
MICRO = yaml.safe_load((CONFIGS / "micro.yaml").read_text())


def micro(**sections) -> dict:
    """The micro config with whole top-level sections replaced."""
    return copy.deepcopy(MICRO) | copy.deepcopy(sections)


def with_experiment(config: dict, name: str = "micro_objects", **changes) -> dict:
    config["experiments"][name] |= changes
    return config


def problem(config: dict, directory: Path) -> str:
    """The message that stops the workflow for ``config``, run from ``directory``."""
    config = copy.deepcopy(config)
    with pytest.raises((ConfigError, WorkflowError)) as error:
        validate(config, str(SCHEMA))
        check_config(config, schema=SCHEMA, directory=directory)
    return str(error.value)


def accepted(config: dict, directory: Path) -> None:
    config = copy.deepcopy(config)
    validate(config, str(SCHEMA))
    check_config(config, schema=SCHEMA, directory=directory)


def real_dataset(source: str, path: Path, n_tasks: int = 2, **dataset) -> dict:
    domain = {"dreambooth": "objects", "unlearncanvas": "styles"}[source]
    experiment = {
        "domain": domain,
        "dataset": {"source": source, "path": str(path), **dataset},
        "n_tasks": n_tasks,
        "order_seeds": [0],
        "training_seeds": [0],
        "metrics": ["colour_structure"],
    }
    return micro(experiments={"real": experiment})


# The miniature datasets (the dreambooth and unlearncanvas fixtures, conftest.py): their
# first selected concepts (seed-42 draws): DreamBooth's first two subjects;
# UnlearnCanvas's first style, the object it trains on, and a held-out one.
DB_SUBJECT = "thing1"
UC_STYLE, UC_TRAIN_OBJECT, UC_HELD_OUT = "Rust", "Horses", "Dogs"


def fake_model(folder: Path, pipeline: str = "StableDiffusionPipeline", unet_blocks: int = 4, vae_levels: int = 4):
    """A diffusers folder's configs without weights: all the load-time checks read."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    for part, config in (
        ("unet", {"down_block_types": ["CrossAttnDownBlock2D"] * unet_blocks}),
        ("vae", {"block_out_channels": [128] * vae_levels}),
    ):
        (folder / part).mkdir()
        (folder / part / "config.json").write_text(json.dumps(config))
    return folder


# --------------------------------------------------------------------------- methods and metrics


def test_an_unknown_method_is_named_with_the_known_ones(tmp_path):
    message = problem(micro(methods=["naive", "lora_soup"]), tmp_path)
    assert message == (
        "config key 'methods' names unknown method(s) 'lora_soup'; "
        "known methods: c_lora, dare, magmax, merge_and_init, naive, o_lora, ortho_init, running_average, "
        "task_arithmetic, ties."
    )


def test_an_unknown_metric_is_named_with_the_known_ones(tmp_path):
    message = problem(with_experiment(micro(), metrics=["colour_structure", "fid"]), tmp_path)
    assert message.startswith("config key 'experiments.micro_objects.metrics' names metric 'fid', which is not registered")
    assert "known: clip_i, clip_t, colour_structure, csd, denoise, dino" in message


def test_a_metric_that_the_domain_cannot_use_is_refused(tmp_path):
    message = problem(with_experiment(micro(), metrics=["csd"]), tmp_path)
    assert "config key 'experiments.micro_objects.metrics' names metric 'csd', which scores styles only" in message
    assert "the experiment's domain is objects" in message
    accepted(with_experiment(micro(metric_settings={"csd": {"checkpoint": "x.pth"}}), "micro_styles", metrics=["csd"]), tmp_path)


@pytest.mark.parametrize(
    ("settings", "metrics", "message"),
    [
        ({"fidelity": {}}, None, "config key 'metric_settings.fidelity' names no registered metric"),
        ({"colour_structure": {"sise": 24}}, None, "config key 'metric_settings.colour_structure.sise' is not a setting"),
        ({}, ["csd"], "config key 'metric_settings.csd.checkpoint' is required by metric 'csd'"),
    ],
)
def test_metric_settings_a_backend_would_refuse_are_refused_at_load(tmp_path, settings, metrics, message):
    config = micro(metric_settings=settings)
    if metrics:
        with_experiment(config, "micro_styles", metrics=metrics)
    assert message in problem(config, tmp_path)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lora_soup": {}}, "config key 'method_settings.lora_soup' names no registered method"),
        ({"naive": {"evaluate": "trained"}}, "config key method_settings.naive: unknown settings ['evaluate']; naive reads none"),
        ({"ortho_init": {"evaluate": "best"}}, "config key method_settings.ortho_init.evaluate: 'best' is not one of handoff, trained"),
        ({"ties": {"density": 2}}, "config key method_settings.ties.density: 2 is outside (0.0, 1.0]."),
        ({"c_lora": {"weight": "1e3"}}, "config key method_settings.c_lora.weight: '1e3' is not a number in [0.0, inf] (YAML reads 1e3 as text"),
    ],
)
def test_method_settings_a_method_would_refuse_are_refused_at_load(tmp_path, settings, message):
    assert message in problem(micro(method_settings=settings), tmp_path)


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"scheduler": "UNet2DModel"}, "config key 'evaluation.scheduler' is 'UNet2DModel', which is not a diffusers scheduler"),
        ({"method_schedulers": {"merge_and_init": "DPMSolver"}},
         "config key 'evaluation.method_schedulers.merge_and_init' is 'DPMSolver', which is not a diffusers scheduler"),
        ({"method_schedulers": {"lora_soup": "DDIMScheduler"}},
         "config key 'evaluation.method_schedulers.lora_soup' names no registered method"),
    ],
)  # fmt: skip
def test_a_scheduler_that_is_no_diffusers_scheduler_is_refused_at_load(tmp_path, evaluation, message):
    assert message in problem(micro(evaluation=MICRO["evaluation"] | evaluation), tmp_path)
    # the base model, and a registered method the config does not run, may have one
    accepted(micro(evaluation=MICRO["evaluation"] | {"method_schedulers": {"base": "DDIMScheduler"}}), tmp_path)
    accepted(micro(methods=["naive"]), tmp_path)


def test_the_paper_metrics_an_experiment_defaults_to_are_checked_too(tmp_path):
    config = micro()
    del config["experiments"]["micro_styles"]["metrics"]  # the paper's: csd and dino
    assert "config key 'metric_settings.csd.checkpoint' is required by metric 'csd'" in problem(config, tmp_path)


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize(
    ("source", "n_tasks", "message"),
    [
        ("synthetic_objects", len(RARE_TOKENS) + 1, f"'experiments.real.n_tasks': {len(RARE_TOKENS) + 1} exceeds the {len(RARE_TOKENS)} concepts"),
        ("synthetic_styles", synthetic.MAX_STYLE_CONCEPTS + 1, "concepts of the synthetic styles dataset"),
        ("dreambooth", 11, "'experiments.real.n_tasks': 11 exceeds dataset.selection_size 10"),
        ("unlearncanvas", 11, "'experiments.real.n_tasks': 11 exceeds dataset.selection_size 10"),
    ],
)
def test_more_tasks_than_the_dataset_has_concepts(tmp_path, dreambooth, unlearncanvas, source, n_tasks, message):
    if source.startswith("synthetic"):
        domain = source.split("_")[1]
        experiment = {"domain": domain, "dataset": {"source": "synthetic"}, "n_tasks": n_tasks, "metrics": ["denoise"]}
        # denoise alone scores neither retention nor composition (test_beyond_paper.py).
        config = micro(experiments={"real": experiment}, retention={"enabled": False}, composition={"enabled": False})
    else:
        config = real_dataset(source, {"dreambooth": dreambooth, "unlearncanvas": unlearncanvas}[source], n_tasks)
    assert message in problem(config, tmp_path)


def test_a_larger_selection_than_the_dataset_holds_is_refused(tmp_path, dreambooth):
    message = problem(real_dataset("dreambooth", dreambooth, 11, selection_size=11), tmp_path)
    assert "config key 'experiments.real.dataset.path'" in message and "fewer than the 11 the selection samples" in message


@pytest.mark.parametrize("case", ["missing", "empty", "a file", "unreadable"])
def test_a_missing_empty_or_unreadable_dataset_directory(tmp_path, monkeypatch, case):
    folder = tmp_path / "dataset"
    if case == "empty":
        folder.mkdir()
    elif case == "a file":
        folder.write_text("not a folder")
    elif case == "unreadable":
        write_dreambooth_fixture(folder)
        # Root reads any folder, whatever its mode; ask the permission check directly.
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != folder and real_access(path, mode))
    expected = {
        "missing": f"'{folder}' is not a directory",
        "a file": f"'{folder}' is not a directory",
        "empty": f"'{folder}' is empty; expected the DreamBooth dataset (the dataset/ folder of "
        "github.com/google/dreambooth: prompts_and_classes.txt and one folder of photos per subject)",
        "unreadable": f"folder '{folder}' cannot be read by this user (permission denied)",
    }[case]
    message = problem(real_dataset("dreambooth", folder), tmp_path)
    assert message == f"config key 'experiments.real.dataset.path': {expected}."


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder whatever its permissions")
def test_a_dataset_directory_without_read_permission(tmp_path, dreambooth):
    dreambooth.chmod(0)
    try:
        assert "cannot be read by this user" in problem(real_dataset("dreambooth", dreambooth), tmp_path)
    finally:
        dreambooth.chmod(0o755)


def test_a_concept_folder_without_images(tmp_path, dreambooth, unlearncanvas):
    subject = dreambooth / "dataset" / DB_SUBJECT
    for image in subject.iterdir():
        image.unlink()
    message = problem(real_dataset("dreambooth", dreambooth), tmp_path)
    assert message == f"config key 'experiments.real.dataset.path': folder '{subject}' holds no images."

    train = unlearncanvas / UC_STYLE / UC_TRAIN_OBJECT
    for image in sorted(train.iterdir())[3:]:
        image.unlink()
    message = problem(real_dataset("unlearncanvas", unlearncanvas), tmp_path)
    assert f"folder '{train}' holds 3 images, fewer than the 5" in message


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("file", "damage"),
    [
        ("00.jpg", truncate),
        ("01.png", truncate),
        ("02.jpg", lambda path: path.write_bytes(b"these are not the pixels you are looking for" * 10)),
        ("03.png", lambda path: path.write_bytes(b"")),
    ],
    ids=["truncated jpeg", "truncated png", "text named .jpg", "empty png"],
)
def test_a_corrupt_or_truncated_image_is_named(tmp_path, dreambooth, file, damage):
    path = dreambooth / "dataset" / DB_SUBJECT / file
    if not path.exists():
        Image.new("RGB", (16, 16)).save(path)
    damage(path)
    message = problem(real_dataset("dreambooth", dreambooth), tmp_path)
    assert message.startswith(f"config key 'experiments.real.dataset.path': file '{path}' cannot be read as an image (")
    assert message.endswith("); replace or remove it.")


def test_a_corrupt_reference_image_of_a_style_is_named(tmp_path, unlearncanvas):
    for image in (unlearncanvas / UC_STYLE / UC_HELD_OUT).iterdir():
        truncate(image)
    message = problem(real_dataset("unlearncanvas", unlearncanvas), tmp_path)
    assert f"file '{unlearncanvas / UC_STYLE / UC_HELD_OUT}/" in message and "cannot be read as an image" in message


def test_a_non_image_file_among_the_images_is_named(tmp_path, dreambooth):
    subject = dreambooth / "dataset" / DB_SUBJECT
    (subject / "notes.txt").write_text("shot on a phone")
    (subject / ".DS_Store").write_text("")  # hidden files are litter, not data
    message = problem(real_dataset("dreambooth", dreambooth), tmp_path)
    assert message.startswith(f"config key 'experiments.real.dataset.path': folder '{subject}' holds 'notes.txt', which is not an image")


def test_the_selected_concepts_images_only_are_checked(tmp_path, dreambooth):
    truncate(dreambooth / "dataset" / "thing7" / "00.jpg")  # the tenth subject: not among two tasks
    accepted(real_dataset("dreambooth", dreambooth, n_tasks=2), tmp_path)


def test_two_folders_that_give_one_concept_name_are_refused(tmp_path, dreambooth):
    (dreambooth / "dataset" / DB_SUBJECT.upper()).mkdir()
    message = problem(real_dataset("dreambooth", dreambooth), tmp_path)
    assert f"all give the concept name '{DB_SUBJECT}'; rename all but one" in message


@pytest.mark.parametrize(
    ("duplicate", "message"),
    [
        ({"name": "ball_a"}, "has two concepts with the name 'ball_a' (concepts 1 and 2)"),
        ({"token": "sks"}, "has two concepts with the token 'sks' (concepts 1 and 2)"),
        ({"name": "Ball A"}, "concept name 'Ball A' is not usable as a folder name and wildcard"),
    ],
)
def test_duplicate_or_unusable_concept_names_and_tokens_are_refused(tmp_path, monkeypatch, duplicate, message):
    first = Concept("ball_a", "objects", "a photo of sks ball", "sks ball", "ball", "sks")
    second = Concept(**{**first.__dict__, "name": "ball_b", "token": "zwz"} | duplicate)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_distinct([first, second])
    monkeypatch.setattr(SyntheticSource, "concepts", lambda self, n: [first, second])
    assert f"config key 'experiments.micro_objects.dataset': {message}" in problem(micro(), tmp_path)


def test_the_paper_presets_pass_every_check_quickly(tmp_path, dreambooth, unlearncanvas):
    datasets = {"dreambooth": dreambooth, "unlearncanvas": unlearncanvas}
    for preset in ("sd15", "sdxl"):
        config = with_dataset_paths(yaml.safe_load((REPO / "config" / f"{preset}.yaml").read_text()), datasets)
        started = time.perf_counter()
        accepted(config, tmp_path)
        assert time.perf_counter() - started < 2.0


# --------------------------------------------------------------------------- values the schema checks


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("lora", "rank", 0, "0 is less than the minimum of 1"),
        ("lora", "rank", -4, "-4 is less than the minimum of 1"),
        ("lora", "alpha", 0, "0 is less than or equal to the minimum of 0"),
        ("training", "steps", 0, "0 is less than the minimum of 1"),
        ("training", "batch_size", -1, "-1 is less than the minimum of 1"),
        ("training", "resolution", 0, "0 is less than the minimum of 8"),
        ("evaluation", "batch_size", 0, "0 is less than the minimum of 1"),
        ("tiny_model", "resolution", 40, "40 is not a multiple of 16"),
        # Not a size, but checked alike: the model's folder stays a name under results/models.
        ("tiny_model", "name", "../elsewhere", "'../elsewhere' does not match"),
        ("tiny_model", "name", "a/b", "'a/b' does not match"),
    ],
)
def test_sizes_that_are_zero_or_negative_fail_validation_naming_the_key(tmp_path, section, key, value, message):
    text = problem(micro(**{section: MICRO.get(section, {}) | {key: value}}), tmp_path)
    assert message in text and f"On instance['{section}']['{key}']" in text


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("order_seeds", [1.5], "1.5 is not of type 'integer'"),
        ("training_seeds", ["zero"], "'zero' is not of type 'integer'"),
        ("training_seeds", [True], "True is not of type 'integer'"),
        ("order_seeds", [-1], "-1 is less than the minimum of 0"),
        ("order_seeds", [2.0], "config key 'experiments.micro_objects.order_seeds' holds 2.0, which is not an integer; write it as 2."),
        ("training_seeds", [0, 3.0], "config key 'experiments.micro_objects.training_seeds' holds 3.0, which is not an integer"),
        ("n_tasks", 2.0, "config key 'experiments.micro_objects.n_tasks' holds 2.0, which is not an integer"),
    ],
)
def test_seeds_that_are_not_integers_are_refused(tmp_path, key, value, message):
    assert message in problem(with_experiment(micro(), **{key: value}), tmp_path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad/name", "'bad/name' does not match"),
        ("../up", "'../up' does not match"),
        (".hidden", "'.hidden' does not match"),
        ("two words", "'two words' does not match"),
        ("logs", "config key 'experiments.logs' names an experiment 'logs', but results/logs holds the workflow's own files"),
        ("models", "but results/models holds the workflow's own files"),
        ("Micro_Objects", "config keys 'experiments.micro_objects' and 'experiments.Micro_Objects' differ only in case"),
    ],
)
def test_an_experiment_name_that_would_break_paths_is_refused(tmp_path, name, message):
    config = micro()
    config["experiments"][name] = copy.deepcopy(config["experiments"]["micro_objects"])
    assert message in problem(config, tmp_path)


# --------------------------------------------------------------------------- base model


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("/nowhere/stable-diffusion", None, "is '/nowhere/stable-diffusion', which is neither 'tiny', an existing folder nor a hub id"),
        ("./models/sd15", None, "is './models/sd15', which is neither"),
        ("stable-diffusion", None, "is 'stable-diffusion', which is neither"),
        ("a/b/c", None, "is 'a/b/c', which is neither"),
        ("plain", lambda p: p.mkdir(), "is the folder 'plain', which has no readable model_index.json, so it is not a diffusers model folder"),
        ("flux", lambda p: fake_model(p, "FluxPipeline"), "is the folder 'flux', a FluxPipeline model, a family this workflow cannot condition"),
        ("nounet", lambda p: fake_model(p) and (p / "unet/config.json").unlink(), "lacks unet/config.json or vae/config.json"),
    ],
)
def test_a_base_model_that_is_not_a_usable_diffusers_model_is_refused(tmp_path, name, make, message):
    if make:
        make(tmp_path / name)
    text = problem(micro(base_model={"name": name}), tmp_path)
    assert text.startswith("config key 'base_model.name' ") and message in text


def test_a_vae_path_that_is_not_a_vae_folder_is_refused(tmp_path):
    fake_model(tmp_path / "sd")
    config = micro(base_model={"name": "sd", "vae": "./vae-fix"}, training=MICRO["training"] | {"resolution": 64})
    assert "config key 'base_model.vae' is './vae-fix', which is neither a hub id" in problem(config, tmp_path)


def test_hub_ids_and_diffusers_folders_are_accepted(tmp_path):
    training = MICRO["training"] | {"resolution": 64}
    accepted(micro(base_model={"name": "stabilityai/stable-diffusion-xl-base-1.0", "vae": "madebyollin/sdxl-vae-fp16-fix"}), tmp_path)
    fake_model(tmp_path / "models" / "sd15")
    accepted(micro(base_model={"name": "models/sd15"}, training=training), tmp_path)
    accepted(micro(base_model={"name": str(tmp_path / "models" / "sd15")}, training=training), tmp_path)


@pytest.mark.parametrize(
    ("model", "size", "message"),
    [
        ("tiny", 36, "is 36, which the base model cannot take: it must be a multiple of 8 (its VAE downsamples by 2, its UNet by 4 more), e.g. 32"),
        ("sd", 500, "is 500, which the base model cannot take: it must be a multiple of 64 (its VAE downsamples by 8, its UNet by 8 more), e.g. 448"),
        ("sdxl", 1000, "is 1000, which the base model cannot take: it must be a multiple of 32 (its VAE downsamples by 8, its UNet by 4 more), e.g. 992"),
    ],
)
def test_a_resolution_the_model_cannot_take_is_refused(tmp_path, model, size, message):
    if model != "tiny":
        fake_model(tmp_path / model, unet_blocks={"sd": 4, "sdxl": 3}[model])
    text = problem(micro(base_model={"name": model}, training=MICRO["training"] | {"resolution": size}), tmp_path)
    assert text == f"config key 'training.resolution' {message}."
    # The tiny model takes any multiple of its downsampling, not only its own size.
    accepted(micro(training=MICRO["training"] | {"resolution": 64}), tmp_path)


def test_target_modules_the_unet_does_not_have_are_refused_before_any_job(tmp_path, tiny_model_dir):
    tiny = micro(lora=MICRO["lora"] | {"target_modules": ["to_q", "ff.net.2", "to_qq", "attn9"]})
    assert problem(tiny, tmp_path) == (
        "config key 'lora.target_modules' names 'to_qq' and 'attn9', but no linear layer of the base model's "
        "UNet is named so (a name matches a module's path or its last parts); its linear layers end in "
        "linear_1, linear_2, net.2, proj, time_emb_proj, to_k, to_out.0, to_q, to_v."
    )
    # A local diffusers folder is read from its unet/config.json.
    folder = micro(base_model={"name": str(tiny_model_dir)}, lora=MICRO["lora"] | {"target_modules": ["attn1.to_k", "proj_in"]})
    assert "names 'proj_in', but no linear layer" in problem(folder, tmp_path)
    accepted(micro(lora=MICRO["lora"] | {"target_modules": ["attn2.to_v", "ff.net.0.proj"]}), tmp_path)
    accepted(micro(base_model={"name": str(tiny_model_dir)}, lora=MICRO["lora"] | {"target_modules": ["proj"]}), tmp_path)


# --------------------------------------------------------------------------- results directory


def test_a_results_directory_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    (tmp_path / "results").write_text("a file where the results folder should be")
    assert "results' is a file, but the workflow writes its results into a directory" in problem(micro(), tmp_path)

    (tmp_path / "results").unlink()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path and real_access(path, mode))
    message = problem(micro(), tmp_path)
    assert message == (
        f"the results directory '{tmp_path / 'results'}' cannot be written by this user; run from a "
        "directory you can write to (snakemake --directory) or fix its permissions."
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a folder whatever its permissions")
def test_a_results_directory_without_write_permission_is_refused(tmp_path):
    (tmp_path / "results").mkdir(mode=0o555)
    try:
        assert "cannot be written by this user" in problem(micro(), tmp_path)
    finally:
        (tmp_path / "results").chmod(0o755)


# --------------------------------------------------------------------------- through the Snakefile


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """What is under ``folder`` (itself, if a file): size and modification time by path."""
    paths = [folder, *folder.rglob("*")] if folder.exists() else []
    return {str(p.relative_to(folder.parent)): (p.stat().st_size, p.stat().st_mtime_ns) for p in paths}


@pytest.mark.parametrize(
    "case",
    ["metric for another domain", "seed 2.0", "missing model", "truncated image", "results is a file"],
)
def test_bad_input_stops_the_snakefile_before_any_job_and_leaves_results_alone(tmp_path, case):
    config = micro()
    message = {
        "metric for another domain": "names metric 'csd', which scores styles only",
        "seed 2.0": "config key 'experiments.micro_styles.training_seeds' holds 2.0, which is not an integer",
        "missing model": "config key 'base_model.name' is '/nowhere/sdxl', which is neither 'tiny'",
        "truncated image": "cannot be read as an image",
        "results is a file": "is a file, but the workflow writes its results into a directory",
    }[case]
    workdir = tmp_path / "work"
    workdir.mkdir()
    if case == "results is a file":
        (workdir / "results").write_text("keep me")
    else:
        (workdir / "results/earlier").mkdir(parents=True)
        (workdir / "results/earlier/scores.csv").write_text("method,value\n")
    if case == "metric for another domain":
        with_experiment(config, metrics=["csd"])
    elif case == "seed 2.0":
        with_experiment(config, "micro_styles", training_seeds=[2.0])
    elif case == "missing model":
        config["base_model"] = {"name": "/nowhere/sdxl"}
    elif case == "truncated image":
        write_dreambooth_fixture(tmp_path / "db")
        truncate(tmp_path / "db/dataset" / DB_SUBJECT / "00.jpg")
        config = real_dataset("dreambooth", tmp_path / "db")
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    before = tree(workdir / "results")

    output = run_snakemake(workdir, configfile, cores=1, ok=False)
    assert message in output, output[-3000:]
    assert tree(workdir / "results") == before


def test_a_dry_run_needs_nothing_that_only_the_jobs_need(tmp_path):
    # Inspecting a paper preset's graph on a laptop without bitsandbytes, say: the
    # training job checks for its optimizer's package (test_training.py), not the graph.
    config = micro(training=MICRO["training"] | {"optimizer": "adamw_8bit"})
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    output = run_snakemake(tmp_path, configfile, "--dry-run", cores=1, gpu=None)
    assert job_counts(output)["train_task"] > 0 and not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- training


SPEC = LoraSpec(rank=2, alpha=4.0)
SETTINGS = TrainingSettings(steps=5, learning_rate=1e-2, batch_size=2, resolution=32, log_every=1)


def train(tmp_path, model, concept_dir, settings=SETTINGS):
    train_task(
        base_model=model, method="merge_and_init", task_index=1, concept_dir=concept_dir, previous_handoff=None,
        spec=SPEC, settings=settings, training_seed=0, out_dir=tmp_path / "checkpoint", device="cpu", log=lambda line: None,
    )  # fmt: skip


def failing_loss(monkeypatch, at_step: int, fail):
    """denoising_loss as it is, until step ``at_step`` calls ``fail``."""
    real, calls = training.denoising_loss, []

    def loss(*args, **kwargs):
        calls.append(1)
        return fail(real(*args, **kwargs)) if len(calls) == at_step else real(*args, **kwargs)

    monkeypatch.setattr(training, "denoising_loss", loss)


def test_a_nan_loss_stops_the_job_at_once_naming_task_method_and_step(tmp_path, monkeypatch, tiny_model_dir, object_concepts_dir):
    failing_loss(monkeypatch, 3, lambda loss: loss * float("nan"))
    with pytest.raises(FloatingPointError, match=r"^task 1, method merge_and_init: the loss is nan at step 3$"):
        train(tmp_path, tiny_model_dir, object_concepts_dir[0])
    assert not (tmp_path / "checkpoint").exists()


def test_a_huge_learning_rate_stops_the_job_when_the_weights_blow_up(tmp_path, tiny_model_dir, object_concepts_dir):
    settings = TrainingSettings(**SETTINGS.__dict__ | {"learning_rate": 1e10})
    with pytest.raises(FloatingPointError, match=r"^task 1, method merge_and_init: the loss is nan at step 2$"):
        train(tmp_path, tiny_model_dir, object_concepts_dir[0], settings)
    assert not (tmp_path / "checkpoint").exists()


def test_running_out_of_gpu_memory_ends_with_a_hint(tmp_path, monkeypatch, tiny_model_dir, object_concepts_dir):
    def out_of_memory(loss):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    failing_loss(monkeypatch, 1, out_of_memory)
    with pytest.raises(torch.OutOfMemoryError) as error:
        train(tmp_path, tiny_model_dir, object_concepts_dir[0])
    message = str(error.value)
    assert message.startswith("task 1, method merge_and_init: out of GPU memory at step 1")
    for hint in ("training.gradient_checkpointing: true", "training.batch_size", "training.mixed_precision: bf16"):
        assert hint in message
    assert "Tried to allocate" in str(error.value.__cause__)
    assert not (tmp_path / "checkpoint").exists()
