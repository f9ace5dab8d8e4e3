"""The cache of pretrained tiny models: what its key depends on, that a cached model is
the built one byte for byte, and the pretraining rule's use of it."""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

import pytest

from continual_lora import layout
from continual_lora.models import model_cache
from continual_lora.models.model_cache import CACHE_ENV, cache_root, cached_build, model_key
from snakemake_harness import run_snakemake

CONFIGS = Path(__file__).parent / "configs"
REAL_PACKAGE_ROOT = model_cache._PACKAGE_ROOT


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_root() is None
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "continual-lora"


MAKERS = ("continual_lora.models.embedded",)


def test_the_code_of_a_key_is_what_its_modules_import_from_the_package():
    files = {p.relative_to(model_cache._PACKAGE_ROOT).as_posix() for p in model_cache.source_files(MAKERS)}
    # The model's recipe, the synthetic corpus and what both import, the packages above them...
    assert {"models/embedded.py", "models/tiny.py", "models/noising.py", "images.py", "data/sources.py",
            "data/synthetic/drawing.py", "data/synthetic/styles.py", "models/__init__.py", "__init__.py"} <= files
    # ...and nothing that only reads results.
    assert not files & {"figures.py", "reporting.py", "training.py", "scoring/denoise.py"}


@pytest.fixture
def package_copy(monkeypatch, tmp_path) -> Path:
    """A copy of the package that the cache's key reads instead of the real one."""
    copy = tmp_path / "continual_lora"
    shutil.copytree(model_cache._PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(model_cache, "_PACKAGE_ROOT", copy)
    return copy


def test_the_key_changes_with_the_inputs_and_with_any_statement_of_the_code_that_makes_the_model(package_copy):
    key = model_key("tiny", {"settings": {"seed": 0}}, MAKERS)
    assert key == model_key("tiny", {"settings": {"seed": 0}}, MAKERS)
    assert key.startswith("tiny-")
    assert key != model_key("tiny", {"settings": {"seed": 1}}, MAKERS)
    assert key != model_key("other", {"settings": {"seed": 0}}, MAKERS)
    # The package in another folder (another clone) gives the same key.
    with pytest.MonkeyPatch.context() as real:
        real.setattr(model_cache, "_PACKAGE_ROOT", REAL_PACKAGE_ROOT)
        assert model_key("tiny", {"settings": {"seed": 0}}, MAKERS) == key
    with open(package_copy / "figures.py", "a") as source:
        source.write("\nONE_MORE_STATEMENT = 1\n")
    assert model_key("tiny", {"settings": {"seed": 0}}, MAKERS) == key
    with open(package_copy / "data" / "synthetic" / "drawing.py", "a") as source:
        source.write("\nONE_MORE_STATEMENT = 1\n")
    assert model_key("tiny", {"settings": {"seed": 0}}, MAKERS) != key


def test_a_reworded_comment_or_docstring_keeps_the_key_and_a_changed_constant_does_not(package_copy):
    key = model_key("tiny", {"settings": {"seed": 0}}, MAKERS)
    tiny = package_copy / "models" / "tiny.py"
    code = tiny.read_text()
    docstring = '"""What the workflow can tune.'
    assert docstring in code and "pretrain_steps: int = 4000  # UNet steps" in code
    tiny.write_text(
        code.replace(docstring, '"""Reworded: what the workflow can tune.').replace(
            "# UNet steps", "# reworded comment"
        )
    )
    assert model_key("tiny", {"settings": {"seed": 0}}, MAKERS) == key
    tiny.write_text(code.replace("pretrain_steps: int = 4000", "pretrain_steps: int = 4001"))
    assert model_key("tiny", {"settings": {"seed": 0}}, MAKERS) != key
    # A string that is not a docstring is code.
    tiny.write_text(code.replace('BOS_TOKEN = "<|startoftext|>"', 'BOS_TOKEN = "<|start|>"'))
    assert model_key("tiny", {"settings": {"seed": 0}}, MAKERS) != key


def test_a_cached_model_is_the_built_one_and_is_not_built_again(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    builds = []

    def build(out_dir: Path) -> None:
        builds.append(out_dir)
        (out_dir / "unet").mkdir()
        (out_dir / "unet" / "weights.bin").write_bytes(os.urandom(64))
        (out_dir / "stats.json").write_text("{}")

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert cached_build("tiny-k", first, build, log=lambda _: None) is False
    assert cached_build("tiny-k", second, build, log=lambda _: None) is True
    assert len(builds) == 1
    assert _same_tree(first, second)
    assert _same_tree(first, tmp_path / "cache" / "tiny-k")
    # Nothing half-written is left beside the entry.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["tiny-k"]

    monkeypatch.setenv(CACHE_ENV, "off")
    third = tmp_path / "third"
    third.mkdir()
    assert cached_build("tiny-k", third, build, log=lambda _: None) is False
    assert len(builds) == 2


def test_the_pretraining_rule_copies_a_model_another_clone_pretrained(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    config = CONFIGS / "micro.yaml"
    first, second = tmp_path / "clone1", tmp_path / "clone2"
    for clone in (first, second):
        clone.mkdir()
        run_snakemake(clone, config, "results/models/tiny", cores=1)
    log_file = layout.log(layout.path(layout.TINY_MODEL, model="tiny"), "pretrain_tiny_model")
    log = (second / log_file).read_text()
    assert "copied the model from the cache" in log
    assert "pretraining the tiny model" not in log
    assert "pretraining the tiny model" in (first / log_file).read_text()
    assert _same_tree(first / "results" / "models" / "tiny", second / "results" / "models" / "tiny")
