"""The FDDB Hungarian restatement: the spec's suboptimal example and optimality where it holds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from reports.fddb.hungarian import fddb_hungarian


def test_worked_example_is_suboptimal_like_the_c_library() -> None:
    # evaluation_protocols.md B.4: rows = annotations; the C++ output has TPCont 0.626161 here
    ratings = np.array([[0.399521, 0.008203, 0.039592], [0.617958, 0.071060, 0.126923]])
    assignment = fddb_hungarian(ratings)
    assert assignment == [1, 0]
    assert ratings[[0, 1], assignment].sum() == pytest.approx(0.626161, abs=1e-12)
    rows, cols = linear_sum_assignment(ratings, maximize=True)
    assert ratings[rows, cols].sum() == pytest.approx(0.657550, abs=1e-12)


def _random_overlaps(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    values = rng.random((m, n)) * (rng.random((m, n)) < 0.6)
    return np.round(values, int(rng.integers(1, 7)))  # coarse values make ties


def test_square_problems_reach_the_optimum() -> None:
    rng = np.random.default_rng(2024)
    for _ in range(400):
        m = int(rng.integers(1, 7))
        ratings = _random_overlaps(rng, m, m)
        assignment = fddb_hungarian(ratings)
        assert sorted(assignment) == list(range(m))
        rows, cols = linear_sum_assignment(ratings, maximize=True)
        total = ratings[np.arange(m), assignment].sum()
        assert total == pytest.approx(ratings[rows, cols].sum(), abs=1e-12)


def test_rectangular_problems_are_feasible_and_sometimes_suboptimal() -> None:
    rng = np.random.default_rng(7)
    suboptimal = 0
    for _ in range(600):
        m = int(rng.integers(1, 6))
        n = int(rng.integers(m + 1, 8))
        ratings = _random_overlaps(rng, m, n)
        assignment = fddb_hungarian(ratings)
        assert len(set(assignment)) == m and all(0 <= j < n for j in assignment)
        rows, cols = linear_sum_assignment(ratings, maximize=True)
        best = ratings[rows, cols].sum()
        total = ratings[np.arange(m), assignment].sum()
        assert total <= best + 1e-12
        suboptimal += total < best - 1e-12
    assert suboptimal > 0  # not a drop-in for an optimal solver (spec: ~3 % of such cases)


def test_shapes_checked() -> None:
    assert fddb_hungarian(np.zeros((0, 3))) == []
    with pytest.raises(ValueError, match="no more rows than columns"):
        fddb_hungarian(np.ones((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        fddb_hungarian(np.ones(3))


def test_single_row_shortcut_equals_full_procedure() -> None:
    from reports.fddb.hungarian import _single_row, _solve_generic

    rng = np.random.default_rng(9)
    for k in range(3000):
        n = int(rng.integers(1, 9))
        row = _random_overlaps(rng, 1, n)[0]
        if k % 3 == 0:
            row[rng.integers(n)] = row.max() + 1e-16  # a tie within EPS
        if row.max() <= 0:
            continue
        assert _single_row(row.tolist()) == _solve_generic(row[None])[0]
