"""How the task updates of one run relate: sign conflicts and norm ratios between the
updates ``scale * B @ A`` of its task adapters. continual_lora.figures draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Adapter = Mapping[str, tuple[Any, Any]]


def _as_float64(tensor: Any) -> np.ndarray:
    # detach/cpu/double first: numpy cannot read a bf16 or GPU torch tensor directly.
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu().double().numpy()
    return np.asarray(tensor, dtype=np.float64)


def _scales(scale: float | Sequence[float], n_tasks: int) -> list[float]:
    if np.ndim(scale) == 0:
        return [float(scale)] * n_tasks
    scales = [float(s) for s in scale]
    if len(scales) != n_tasks:
        raise ValueError(f"{len(scales)} scales for {n_tasks} adapters")
    return scales


def _shared_modules(adapters: Sequence[Adapter]) -> list[str]:
    if not adapters:
        raise ValueError("no adapters to compare")
    modules = sorted(adapters[0])
    for t, adapter in enumerate(adapters[1:], start=2):
        if sorted(adapter) != modules:
            raise ValueError(f"adapter {t} targets other modules than adapter 1")
    return modules


def _task_update(factors: tuple[Any, Any], scale: float) -> np.ndarray:
    a, b = factors
    return scale * (_as_float64(b) @ _as_float64(a))


def sign_conflicts(adapters: Sequence[Adapter], scale: float | Sequence[float]) -> np.ndarray:
    """``C[i, j]``: share of all targeted weight elements whose task-i and task-j updates
    (``scale * B @ A``) have strictly opposite signs; symmetric, zero diagonal.

    ``scale`` is alpha / r, one for all tasks or one per task. Works one module at a
    time, so only T updates of a single module are ever in memory.
    """
    modules = _shared_modules(adapters)
    scales = _scales(scale, len(adapters))
    n_tasks = len(adapters)
    opposite = np.zeros((n_tasks, n_tasks))
    n_elements = 0
    for module in modules:
        signs = np.stack([np.sign(_task_update(adapter[module], s)).ravel() for adapter, s in zip(adapters, scales)])
        # With signs in {-1, 0, 1}: both-nonzero = agree + oppose and s_i . s_j = agree - oppose.
        nonzero = np.abs(signs)
        opposite += (nonzero @ nonzero.T - signs @ signs.T) / 2
        n_elements += signs.shape[1]
    conflicts = opposite / n_elements
    np.fill_diagonal(conflicts, 0.0)
    return conflicts


def update_norms(adapters: Sequence[Adapter], scale: float | Sequence[float]) -> np.ndarray:
    """Frobenius norm over all modules of each task's update ``scale * B @ A``."""
    modules = _shared_modules(adapters)
    scales = _scales(scale, len(adapters))
    norms = []
    for adapter, s in zip(adapters, scales):
        squared = 0.0
        for module in modules:
            a, b = (_as_float64(f) for f in adapter[module])
            # ||B A||_F^2 = tr((B^T B)(A A^T)): r x r products instead of the full out x in update.
            squared += s * s * float(np.sum((b.T @ b) * (a @ a.T)))
        norms.append(np.sqrt(max(squared, 0.0)))
    return np.array(norms)


def update_norm_ratio(adapters: Sequence[Adapter], scale: float | Sequence[float]) -> np.ndarray:
    """``R[i, j] = ||delta_i|| / ||delta_j||`` over all modules; ones on the diagonal."""
    norms = update_norms(adapters, scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        return norms[:, None] / norms[None, :]
