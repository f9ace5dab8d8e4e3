"""Pretrained tiny models kept between clones of the project on one machine.

Pretraining the embedded model is the longest job of the default run, and it gives
the same bytes every time for the same settings, code and libraries. So a finished
model is kept in a cache folder outside the clone, under a key made of everything
that determines it, and a later run (a second clone, a fresh ``results/``) copies it
instead of pretraining again. A change to any of those, down to one line of the
package's code, gives another key, hence a new pretraining.

Snakemake's own between-workflow cache (``--cache``) needs a flag and an environment
variable on every command, and keys a script rule by the script alone: the package
code the script calls, which is where the model is made, would not be part of it.

``CONTINUAL_LORA_CACHE`` names the cache folder; ``off`` turns the cache off. By
default it is ``$XDG_CACHE_HOME/continual-lora`` (``~/.cache/continual-lora``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from continual_lora.atomic import atomic_directory

CACHE_ENV = "CONTINUAL_LORA_CACHE"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# Whatever can change the model's bytes besides the package's own code.
_LIBRARIES = ("torch", "diffusers", "transformers", "tokenizers", "numpy", "pillow", "safetensors")


def cache_root() -> Path | None:
    """The cache folder, or None where ``CONTINUAL_LORA_CACHE`` is ``off``."""
    chosen = os.environ.get(CACHE_ENV, "").strip()
    if chosen.lower() == "off":
        return None
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "continual-lora"


def package_digest() -> str:
    """The SHA-256 of every Python file of the package, by path and content."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE_ROOT.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE_ROOT).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def model_key(kind: str, inputs: dict[str, Any]) -> str:
    """The key of a model of ``kind`` made from ``inputs`` (JSON-able) by this code with
    these libraries."""
    identity = {"kind": kind, "inputs": inputs, "code": package_digest(), "libraries": _library_versions()}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def cached_build(
    key: str, out_dir: str | Path, build: Callable[[Path], Any], log: Callable[[str], None] = print
) -> bool:
    """Fill ``out_dir`` with the cached model ``key``, or with ``build(out_dir)`` and
    keep a copy in the cache. True where the cache had it."""
    out_dir = Path(out_dir)
    root = cache_root()
    entry = root / key if root is not None else None
    if entry is not None and entry.is_dir():
        shutil.copytree(entry, out_dir, dirs_exist_ok=True)
        log(f"copied the model from the cache, {entry} ({CACHE_ENV}=off to build it again)")
        return True
    build(out_dir)
    if entry is not None:
        try:
            # Another run may have stored the same key meanwhile; it holds the same bytes.
            if not entry.exists():
                with atomic_directory(entry) as tmp:
                    shutil.copytree(out_dir, tmp, dirs_exist_ok=True)
                log(f"kept a copy in the cache, {entry}")
        except OSError as error:
            log(f"could not keep a copy in the cache {entry}: {error}")
    return False
