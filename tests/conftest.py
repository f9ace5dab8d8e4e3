"""Fixtures more than one test module uses. Test modules share helpers through the
modules beside this file: snakemake_harness.py (running the Snakefile, reading a dry
run), dataset_fixtures.py (the miniature datasets), tiny_metric_models.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tiny_metric_models
from continual_lora.data.sources import make_source
from continual_lora.models.model_cache import CACHE_ENV
from continual_lora.models.tiny import TinyModelSettings, build_tiny_pipeline, build_tokenizer
from dataset_fixtures import write_dreambooth_fixture, write_unlearncanvas_fixture
from snakemake_harness import run_snakemake

CONFIGS = Path(__file__).parent / "configs"


def pytest_configure(config):
    # Every workflow the tests run pretrains its own model: none comes from, or lands
    # in, the cache of pretrained models of the person running them.
    os.environ[CACHE_ENV] = "off"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny SD-format model, randomly initialised (no pretraining), saved as a
    diffusers folder: the real classes at the smallest size, built in about a second."""
    root = tmp_path_factory.mktemp("tiny_model")
    tokenizer = build_tokenizer(["a photo of a ball", "image of a house"], root / "tokenizer", extra_words=["sks", "zwz"])
    pipeline = build_tiny_pipeline(TinyModelSettings(resolution=32), tokenizer)
    pipeline.save_pretrained(root / "model")
    return root / "model"


@pytest.fixture(scope="session")
def object_concepts_dir(tmp_path_factory):
    """Two synthetic object concepts, prepared at 32 px."""
    root = tmp_path_factory.mktemp("concepts")
    source = make_source("objects", {"source": "synthetic", "seed": 0, "resolution": 32, "n_reference": 2})
    concepts = source.concepts(2)
    for concept in concepts:
        source.prepare(concept, root / concept.name)
    return [root / concept.name for concept in concepts]


# The miniature datasets, new for each test: tests damage them to see the checks.


@pytest.fixture
def dreambooth(tmp_path):
    """A miniature DreamBooth repository folder (dataset_fixtures.py)."""
    return write_dreambooth_fixture(tmp_path / "dreambooth")


@pytest.fixture
def unlearncanvas(tmp_path):
    """A miniature UnlearnCanvas folder (dataset_fixtures.py)."""
    return write_unlearncanvas_fixture(tmp_path / "unlearncanvas")


# The metric networks, tiny and random (tiny_metric_models.py); read, never changed.


@pytest.fixture(scope="session")
def dino_dir(tmp_path_factory):
    return tiny_metric_models.build_dino(tmp_path_factory.mktemp("dino"))


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    return tiny_metric_models.build_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def csd_checkpoint(tmp_path_factory):
    """The checkpoint's path and its state dict (without the DDP prefix)."""
    return tiny_metric_models.build_csd_checkpoint(tmp_path_factory.mktemp("csd"))


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """The workflow run end to end on tests/configs/micro.yaml: its working directory.
    Read by several modules (test_workflow, test_report, test_export); never changed."""
    workdir = tmp_path_factory.mktemp("micro")
    run_snakemake(workdir, CONFIGS / "micro.yaml", "all", *MICRO_EXPORTS)
    return workdir


@pytest.fixture(scope="session")
def micro_report(micro_run, tmp_path_factory):
    """``snakemake --report`` of the micro run, written beside it, not into it."""
    report = tmp_path_factory.mktemp("micro_report") / "report.html"
    run_snakemake(micro_run, CONFIGS / "micro.yaml", "--report", str(report))
    return report


# The exports of the micro run that test_export reads: one run of each method, of the
# objects experiment only (an export job costs a model load).
MICRO_EXPORTS = [
    f"results/micro_objects/{method}/order0_seed0/export" for method in ("naive", "ortho_init", "merge_and_init", "magmax")
]
