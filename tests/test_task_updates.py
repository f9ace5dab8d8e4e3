"""Sign conflicts and norm ratios between task updates, against counts by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from continual_lora import task_updates


def _factors(a, b):
    return torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)


# delta = B @ A. Module "m" is 2x2, module "n" 1x1: five weights in all.
# task 1: m = [[1, 1], [-1, -1]], n = [[2]]
# task 2: m = [[1, -1], [1, -1]], n = [[0]]   (a zero update conflicts with nothing)
# task 3: the negation of task 1
TASK1 = {"m": _factors([[1, 1]], [[1], [-1]]), "n": _factors([[1]], [[2]])}
TASK2 = {"m": _factors([[1, -1]], [[1], [1]]), "n": _factors([[0]], [[5]])}
TASK3 = {"m": _factors([[-1, -1]], [[1], [-1]]), "n": _factors([[-1]], [[2]])}
HAND_CONFLICTS = np.array(
    [
        [0.0, 2 / 5, 5 / 5],  # 1 vs 2: two of m's four elements; 1 vs 3: every element
        [2 / 5, 0.0, 2 / 5],  # 2 vs 3: two of m's; n's zero update counts for nothing
        [5 / 5, 2 / 5, 0.0],
    ]
)


def test_sign_conflicts_by_hand():
    conflicts = task_updates.sign_conflicts([TASK1, TASK2, TASK3], scale=0.5)
    np.testing.assert_allclose(conflicts, HAND_CONFLICTS)
    np.testing.assert_array_equal(conflicts, conflicts.T)
    np.testing.assert_array_equal(np.diag(conflicts), 0.0)


def test_sign_conflicts_apply_each_tasks_scale():
    # Task 3 as task 1 with a negative scale is the same update as TASK3.
    conflicts = task_updates.sign_conflicts([TASK1, TASK2, TASK1], scale=[1.0, 1.0, -1.0])
    np.testing.assert_allclose(conflicts, HAND_CONFLICTS)
    # A common sign flip changes no pair's agreement.
    np.testing.assert_allclose(task_updates.sign_conflicts([TASK1, TASK2, TASK3], scale=-2.0), HAND_CONFLICTS)


def test_sign_conflicts_require_the_same_modules():
    with pytest.raises(ValueError, match="other modules"):
        task_updates.sign_conflicts([TASK1, {"m": TASK2["m"]}], scale=1.0)


def test_update_norm_ratio_closed_form():
    # ||delta_1||^2 = 4 + 4 = 8, ||delta_2||^2 = 4 + 0 = 4, ||delta_3|| = ||delta_1||; scale cancels.
    ratio = task_updates.update_norm_ratio([TASK1, TASK2, TASK3], scale=0.5)
    r = np.sqrt(8) / 2
    np.testing.assert_allclose(ratio, [[1, r, 1], [1 / r, 1, 1 / r], [1, r, 1]])
    np.testing.assert_allclose(task_updates.update_norms([TASK1, TASK2], scale=0.5), [0.5 * np.sqrt(8), 1.0])


def test_update_norms_match_the_explicit_updates():
    g = torch.Generator().manual_seed(0)
    adapters = [{"q": (torch.randn(3, 7, generator=g), torch.randn(5, 3, generator=g)),
                 "k": (torch.randn(3, 4, generator=g), torch.randn(6, 3, generator=g))} for _ in range(2)]  # fmt: skip
    explicit = [
        np.sqrt(sum(float(((1.5 * b.double() @ a.double()) ** 2).sum()) for a, b in adapter.values()))
        for adapter in adapters
    ]
    np.testing.assert_allclose(task_updates.update_norms(adapters, 1.5), explicit)
