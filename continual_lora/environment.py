"""The software environment a result was made in, written beside the tables.

The same config and seeds give the same numbers only in the same environment: another
release of a library (transformers' image processors, pillow's resampling, numpy) moves
the samples and the scores. So an experiment's tables folder keeps
``environment.txt``: every distribution installed where the tables were made, as
``name==version`` lines that pip takes as constraints (``pip install -c``), headed by
what every checkpoint's ``meta.json`` recorded of the environment it was trained in,
and where the two disagree, and by the machine's processor: the same code and locked
libraries have given other scores on another day's instance of this project's machine
(README, "What the default run shows").
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path


# Left out as pip freeze leaves them out, and the project itself, which pip installs
# from its checkout, not by a version.
NOT_CONSTRAINED = {"pip", "setuptools", "wheel", "distribute", "continual-lora"}


def installed_distributions() -> dict[str, str]:
    """{name: version} of every distribution this interpreter sees, names as published."""
    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name not in versions and _normal(name) not in NOT_CONSTRAINED:
            versions[name] = dist.version
    return dict(sorted(versions.items(), key=lambda kv: kv[0].lower()))


def checkpoint_packages(meta_paths: Iterable[str | Path]) -> dict[tuple[tuple[str, str], ...], list[str]]:
    """The distinct ``packages`` records of the checkpoints, each with the checkpoints
    that carry it (their folders, as given)."""
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for path in meta_paths:
        record = json.loads(Path(path).read_text()).get("packages", {})
        groups.setdefault(tuple(sorted(record.items())), []).append(str(Path(path).parent))
    return groups


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def disagreements(trained_with: dict[str, str], here: dict[str, str]) -> list[str]:
    """The packages a checkpoint was trained with at another version than is installed here."""
    installed = {_normal(name): version for name, version in here.items()}
    installed["python"] = platform.python_version()
    return [
        f"{name} {version} (here {installed.get(_normal(name), 'absent')})"
        for name, version in sorted(trained_with.items())
        if installed.get(_normal(name), "absent") != version
    ]


def processor() -> str:
    """The machine's processor as the record names it: its model, how many logical CPUs
    this process may use, which CPU kernels torch chose, and any CUDA devices."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # Here, not at the top: only the job that writes the record needs torch for this.
    import torch

    text = f"{model}, {cpus} logical CPU(s), torch CPU kernels {torch.backends.cpu.get_cpu_capability()}"
    if torch.cuda.is_available():
        text += "; CUDA: " + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return text


def environment_record(meta_paths: Iterable[str | Path], here: dict[str, str] | None = None) -> str:
    """The text of ``environment.txt``: comments on the checkpoints, then the freeze."""
    here = installed_distributions() if here is None else here
    groups = checkpoint_packages(meta_paths)
    lines = [
        "# The environment these tables were made in: every installed distribution, as pip",
        "# constraints (pip install -c environment.txt ...). Python "
        f"{platform.python_version()} on {platform.system()} {platform.machine()}.",
        f"# Processor: {processor()}.",
    ]
    if not groups:
        lines.append("# No checkpoint: only the base model was scored.")
    elif len(groups) > 1:
        lines.append(f"# The checkpoints were trained in {len(groups)} different environments:")
    for record, folders in groups.items():
        versions = ", ".join(f"{name} {version}" for name, version in record) or "nothing recorded"
        lines.append(f"# {len(folders)} checkpoint(s) trained with {versions}")
        differ = disagreements(dict(record), here)
        if differ:
            lines.append(f"#   differing from this environment: {', '.join(differ)}; e.g. {folders[0]}")
    lines += [f"{name}=={version}" for name, version in here.items()]
    return "\n".join(lines) + "\n"
