"""`snakemake --lint` finds nothing in the repository's Snakefile, loaded with the
embedded default config.yaml and with a test config.

Snakemake 9.27 prints "Lints for snakefile ..." or "Lints for rule ..." and exits 1 when
it finds anything (an absolute path, a rule without a log directive or a conda
environment, ...), and prints CLEAN and exits 0 when it finds nothing: the test wants
the exit code 0, CLEAN, and no "Lints for". The two lints run side by side, a few
seconds in all.
"""

from __future__ import annotations

import shutil

import pytest
from snakemake_harness import REPO, finish_snakemake, start_snakemake

CLEAN = "Congratulations, your workflow is in a good condition!"
CONFIGS = {"the embedded default config.yaml": None, "tests/configs/micro.yaml": REPO / "tests/configs/micro.yaml"}


@pytest.fixture(scope="module")
def lints(tmp_path_factory):
    """Both lints started at once: config name -> (process, log)."""
    started = {}
    for name, configfile in CONFIGS.items():
        workdir = tmp_path_factory.mktemp("lint")
        if configfile is None:  # the Snakefile reads config.yaml from its working directory
            shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
        log = workdir.parent / f"{workdir.name}.log"
        started[name] = start_snakemake(workdir, configfile, "--lint", log=log, cores=None, gpu=None), log
    yield started
    for process, _ in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("config", list(CONFIGS))
def test_snakemake_lint_finds_nothing(lints, config):
    process, log = lints[config]
    output = finish_snakemake(process, log, timeout=120)  # exit code 0, or the output's tail
    assert CLEAN in output and "Lints for" not in output, output
