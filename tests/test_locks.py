"""The locks (envs/cpu.lock.txt, envs/gpu.lock.txt), the conda environment and
pyproject.toml agree, the README installs with the lock, and the environment the tests
run in is the lock's: run after the README's install, as CI runs it, this proves that
the install gives exactly the locked versions."""

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "envs"))
import refresh_locks  # noqa: E402

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
CPU = refresh_locks.read_lock(refresh_locks.CPU_LOCK)
GPU = refresh_locks.read_lock(refresh_locks.GPU_LOCK)
REFRESH = "python3 envs/refresh_locks.py"


def requirements(*extras: str) -> list[Requirement]:
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    return found


def outside(lock: dict[str, str], wanted: list[Requirement]) -> list[str]:
    """The requirements a lock leaves out or pins outside their range."""
    problems = []
    for requirement in wanted:
        version = lock.get(refresh_locks.normal(requirement.name))
        if version is None:
            problems.append(f"{requirement.name} is not locked")
        elif not requirement.specifier.contains(Version(version), prereleases=True):
            problems.append(f"{requirement.name}=={version} is outside pyproject.toml's {requirement.specifier}")
    return problems


def test_the_cpu_lock_pins_every_requirement_of_the_project_and_its_test_extra_within_range():
    problems = outside(CPU, requirements("test", "slurm"))
    assert not problems, f"envs/cpu.lock.txt: {'; '.join(problems)}; run `{REFRESH}`"


def test_the_gpu_lock_pins_every_requirement_of_the_gpu_and_slurm_extras_within_range():
    problems = outside(GPU, requirements("gpu", "slurm"))
    assert not problems, f"envs/gpu.lock.txt: {'; '.join(problems)}; run `{REFRESH}`"


def test_the_two_locks_agree_on_every_package_they_share():
    differ = sorted(f"{n}: cpu {CPU[n]}, gpu {GPU[n]}" for n in CPU.keys() & GPU.keys() if CPU[n] != GPU[n])
    assert not differ, f"the locks disagree: {'; '.join(differ)}"
    # The GPU lock is the CUDA build's: its own libraries beside the shared packages.
    assert "torch" in CPU and "torch" in GPU and set(GPU) - set(CPU), "the GPU lock holds nothing of its own"


def test_locks_pin_public_versions_only():
    # torch==2.13.0 admits the CPU build (2.13.0+cpu) and PyPI's CUDA build alike.
    local = [f"{n}=={v}" for lock in (CPU, GPU) for n, v in lock.items() if "+" in v]
    assert not local, f"a lock pins a local build: {local}"


def test_the_conda_environment_pins_the_locked_versions():
    environment = yaml.safe_load(refresh_locks.CONDA_ENV.read_text())
    conda_to_pip = {conda: pip for pip, conda in refresh_locks.CONDA_NAMES.items()}
    specs = [d for d in environment["dependencies"] if isinstance(d, str)]
    specs += [d for d in environment["dependencies"] if isinstance(d, dict) for d in d.get("pip", [])]
    problems, pinned = [], set()
    for spec in specs:
        name, _, constraint = spec.partition(" ")
        if name in ("python", "pip"):
            continue
        pip_name = refresh_locks.normal(conda_to_pip.get(name, name))
        locked = CPU.get(pip_name) or GPU.get(pip_name)
        pinned.add(pip_name)
        if constraint.strip() != f"=={locked}":
            problems.append(f"{spec!r} (locked: {locked})")
    assert not problems, f"envs/continual_lora.yaml: {', '.join(problems)}; run `{REFRESH}`"
    # Everything the project needs to run is in the conda environment.
    needed = {refresh_locks.normal(r.name) for r in requirements("gpu")} - {"snakemake"}
    assert needed <= pinned, f"envs/continual_lora.yaml lacks {sorted(needed - pinned)}"


def readme_block(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    return re.search(rf"<!-- {marker} -->(.*?)<!-- /{marker} -->", text, re.S).group(1)


@pytest.mark.parametrize("marker", ["run-command", "test-command"])
def test_the_readme_installs_the_project_with_the_cpu_lock(marker):
    block = readme_block(marker)
    installs = re.findall(r"pip install ([^&\n]*-e [^&\n]*)", block)
    assert installs, f"README {marker}: no `pip install ... -e .`"
    assert all("-c envs/cpu.lock.txt" in line for line in installs), f"README {marker}: {installs}"
    torch_pin = re.search(r"pip install torch==(\S+)", block).group(1)
    assert torch_pin == refresh_locks.TORCH == CPU["torch"], "the README's torch, the refresher's and the lock's differ"


def test_the_environment_running_the_tests_is_the_lock():
    """Where the tests run after the README's install (CI), every locked package that is
    installed is at its locked version, and every requirement is installed."""
    installed = {refresh_locks.normal(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differ = sorted(
        f"{name} {installed[name]} (locked {version})"
        for name, version in CPU.items()
        if name in installed and refresh_locks.public(installed[name]) != version
    )
    missing = sorted(r.name for r in requirements("test") if refresh_locks.normal(r.name) not in installed)
    assert not differ and not missing, (
        f"this environment is not envs/cpu.lock.txt's: differing {differ}, missing {missing}; "
        "install with `pip install -c envs/cpu.lock.txt -e '.[test]'`"
    )
