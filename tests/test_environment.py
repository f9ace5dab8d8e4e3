"""The environment record of an experiment's tables (continual_lora.environment)."""

import json
import os
import platform
from importlib import metadata

import torch

from continual_lora.environment import environment_record, installed_distributions


def write_meta(folder, packages):
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"task": 1, "packages": packages}))
    return folder / "meta.json"


def test_the_record_is_every_installed_distribution_as_pip_constraints():
    here = installed_distributions()
    record = environment_record([]).splitlines()
    pins = [line for line in record if not line.startswith("#")]
    assert pins == [f"{name}=={version}" for name, version in here.items()]
    assert f"torch=={metadata.version('torch')}" in pins and f"numpy=={metadata.version('numpy')}" in pins
    # Not the project itself (pip installs it from its checkout) nor pip's own tools.
    assert not any(p.split("==")[0].lower() in ("continual-lora", "pip", "setuptools", "wheel") for p in pins)
    assert "# No checkpoint: only the base model was scored." in record


def test_checkpoints_trained_elsewhere_are_named_with_what_differs(tmp_path):
    here = {"torch": "2.13.0+cpu", "numpy": "2.4.6"}
    python = platform.python_version()
    same = {"python": python, "torch": "2.13.0+cpu", "numpy": "2.4.6"}
    other = {"python": python, "torch": "2.12.1", "numpy": "2.4.6"}
    metas = [
        write_meta(tmp_path / "naive/task1", same),
        write_meta(tmp_path / "naive/task2", same),
        write_meta(tmp_path / "magmax/task1", other),
    ]
    record = environment_record(metas, here).splitlines()
    assert "# The checkpoints were trained in 2 different environments:" in record
    assert f"# 2 checkpoint(s) trained with numpy 2.4.6, python {python}, torch 2.13.0+cpu" in record
    assert f"# 1 checkpoint(s) trained with numpy 2.4.6, python {python}, torch 2.12.1" in record
    differing = [line for line in record if "differing" in line]
    assert differing == [f"#   differing from this environment: torch 2.12.1 (here 2.13.0+cpu); e.g. {tmp_path / 'magmax/task1'}"]
    assert record[-2:] == ["torch==2.13.0+cpu", "numpy==2.4.6"]


def test_the_record_names_the_processor_and_the_kernels_torch_chose():
    record = environment_record([]).splitlines()
    line = next(line for line in record if line.startswith("# Processor: "))
    assert f"{len(os.sched_getaffinity(0))} logical CPU(s)" in line
    assert f", torch CPU kernels {torch.backends.cpu.get_cpu_capability()}" in line
    with open("/proc/cpuinfo") as cpuinfo:
        model = next(row.split(":", 1)[1].strip() for row in cpuinfo if row.startswith("model name"))
    assert line.startswith(f"# Processor: {model}, ")
