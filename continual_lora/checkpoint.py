"""The checkpoint contract of one trained task, and reading it back.

``{task}/checkpoint/`` holds:

- ``handoff.safetensors``: exactly what the method passes to the next task;
- ``task_lora.safetensors``: this task's trained adapter (analysis only);
- ``init_lora.safetensors``: that adapter before its first step;
- ``meta.json``: what was trained, how, and with which software.

Every safetensors file carries ``format`` (``adapter`` or ``delta``) and ``scale``
(alpha / r) in its metadata, so turning a handoff into the model's weight update
needs nothing but the file itself.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from continual_lora.lora import Factors, Tensors, factor_deltas, factors_to_state, state_to_factors
from continual_lora.methods._shared import state_deltas

HANDOFF = "handoff.safetensors"
TASK_LORA = "task_lora.safetensors"
INIT_LORA = "init_lora.safetensors"
META = "meta.json"
CHECKPOINT_FILES = (HANDOFF, TASK_LORA, INIT_LORA, META)


@dataclass
class StoredTensors:
    tensors: Tensors
    format: str
    scale: float
    metadata: dict[str, str]

    def model_delta(self) -> Tensors:
        """W - W0 per module for the model this file describes."""
        if self.format == "adapter":
            return factor_deltas(state_to_factors(self.tensors), self.scale)
        if self.format == "delta":
            return state_deltas(self.tensors)
        raise ValueError(f"unknown tensor-file format {self.format!r}")

    def factors(self) -> Factors:
        if self.format != "adapter":
            raise ValueError("only an adapter file holds LoRA factors")
        return state_to_factors(self.tensors)


def _temporary_prefix(path: Path) -> str:
    # Hidden and marked, so that nothing reads a half-written output as a finished one.
    return f".{path.name}.tmp-"


def _clear_leftovers(path: Path) -> None:
    """Remove what a killed writer of ``path`` left beside it.

    Only one job ever writes a given output (Snakemake's lock and its graph see to
    that), so a temporary sibling that exists when the next writer starts is litter.
    """
    for leftover in path.parent.glob(f"{glob.escape(_temporary_prefix(path))}*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: Path, path: Path, mode: int) -> None:
    # mkstemp and mkdtemp make private (0600, 0700) entries; a finished output gets the
    # permissions a plain open() or mkdir() would have given it.
    tmp.chmod(mode & ~_umask())
    os.replace(tmp, path)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed into place only when the
    block completes, so an interrupted job never leaves a file that looks complete.

    The temporary name keeps ``path``'s suffix, for writers that pick the format
    from it (PIL, matplotlib).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=path.suffix)
    os.close(handle)
    tmp = Path(tmp)
    try:
        yield tmp
        _publish(tmp, path, 0o666)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; it becomes ``path`` only when the
    block completes, so a folder of outputs (samples, figures, a model) is either
    all there or absent. A ``path`` already there is replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path)))
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        _publish(tmp, path, 0o777)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_tensors(path: str | Path, tensors: Tensors, fmt: str, scale: float, **metadata: str) -> None:
    meta = {"format": fmt, "scale": repr(float(scale)), **{k: str(v) for k, v in metadata.items()}}
    with atomic_output(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in sorted(tensors.items())}, str(tmp), metadata=meta)


def save_adapter(path: str | Path, factors: Factors, scale: float, **metadata: str) -> None:
    save_tensors(path, factors_to_state(factors), "adapter", scale, **metadata)


def load_tensors(path: str | Path) -> StoredTensors:
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    if "format" not in metadata or "scale" not in metadata:
        raise ValueError(f"{path} is not a checkpoint file of this pipeline (no format/scale metadata)")
    return StoredTensors(tensors, metadata["format"], float(metadata["scale"]), metadata)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
