"""Timing and bookkeeping shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class Clock:
    """Wall time of a block, synchronising an accelerator first so that queued
    kernels are counted in the block that launched them."""

    def __init__(self, device=None):
        self.device = device

    def _sync(self):
        if self.device is not None and getattr(self.device, "type", "cpu") == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, into: dict, key: str):
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            into[key] = into.get(key, 0.0) + time.perf_counter() - start


def median_of(runs: list[float]) -> float:
    return statistics.median(runs)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def git_commit() -> str:
    # A copy of the tree without its .git (a lent GPU machine's) is told its commit.
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=False).stdout
        return out.stdout.strip() + ("+uncommitted" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    import torch

    info = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "commit": git_commit(),
        "load_average_start": load_average(),
    }
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def max_rss_bytes() -> int:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_json(path: str | Path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def numbers(payload, prefix: str = ""):
    """Every (dotted key, number) leaf of a nested dict, for checks and summaries."""
    if isinstance(payload, dict):
        for key, value in payload.items():
            yield from numbers(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(payload, (int, float)) and not isinstance(payload, bool):
        yield prefix, payload
