"""Fixtures more than one test module uses. Test modules share helpers through the
modules beside this file: snakemake_harness.py (running the Snakefile, reading a dry
run), dataset_fixtures.py (the miniature datasets), tiny_metric_models.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The order in which pytest-xdist hands the test modules to its two workers
    (pyproject.toml: ``-n 2 --dist loadscope --no-loadscope-reorder``; a module's tests
    stay on one worker, so its fixtures are built once). The SLURM cluster's tests go
    first: they spend most of their time waiting for the cluster, which the other
    worker fills. The modules that read the micro run come next, so that the run they
    share (``micro_run``) is built early."""
    items.sort(key=lambda item: (item.get_closest_marker("slurm") is None, "micro_run" not in item.fixturenames))


def built_once(tmp_path_factory, worker_id: str, name: str, build) -> Path:
    """A folder that ``build(folder)`` fills, built once per test session. Under
    pytest-xdist the workers share it: the first to need it builds it, another waits
    for it (the recipe of pytest-xdist's documentation, with a file lock)."""
    if worker_id == "master":  # one process: a folder of its own, as tmp_path_factory makes
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # this session's, above each worker's
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(shared / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed left
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


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
def micro_run(tmp_path_factory, worker_id):
    """The workflow run end to end on tests/configs/micro.yaml: its working directory.
    Read by several modules (test_workflow, test_report, test_export, ...), on either
    worker; never changed (the tests run only dry runs and reports in it)."""
    return built_once(
        tmp_path_factory, worker_id, "micro", lambda workdir: run_snakemake(workdir, CONFIGS / "micro.yaml", "all", *MICRO_EXPORTS)
    )


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
