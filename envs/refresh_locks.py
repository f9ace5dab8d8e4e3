"""Refresh the locks: envs/cpu.lock.txt, envs/gpu.lock.txt and the pins of
envs/continual_lora.yaml, in one command (needs PyPI).

    python3 envs/refresh_locks.py               # the newest releases pyproject.toml allows
    python3 envs/refresh_locks.py --from .venv  # the versions installed in .venv

The CPU lock is every distribution (transitive ones included) that installing the
project with its `test` extra puts into a new virtual environment, after the README's
CPU build of torch; the GPU lock is what pip resolves from PyPI, for Linux on x86_64,
for the project with its `gpu` and `slurm` extras and torch's own CUDA build from PyPI,
with every package the CPU lock holds kept at the CPU lock's version. Both are pip
constraints files (`pip install -c`). Then the conda environment's pins are rewritten
to the same versions. Run the tests afterwards: tests/test_locks.py checks that the
three agree with pyproject.toml and that the running environment is the lock.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ENVS = Path(__file__).resolve().parent
REPO = ENVS.parent
CPU_LOCK = ENVS / "cpu.lock.txt"
GPU_LOCK = ENVS / "gpu.lock.txt"
CONDA_ENV = ENVS / "continual_lora.yaml"
# The CPU build on this project's machines; the README installs it first.
TORCH = "2.13.0"
# conda-forge's names for the pip distributions the conda environment lists.
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
PROJECT = "continual-lora"
PIP_SOURCES = {"PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX"}
HEADER = """# {what}
# Written by `python3 envs/refresh_locks.py{args}`; a pip constraints file:
#   pip install -c envs/{name} ...
# tests/test_locks.py checks it against pyproject.toml and the running environment.
"""


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """The version without its local label: 2.13.0+cpu -> 2.13.0 (== 2.13.0 admits both builds)."""
    return version.split("+", 1)[0]


def read_lock(path: Path) -> dict[str, str]:
    """{normalized name: version} of a constraints file of name==version lines."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normal(name)] = version.strip()
    return pins


def write_lock(path: Path, versions: dict[str, str], what: str, args: str) -> None:
    lines = [f"{name}=={public(version)}" for name, version in sorted(versions.items()) if normal(name) != PROJECT]
    path.write_text(HEADER.format(what=what, args=args, name=path.name) + "\n".join(lines) + "\n")


def freeze(python: Path) -> dict[str, str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json", "--exclude-editable"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    skip = {"pip", "setuptools", "wheel"}
    return {normal(p["name"]): p["version"] for p in json.loads(listing) if normal(p["name"]) not in skip}


def fresh_cpu_environment(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"torch=={TORCH}"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[test]"], check=True)
    return python


def resolve_gpu(cpu: dict[str, str], scratch: Path) -> dict[str, str]:
    """What pip installs from PyPI for the project's requirements with its `gpu` and
    `slurm` extras, on this platform (Linux x86_64: PyPI's torch is a CUDA build)."""
    constraints = scratch / "cpu-public.txt"
    constraints.write_text("".join(f"{name}=={public(v)}\n" for name, v in cpu.items()))
    report = scratch / "report.json"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [*project["dependencies"], *extras["gpu"], *extras["slurm"]]
    # PyPI alone: no pip configuration file, local wheels or other indexes (which may
    # hold a CPU build of torch); certificates and proxies as set.
    env = {k: v for k, v in os.environ.items() if k not in PIP_SOURCES} | {"PIP_CONFIG_FILE": os.devnull}
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), "-c", str(constraints), f"torch=={TORCH}", *requirements],
        check=True, env=env,
    )  # fmt: skip
    installed = json.loads(report.read_text())["install"]
    return {normal(item["metadata"]["name"]): item["metadata"]["version"] for item in installed}


def pin_conda_environment(versions: dict[str, str], gpu: dict[str, str]) -> None:
    """Every `name >=x` or `name ==x` line of the conda environment pinned to the lock."""
    text = CONDA_ENV.read_text()

    def pin(match: re.Match) -> str:
        indent, name = match.group(1), match.group(2)
        pip_name = next((p for p, c in CONDA_NAMES.items() if c == name), name)
        version = versions.get(normal(pip_name)) or gpu.get(normal(pip_name))
        if version is None:
            raise SystemExit(f"{CONDA_ENV.name}: {name} is in no lock")
        return f"{indent}{name} =={public(version)}"

    text = re.sub(r"^(\s*- )(?!python\b)([A-Za-z0-9_.-]+) (?:>=|==)\S+$", pin, text, flags=re.M)
    CONDA_ENV.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", type=Path, help="freeze this virtual environment instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        python = args.source / "bin" / "python" if args.source else fresh_cpu_environment(scratch / "venv")
        cpu = freeze(python)
        gpu = resolve_gpu(cpu, scratch)
    shown = f" --from {args.source}" if args.source else ""
    write_lock(CPU_LOCK, cpu, f"CPU: torch {TORCH} (CPU build), the project and its `test` extra.", shown)
    write_lock(GPU_LOCK, gpu, f"GPU (Linux x86_64, PyPI's CUDA build of torch {TORCH}): the project with its `gpu` and `slurm` extras.", shown)  # fmt: skip
    pin_conda_environment(cpu, gpu)
    print(f"wrote {CPU_LOCK.name} ({len(cpu)} pins), {GPU_LOCK.name} ({len(gpu)} pins), pinned {CONDA_ENV.name}")


if __name__ == "__main__":
    main()
