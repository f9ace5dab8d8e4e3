"""One GPU per job (continual_lora.gpus): the listing, exclusive holding across
processes, a killed holder's GPU given back, nothing under SLURM; and the micro
workflow on a machine that pretends to have 3 GPUs, read back from its jobs' logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from snakemake_harness import finish_snakemake, start_snakemake

from continual_lora import gpus

CONFIGS = Path(__file__).parent / "configs"
HOLD = """
import sys, time
from continual_lora.gpus import holding_gpu
with holding_gpu(poll_s=0.05) as gpu:
    print("holding", gpu, flush=True)
    time.sleep(float(sys.argv[1]))
"""


def holder(tmp_path: Path, listing: str, seconds: float, **env: str) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    environ |= {gpus.GPUS_ENV: listing, gpus.SLOTS_ENV: str(tmp_path / "slots"), **env}
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(seconds)], env=environ, stdout=subprocess.PIPE, text=True
    )


def held(process: subprocess.Popen) -> str:
    """What the holder printed on taking its GPU (its first line, waited for)."""
    lines = []
    while not any(line.startswith("holding") for line in lines):
        lines.append(process.stdout.readline())
        assert lines[-1], f"the holder ended holding nothing: {lines}"
    return next(line for line in lines if line.startswith("holding")).split()[1]


def test_the_listing_prefers_the_variable_then_cuda_visible_devices_then_nvidia_smi(tmp_path):
    assert gpus.machine_gpus({gpus.GPUS_ENV: "0, 2", "CUDA_VISIBLE_DEVICES": "1"}) == ["0", "2"]
    assert gpus.machine_gpus({gpus.GPUS_ENV: "", "CUDA_VISIBLE_DEVICES": "1"}) == []
    assert gpus.machine_gpus({"CUDA_VISIBLE_DEVICES": "3,1"}) == ["3", "1"]
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n[ "$1" = "--query-gpu=index" ] && printf "0\\n1\\n"\n')
    fake.chmod(0o755)
    assert gpus.machine_gpus({"PATH": str(fake.parent)}) == ["0", "1"]
    assert gpus.machine_gpus({"PATH": str(tmp_path)}) == []  # no nvidia-smi: no GPU


def test_concurrent_holders_never_share_a_gpu_and_a_third_waits_for_one(tmp_path):
    first, second = holder(tmp_path, "0,1", 3), holder(tmp_path, "0,1", 3)
    assert {held(first), held(second)} == {"0", "1"}
    started = time.monotonic()
    third = holder(tmp_path, "0,1", 0)
    taken = held(third)
    assert time.monotonic() - started > 1.0, "the third holder did not wait for a GPU"
    for process in (first, second, third):
        assert process.wait(timeout=30) == 0
    assert taken in {"0", "1"}


def test_a_killed_holder_gives_its_gpu_back(tmp_path):
    victim = holder(tmp_path, "7", 60)
    assert held(victim) == "7"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    started = time.monotonic()
    successor = holder(tmp_path, "7", 0)
    assert held(successor) == "7" and time.monotonic() - started < 20
    assert successor.wait(timeout=30) == 0


def test_under_slurm_or_without_gpus_nothing_is_held(tmp_path, monkeypatch):
    monkeypatch.setenv(gpus.SLOTS_ENV, str(tmp_path / "slots"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    monkeypatch.setenv(gpus.GPUS_ENV, "0,1")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    with gpus.holding_gpu() as gpu:
        assert gpu is None and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv(gpus.GPUS_ENV, "")
    with gpus.holding_gpu() as gpu:
        assert gpu is None and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert not (tmp_path / "slots").exists()


def test_a_job_that_initialized_cuda_before_holding_a_gpu_is_refused(tmp_path, monkeypatch):
    """CUDA reads CUDA_VISIBLE_DEVICES once: a process that already initialized it would
    keep its first device whatever it holds, so holding is refused, and nothing held."""
    monkeypatch.setenv(gpus.SLOTS_ENV, str(tmp_path / "slots"))
    monkeypatch.setenv(gpus.GPUS_ENV, "0,1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # restored after the test, whatever holding sets
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    initialized = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", initialized)
    with pytest.raises(RuntimeError, match="CUDA was initialized before this job held a GPU"):
        with gpus.holding_gpu():
            pass
    assert not (tmp_path / "slots").exists()
    initialized.cuda.is_initialized = lambda: False
    with gpus.holding_gpu() as gpu:
        assert gpu == "0" and os.environ["CUDA_VISIBLE_DEVICES"] == "0"


HELD = re.compile(r"GPU (\S+) held from (\S+) \(CUDA_VISIBLE_DEVICES=(\S+), pid (\d+)\)")
RELEASED = re.compile(r"GPU (\S+) released at (\S+)")


def test_micro_workflow_on_three_pretended_gpus_keeps_each_busy_and_never_shares_one(tmp_path):
    targets = [
        f"results/micro_objects/{method}/order0_seed0/task2/checkpoint/handoff.safetensors"
        for method in ("naive", "merge_and_init", "ortho_init", "magmax")
    ]
    env = {**os.environ, gpus.GPUS_ENV: "0,1,2"}
    env.pop("SLURM_JOB_ID", None)
    log = tmp_path / "snakemake.log"
    process = start_snakemake(tmp_path / "work", CONFIGS / "micro.yaml", *targets, log=log, cores=3, gpu=3, env=env)
    output = finish_snakemake(process, log, timeout=900)
    assert "GPUs for the jobs, one each: 0, 1, 2" in output

    intervals = []  # (gpu, held from, released at, log)
    for job_log in (tmp_path / "work/results/logs").rglob("*.log"):
        text = job_log.read_text()
        holds, releases = HELD.findall(text), RELEASED.findall(text)
        assert len(holds) == len(releases) <= 1, job_log
        if holds:
            (gpu, start, visible, _), (released, end) = holds[0], releases[0]
            assert gpu == visible == released, job_log
            intervals.append((gpu, float(start), float(end), job_log.name))
    # Every GPU job: the pretraining and the 8 training jobs.
    assert sorted(name for *_, name in intervals).count("train_task.log") == 8
    assert any(name == "pretrain_tiny_model.log" for *_, name in intervals)
    assert {gpu for gpu, *_ in intervals} == {"0", "1", "2"}, intervals
    for gpu in ("0", "1", "2"):
        on_it = sorted((start, end) for g, start, end, _ in intervals if g == gpu)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(on_it, on_it[1:])), (gpu, on_it)
    # And jobs did run side by side, on different GPUs.
    assert any(
        a[0] != b[0] and a[1] < b[2] and b[1] < a[2] for a in intervals for b in intervals if a is not b
    ), intervals
