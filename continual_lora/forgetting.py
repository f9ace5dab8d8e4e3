"""Continual-learning metrics of a score matrix, as the paper defines them (docs/reproduction.md).

``M[i, t]`` is the score on task i (0-based) of the model after task t, defined for
i <= t (entries below are ignored). With T tasks:

- average score      = mean_i M[i, T-1]
- average forgetting = (1/T) * sum_i (max_{t >= i} M[i, t] - M[i, T-1]);
  the last task contributes a zero term. For a metric where lower is better the
  best earlier score is the minimum and the sign flips, so that forgetting stays
  "how much worse than its best" in both cases.
- plasticity         = mean_i M[i, i], how well each task is learnt when it is new.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ContinualScores:
    average_score: float
    average_forgetting: float
    plasticity: float


def continual_scores(matrix: np.ndarray, higher_is_better: bool = True) -> ContinualScores:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"the score matrix must be square and non-empty, not of shape {m.shape}")
    n_tasks = m.shape[0]
    seen = np.triu(np.ones_like(m, dtype=bool))
    if np.isnan(m[seen]).any():
        raise ValueError("the score matrix lacks a score on a task already seen (NaN where i <= t)")
    final = m[:, -1]
    # Orient so that larger is better; forgetting is then best-so-far minus final.
    oriented = m if higher_is_better else -m
    best = np.where(seen, oriented, -np.inf).max(axis=1)
    forgetting = best - (final if higher_is_better else -final)
    return ContinualScores(
        average_score=float(final.mean()),
        average_forgetting=float(forgetting.sum() / n_tasks),
        plasticity=float(np.diag(m).mean()),
    )
