"""One GPU per job on a machine with several, without a cluster scheduler.

Snakemake's ``--resources gpu=N`` bounds how many GPU jobs run at once, but says
nothing of which GPU each uses: every job would take cuda:0. So the Snakemake process
lists the machine's GPUs when the workflow loads (``offer``) and each GPU job, before
it touches CUDA, holds one that no other job of this workflow holds (``holding_gpu``)
and sees only that one (``CUDA_VISIBLE_DEVICES``). A GPU is held by an exclusive
``flock`` on a file per GPU: the kernel lets it go when the holder's process ends,
however it ends, so a killed job gives its GPU back. A job that finds every GPU held
waits for one. Under SLURM, where the scheduler gives each job its GPUs, and where no
GPU is listed, nothing changes.

The GPUs are, in order of precedence: ``CONTINUAL_LORA_GPUS`` (a comma-separated list
of CUDA device indexes, e.g. "0,1,2" to leave 3 free; empty for none), the
``CUDA_VISIBLE_DEVICES`` the workflow was started with, or what ``nvidia-smi`` lists.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

GPUS_ENV = "CONTINUAL_LORA_GPUS"
SLOTS_ENV = "CONTINUAL_LORA_GPU_SLOTS"


def _split(listing: str) -> list[str]:
    return [gpu.strip() for gpu in listing.split(",") if gpu.strip()]


def machine_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The CUDA device indexes this machine offers the workflow's jobs."""
    environ = os.environ if environ is None else environ
    for variable in (GPUS_ENV, "CUDA_VISIBLE_DEVICES"):
        if variable in environ:
            return _split(environ[variable])
    nvidia_smi = shutil.which("nvidia-smi", path=environ.get("PATH"))
    if nvidia_smi is None:
        return []
    listed = subprocess.run(
        [nvidia_smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    return _split(listed.stdout.replace("\n", ",")) if listed.returncode == 0 else []


def offer(slots: str | Path) -> list[str]:
    """In the Snakemake process: name the GPUs, and the folder of their lock files, in
    the environment every local job inherits; the GPUs."""
    gpus = machine_gpus()
    os.environ[GPUS_ENV] = ",".join(gpus)
    os.environ[SLOTS_ENV] = str(Path(slots).resolve())
    return gpus


def _try_hold(slots: Path, gpu: str) -> int | None:
    handle = os.open(slots / f"gpu{gpu}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        return None
    return handle


@contextlib.contextmanager
def holding_gpu(log: Callable[[str], None] = print, poll_s: float = 0.2) -> Iterator[str | None]:
    """Hold one offered GPU for the block, seen as the only one (CUDA_VISIBLE_DEVICES);
    the GPU, or None where there is nothing to hold (no GPU offered, or under SLURM).
    Call it before CUDA is initialized: CUDA reads the variable once."""
    listing, slots = os.environ.get(GPUS_ENV), os.environ.get(SLOTS_ENV)
    if "SLURM_JOB_ID" in os.environ or not listing or not slots:
        yield None
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError(
            "CUDA was initialized before this job held a GPU: it would keep the device it "
            "started on; hold the GPU (continual_lora.gpus.holding_gpu) before any CUDA call"
        )
    gpus, folder = _split(listing), Path(slots)
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for gpu in gpus:
            handle = _try_hold(folder, gpu)
            if handle is not None:
                break
        else:
            if not waited:
                log(f"every GPU ({','.join(gpus)}) is held by another job: waiting for one")
                waited = True
            time.sleep(poll_s)
            continue
        break
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    log(f"GPU {gpu} held from {time.time():.6f} (CUDA_VISIBLE_DEVICES={gpu}, pid {os.getpid()})")
    try:
        yield gpu
    finally:
        log(f"GPU {gpu} released at {time.time():.6f}")
        os.close(handle)
