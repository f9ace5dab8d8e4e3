"""Average score, average forgetting and plasticity against hand-computed matrices."""

from __future__ import annotations

import numpy as np
import pytest

from continual_lora.forgetting import continual_scores

NAN = np.nan


def test_three_tasks_by_hand():
    m = np.array(
        [
            [0.8, 0.6, 0.5],
            [NAN, 0.9, 0.7],
            [NAN, NAN, 0.6],
        ]
    )
    scores = continual_scores(m)
    assert scores.average_score == pytest.approx((0.5 + 0.7 + 0.6) / 3)
    # task 0: best 0.8, final 0.5 -> 0.3; task 1: 0.9 - 0.7 = 0.2; task 2: 0
    assert scores.average_forgetting == pytest.approx((0.3 + 0.2 + 0.0) / 3)
    assert scores.plasticity == pytest.approx((0.8 + 0.9 + 0.6) / 3)


def test_the_best_score_may_come_after_the_task_and_ties_forget_nothing():
    m = np.array(
        [
            [0.4, 0.7, 0.7],  # improves after its task, ends at its best (a tie)
            [NAN, 0.5, 0.5],
            [NAN, NAN, 0.9],
        ]
    )
    scores = continual_scores(m)
    assert scores.average_forgetting == 0.0
    assert scores.average_score == pytest.approx((0.7 + 0.5 + 0.9) / 3)


def test_entries_below_the_diagonal_are_ignored():
    m = np.array([[0.8, 0.6], [99.0, 0.9]])
    scores = continual_scores(m)
    assert scores.average_forgetting == pytest.approx(0.2 / 2)
    assert scores.average_score == pytest.approx((0.6 + 0.9) / 2)


def test_lower_is_better_flips_the_sign():
    m = np.array(
        [
            [0.10, 0.30, 0.25],  # best (lowest) 0.10, final 0.25 -> forgot 0.15
            [NAN, 0.20, 0.10],  # improved: best 0.10 is the final -> 0
            [NAN, NAN, 0.40],
        ]
    )
    scores = continual_scores(m, higher_is_better=False)
    assert scores.average_forgetting == pytest.approx(0.15 / 3)
    assert scores.average_score == pytest.approx((0.25 + 0.10 + 0.40) / 3)
    # the same matrix read as higher-is-better forgets differently
    assert continual_scores(m).average_forgetting == pytest.approx((0.30 - 0.25 + 0.20 - 0.10) / 3)


def test_a_single_task_forgets_nothing():
    scores = continual_scores(np.array([[0.42]]))
    assert scores == type(scores)(average_score=0.42, average_forgetting=0.0, plasticity=0.42)


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.zeros((0, 0)), np.array([[0.5, NAN], [NAN, 0.4]])])
def test_malformed_matrices_are_refused(bad):
    with pytest.raises(ValueError):
        continual_scores(bad)
