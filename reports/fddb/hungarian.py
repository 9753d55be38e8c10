"""The assignment solver of the official FDDB evaluation program, restated step for step.

The FDDB program matches annotations to detections with Brian Gerkey's libhungarian (Kuhn's
method with a nonnegative dual cover), edited for FDDB to use double ratings and a tolerance
``EPS = 1e-15``. That solver is *not* always optimal: on a rectangular problem it stops as soon as
no uncovered cell remains (for example when every row is essential) without forcing the dual of
unassigned columns to zero, so it can end with a feasible but suboptimal assignment
(``../shared/specs/evaluation_protocols.md`` section B.4 gives a 2x3 example). Numbers that agree
with the official program digit for digit therefore need this exact procedure, not an optimal
solver such as ``scipy.optimize.linear_sum_assignment``.

This module restates the procedure in Python: the initial cover (row maxima if their total is
<= the total of the column maxima, else column maxima), the initial stars (row-major or
column-major after the cover choice), routine I (the column-by-column search for an uncovered
1, the alternating sequence, essential rows, augmentation) and routine II (the dual update with
its EPS rules), then the first starred column of each row. Comparisons keep the C semantics,
including the exact ``u == 0`` test and IEEE behaviour on NaN.
"""

from __future__ import annotations

import numpy as np

HUNGARIAN_EPS = 1e-15
_ZERO, _ONE, _STAR = 0, 1, 2  # states of a cell of the Q matrix


class HungarianError(RuntimeError):
    """The solver reached a state where the C program would abort (failed assertion) or loop."""


class _Solver:
    """State of one maximisation problem with m <= n (ratings as nested lists of floats)."""

    def __init__(self, ratings: list[list[float]], m: int, n: int):
        self.r, self.m, self.n = ratings, m, n
        self.u = [0.0] * m
        self.v = [0.0] * n
        self.q = [[_ZERO] * n for _ in range(m)]
        self.ess_rows = [0] * m
        self.ess_cols = [0] * n
        self.rows_won = True

    def make_cover(self) -> None:
        """Initial dual: row maxima or column maxima (maxima start at 0, as calloc does)."""
        r, m, n = self.r, self.m, self.n
        row_max = [0.0] * m
        col_max = [0.0] * n
        row_total = col_total = 0.0
        for i in range(m):
            for j in range(n):
                if r[i][j] > row_max[i]:
                    row_max[i] = r[i][j]
            row_total += row_max[i]
        for j in range(n):
            for i in range(m):
                if r[i][j] > col_max[j]:
                    col_max[j] = r[i][j]
            col_total += col_max[j]
        self.rows_won = row_total <= col_total
        if self.rows_won:
            self.u = row_max
        else:
            self.v = col_max

    def build_q(self) -> None:
        """Mark tight cells 1 (keeping stars); cells that are no longer tight become 0."""
        r, q, u, v = self.r, self.q, self.u, self.v
        for i in range(self.m):
            qi, ri, ui = q[i], r[i], u[i]
            for j in range(self.n):
                if abs(ui + v[j] - ri[j]) < HUNGARIAN_EPS:
                    if qi[j] == _ZERO:
                        qi[j] = _ONE
                else:
                    qi[j] = _ZERO

    def add_stars(self) -> None:
        """Star one 1 per row (row-major) or per column (column-major), as the cover chose."""
        q, m, n = self.q, self.m, self.n
        if self.rows_won:
            for i in range(m):
                for j in range(n):
                    if q[i][j] == _ONE and all(q[k][j] != _STAR for k in range(m) if k != i):
                        q[i][j] = _STAR
                        break
        else:
            for j in range(n):
                for i in range(m):
                    if q[i][j] == _ONE and all(q[i][k] != _STAR for k in range(n) if k != j):
                        q[i][j] = _STAR
                        break

    def _augment(self, seq_i: list[int], seq_j: list[int], k: int) -> None:
        """Toggle the alternating sequence: 1 -> 1*, 1* -> 1 (last element first)."""
        q = self.q
        for t in range(k - 1, -1, -1):
            i, j = seq_i[t], seq_j[t]
            q[i][j] = _STAR if q[i][j] == _ONE else _ONE

    def _search_from(self, i: int, j: int, seq_i: list[int], seq_j: list[int], k: int):
        """Cases 1 and 2 of routine I, started at the uncovered 1 (i, j) recorded as seq[k-1].

        Returns ``(augmented, i, j, k)``: augmented is True after an augmentation; otherwise
        the search backed up to the start and the column search continues at (i, j).
        """
        q, m, n = self.q, self.m, self.n
        while True:  # CASE 1: look in row i for a 1*
            j = 0
            while j < n and q[i][j] != _STAR:
                j += 1
            if j >= n:
                self._augment(seq_i, seq_j, k)
                return True, i, j, k
            i = 0  # CASE 2: a 1* at (i_k, j); search column j for a 1 in a new row
            while True:
                while i < m:
                    if q[i][j] == _ONE and i not in seq_i[:k]:
                        break
                    i += 1
                if i < m:
                    seq_i[k], seq_j[k] = seq_i[k - 1], j
                    seq_i[k + 1], seq_j[k + 1] = i, j
                    k += 2
                    break  # back to CASE 1 with row i
                self.ess_rows[seq_i[k - 1]] = 1  # no 1 in column j: row i_k is essential
                j = seq_j[k - 1]
                i = seq_i[k - 1] + 1
                if k > 1:
                    k -= 2  # delete the last two elements; back to CASE 2
                    continue
                return False, i, j, k - 1  # back to the preliminary search at (i1 + 1, j0)

    def routine_one(self) -> bool:
        """Kuhn's routine I. Returns True to run routine I again, False for routine II."""
        q, m, n = self.q, self.m, self.n
        seq_i = [0] * (m * n + 2)
        seq_j = [0] * (m * n + 2)
        k = 0
        self.ess_rows = [0] * m
        j = 0
        while j < n:
            if any(q[i][j] == _STAR for i in range(m)):
                j += 1  # column j holds a 1*: next column
                continue
            i = 0
            while i < m:  # column j is eligible: search it for a 1
                if q[i][j] != _ONE:
                    i += 1
                    continue
                seq_i[k], seq_j[k] = i, j
                k += 1
                augmented, i, j, k = self._search_from(i, j, seq_i, seq_j, k)
                if augmented:
                    return True  # Alternative Ia
            j += 1
        # Alternative Ib: a column is essential if it holds a 1* of an inessential row
        self.ess_cols = [
            int(any(q[i][j] == _STAR and not self.ess_rows[i] for i in range(m))) for j in range(n)
        ]
        return False

    def _min_uncovered_slack(self) -> float:
        """The slack d of routine II with the FDDB edit's EPS rules (not a plain minimum)."""
        r, u, v = self.r, self.u, self.v
        d = 0.0
        for i in range(self.m):
            if self.ess_rows[i]:
                continue
            for j in range(self.n):
                if self.ess_cols[j]:
                    continue
                dtmp = u[i] + v[j] - r[i][j]
                if dtmp < -HUNGARIAN_EPS:
                    raise HungarianError(f"negative slack {dtmp!r} at ({i}, {j})")
                if abs(d) < HUNGARIAN_EPS or (dtmp > -HUNGARIAN_EPS and dtmp < d):
                    d = dtmp
        if d < -HUNGARIAN_EPS:
            raise HungarianError(f"negative step {d!r}")
        return d

    def routine_two(self) -> bool:
        """Kuhn's routine II. Returns True when done, False to go back to routine I."""
        d = self._min_uncovered_slack()
        if abs(d) < HUNGARIAN_EPS:
            return True
        u, v, m, n = self.u, self.v, self.m, self.n
        ess_rows, ess_cols = self.ess_rows, self.ess_cols
        if any(not ess_rows[i] and u[i] == 0 for i in range(m)):
            step = d  # CASE 2: some free u is 0: step capped by the free v
            for j in range(n):
                if not ess_cols[j] and v[j] < step:
                    step = v[j]
            for i in range(m):
                if ess_rows[i]:
                    u[i] += step
            for j in range(n):
                if not ess_cols[j]:
                    v[j] -= step
        else:
            step = d  # CASE 1: all free u > 0: step capped by the free u
            for i in range(m):
                if not ess_rows[i] and u[i] < step:
                    step = u[i]
            for i in range(m):
                if not ess_rows[i]:
                    u[i] -= step
            for j in range(n):
                if ess_cols[j]:
                    v[j] += step
        for i in range(m):
            for j in range(n):
                if u[i] + v[j] - self.r[i][j] < -HUNGARIAN_EPS:
                    raise HungarianError(f"cover broken at ({i}, {j}) after routine II")
        self.build_q()
        return False

    def assignment(self) -> list[int]:
        """First starred column of each row; raises where the C feasibility check fails."""
        out = []
        for i in range(self.m):
            stars = [j for j in range(self.n) if self.q[i][j] == _STAR]
            if len(stars) != 1:
                raise HungarianError(f"row {i} has {len(stars)} stars: infeasible assignment")
            out.append(stars[0])
        for j in range(self.n):
            if sum(self.q[i][j] == _STAR for i in range(self.m)) > 1:
                raise HungarianError(f"column {j} has more than one star: infeasible assignment")
        return out


def fddb_hungarian(ratings: np.ndarray, max_steps: int | None = None) -> list[int]:
    """Maximum-total-rating assignment as the FDDB program computes it (possibly suboptimal).

    Args:
        ratings: float array (m, n) with m <= n (the caller transposes, as FDDB does), here
            overlap ratios in [0, 1].
        max_steps: bound on routine I/II rounds before giving up (the C code can loop forever
            on degenerate inputs); default ``100 * (m * n + 10)``.

    Returns:
        For each row i, the column assigned to it (every row gets one column).

    Raises:
        ValueError: more rows than columns, or not a 2-D array.
        HungarianError: where the C program would abort or not terminate.
    """
    array = np.asarray(ratings, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"ratings must be 2-D, got shape {array.shape}")
    m, n = array.shape
    if m > n:
        raise ValueError(f"ratings must have no more rows than columns, got {m}x{n}")
    if m == 0:
        return []
    if m == 1 and not np.isnan(array).any():
        return [_single_row(array[0].tolist())]
    return _solve_generic(array, max_steps)


def _single_row(row: list[float]) -> int:
    """The solver's result for one row, without running it.

    With one row the cover is the row maximum u (rows win: the column total is a sum of the
    same nonnegative values), the star goes to the first column with ``|u - r_j| < EPS``, and
    no later step can move it: an augmenting path needs a row without a star, and every dual
    update keeps the starred cell tight. ``tests/reports/test_fddb_hungarian.py`` checks this
    against the full procedure.
    """
    u = 0.0
    for value in row:
        if value > u:
            u = value
    for j, value in enumerate(row):
        if abs(u + 0.0 - value) < HUNGARIAN_EPS:
            return j
    raise HungarianError("a single row without a tight cell (all ratings <= 0)")


def _solve_generic(array: np.ndarray, max_steps: int | None = None) -> list[int]:
    """The full procedure: cover, stars, then routines I and II until done."""
    m, n = array.shape
    solver = _Solver(array.tolist(), m, n)
    solver.make_cover()
    solver.build_q()
    solver.add_stars()
    limit = max_steps if max_steps is not None else 100 * (m * n + 10)
    run_one = True
    for _ in range(limit):
        if run_one:
            run_one = solver.routine_one()
        elif solver.routine_two():
            return solver.assignment()
        else:
            run_one = True
    raise HungarianError(f"no solution after {limit} steps for a {m}x{n} problem")
