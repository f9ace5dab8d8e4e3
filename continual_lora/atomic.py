"""Writing a job's outputs so that an interrupted job never leaves one that looks done.

Every output, file or folder, is written under a hidden temporary name beside its
final path and renamed into place when complete (a rename within a folder is
atomic). Kept free of torch and the model libraries, so that the jobs that only
write tables and figures start in a fraction of a second.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """``rows`` under a header of ``columns``, written atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
