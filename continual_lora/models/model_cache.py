"""Pretrained tiny models kept between clones of the project on one machine.

Pretraining the embedded model is the longest job of the default run, and it gives
the same bytes every time for the same settings, code and libraries. So a finished
model is kept in a cache folder outside the clone, under a key made of everything
that determines it, and a later run (a second clone, a fresh ``results/``) copies it
instead of pretraining again. A change to any of those, down to one statement of the
package code the pretraining runs (every module its entry modules import, found by
reading their import statements), gives another key, hence a new pretraining; a
change to a comment or a docstring does not.

Snakemake's own between-workflow cache (``--cache``) needs a flag and an environment
variable on every command, and keys a script rule by the script alone: the package
code the script calls, which is where the model is made, would not be part of it.

``CONTINUAL_LORA_CACHE`` names the cache folder; ``off`` turns the cache off. By
default it is ``$XDG_CACHE_HOME/continual-lora`` (``~/.cache/continual-lora``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
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


def _module_file(name: str) -> Path | None:
    """The file of the package's module ``name`` (a dotted path), if it is one."""
    parts = name.split(".")
    if parts[0] != _PACKAGE_ROOT.name:
        return None
    folder = _PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (folder / "__init__.py", folder.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path, module: str) -> set[str]:
    """Every module ``path`` (the module ``module``) may import, anywhere in it, and
    every name a ``from X import name`` could mean as a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def source_files(modules: tuple[str, ...]) -> list[Path]:
    """The package's files that importing ``modules`` runs: each module, the packages
    above it, and what they import from the package, transitively."""
    seen: dict[str, Path] = {}
    pending = list(modules)
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            path = _module_file(prefix)
            if path is not None and prefix not in seen:
                seen[prefix] = path
                pending.extend(_imported_names(path, prefix))
    return sorted(set(seen.values()))


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def code_digest(path: Path) -> bytes:
    """The SHA-256 of what the module at ``path`` does: its syntax tree without
    docstrings, so that rewording a comment or a docstring keeps the cached model."""
    tree = _without_docstrings(ast.parse(path.read_text(), filename=str(path)))
    return hashlib.sha256(ast.dump(tree).encode()).digest()


def package_digest(modules: tuple[str, ...]) -> str:
    """The SHA-256 of the package code that importing ``modules`` runs, by path and code."""
    digest = hashlib.sha256()
    for path in source_files(modules):
        digest.update(path.relative_to(_PACKAGE_ROOT).as_posix().encode() + b"\0")
        digest.update(code_digest(path))
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def model_key(kind: str, inputs: dict[str, Any], modules: tuple[str, ...]) -> str:
    """The key of a model of ``kind`` made from ``inputs`` (JSON-able) by the package
    code of ``modules`` (and what they import) with these libraries."""
    identity = {
        "kind": kind,
        "inputs": inputs,
        "code": package_digest(modules),
        "libraries": _library_versions(),
        # ast.dump's text differs between Python versions for the same code.
        "python": ".".join(platform.python_version_tuple()[:2]),
    }
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
