"""PairwiseAccumulator reuses one float64 row buffer: its sums and summaries are bitwise those of the
algorithm before the change (a fresh float64 row per image), kept here as the reference."""

from __future__ import annotations

import numpy as np
import pytest

from emogen_bench.metrics.intervals import group_ids
from emogen_bench.metrics.pairwise import PairwiseAccumulator, PairwiseSummary, _pair_mean


class ReferenceAccumulator:
    """git 4069a9e's PairwiseAccumulator.add / mean / leave_one_group_out, copied verbatim in substance."""

    def __init__(self, dim: int, groups: int) -> None:
        self.groups = groups
        self.shift: np.ndarray | None = None
        self.sum = np.zeros((groups, dim), dtype=np.float64)
        self.squares = np.zeros(groups, dtype=np.float64)
        self.count = np.zeros(groups, dtype=np.int64)

    def add(self, rows: np.ndarray, ids: np.ndarray) -> None:
        rows = rows[None] if rows.ndim == 1 else rows
        for row, g in zip(rows, np.atleast_1d(ids)):
            shifted = np.asarray(row, dtype=np.float64)
            if not np.all(np.isfinite(shifted)):
                raise ValueError("features contain NaN or infinite values")
            if self.shift is None:
                self.shift = shifted.copy()
            shifted = shifted - self.shift
            self.sum[g] += shifted
            self.squares[g] += float(shifted @ shifted)
            self.count[g] += 1

    def summary(self) -> PairwiseSummary:
        n = int(self.count.sum())
        total, squares = self.sum.sum(axis=0), float(self.squares.sum())
        loo = np.array([_pair_mean(n - int(self.count[g]), total - self.sum[g], squares - float(self.squares[g]))
                        for g in range(self.groups)])
        return PairwiseSummary(_pair_mean(n, total, squares), loo, n)


def feed(accumulator: PairwiseAccumulator | ReferenceAccumulator, x: np.ndarray, ids: np.ndarray,
         splits: list[int]) -> None:
    """Add ``x`` in the pieces cut at ``splits`` (a split of width 1 is added as a single ``(dim,)`` row)."""
    for piece, piece_ids in zip(np.split(x, splits), np.split(ids, splits)):
        if len(piece) == 1:
            accumulator.add(piece[0], int(piece_ids[0]))
        elif len(piece):
            accumulator.add(piece, piece_ids)


@pytest.mark.parametrize(("n", "dim", "groups", "offset", "dtype"), [
    (2, 1, 2, 0.0, np.float32),
    (7, 33, 3, 0.0, np.float32),
    (23, 257, 5, 40.0, np.float32),  # a large common component: the shift by the first row matters
    (40, 1000, 20, -3.0, np.float32),
    (11, 64, 4, 1e3, np.float64),
])
def test_buffered_add_is_bitwise_the_old_algorithm(n: int, dim: int, groups: int, offset: float, dtype: type) -> None:
    rng = np.random.default_rng(n * 1000 + dim)
    x = (rng.standard_normal((n, dim)) * rng.uniform(0.01, 3.0, size=dim) + offset).astype(dtype)
    ids = group_ids(n, groups)
    splits = sorted({int(s) for s in rng.integers(1, n, size=min(4, n - 1))})
    new, old = PairwiseAccumulator(dim, groups), ReferenceAccumulator(dim, groups)
    feed(new, x, ids, splits)
    feed(old, x, ids, splits)
    assert np.array_equal(new._sum, old.sum) and np.array_equal(new._squares, old.squares)
    got, want = new.summary(), old.summary()
    assert got.mean == want.mean and got.n == want.n == n
    assert np.array_equal(got.loo, want.loo, equal_nan=True)
    assert new.mean() == want.mean and np.array_equal(new.leave_one_group_out(), want.loo, equal_nan=True)


def test_the_reused_buffer_leaves_the_callers_rows_and_the_shift_alone() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 9)).astype(np.float32)
    kept = x.copy()
    accumulator = PairwiseAccumulator(9, 3)
    accumulator.add(x, group_ids(6, 3))
    assert np.array_equal(x, kept)
    assert accumulator._shift is not None and np.array_equal(accumulator._shift, x[0].astype(np.float64))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_still_refused(bad: float) -> None:
    x = np.ones((3, 4), dtype=np.float32)
    x[2, 1] = bad
    accumulator = PairwiseAccumulator(4, 2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        accumulator.add(x, np.array([0, 1, 0]))
    assert accumulator.n == 2  # the rows before the bad one were added, as before
