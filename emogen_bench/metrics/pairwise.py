"""Exact mean squared distance over all distinct pairs, from streaming sums.

For vectors ``x_1..x_n``: ``sum_{i,j} ||x_i - x_j||^2 = 2 n sum_i ||x_i - mean||^2``,
so the mean over the ``n (n - 1)`` ordered distinct pairs is
``2 * sum over coordinates of the unbiased variance``.  That needs only
``n``, ``sum x`` and ``sum ||x||^2``: every pair is counted, nothing is sampled,
no ``N x N`` matrix is formed, and the cost is one pass over the images.  LPIPS
and Sem-D are both such means (LPIPS in its weight-scaled feature space).

Streaming sums are kept per jackknife group, so "all pairs without group g"
is a subtraction.  Memory is ``groups x dim`` float64: for LPIPS at 512x512
(dim ~2.65M) and 20 groups, about 424 MB, held for one emotion at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.fid import feature_matrix
from emogen_bench.metrics.intervals import group_sizes, jackknife_interval
from emogen_bench.task import METRICS


def mean_pairwise_sq_distance(x: np.ndarray) -> float:
    """Mean of ``||x_i - x_j||^2`` over all distinct pairs of the rows of ``x`` (n >= 2), float64."""
    array = feature_matrix(x, "mean_pairwise_sq_distance")
    n = array.shape[0]
    if n < 2:
        raise ValueError(f"a pairwise mean needs at least 2 vectors, got {n}")
    centred = array - array.mean(axis=0)
    return 2.0 * float(np.einsum("ij,ij->", centred, centred)) / (n - 1)


def _pair_mean(n: int, total: np.ndarray, squares: float) -> float:
    """All-pairs mean from ``n``, ``sum x`` and ``sum ||x||^2``; NaN when n < 2 (no pairs)."""
    if n < 2:
        return float("nan")
    spread = squares - float(total @ total) / n
    return 2.0 * max(spread, 0.0) / (n - 1)


@dataclass(frozen=True, eq=False)
class PairwiseSummary:
    """What a diversity metric keeps per emotion: the all-pairs mean, its jackknife replicates, n.

    ``loo[g]`` is the mean without jackknife group ``g`` (groups assigned as
    image ``i % len(loo)`` in canonical order; an empty group gives ``mean``,
    NaN where fewer than 2 images would remain).  Small and JSON-able
    (:meth:`to_dict`), so it can be cached without the big sums.
    """

    mean: float
    loo: np.ndarray
    n: int

    @property
    def groups(self) -> int:
        return int(len(self.loo))

    def scaled(self, factor: float) -> PairwiseSummary:
        """The same summary with every mean multiplied by ``factor`` (e.g. 1/dim for an MSE)."""
        return PairwiseSummary(self.mean * factor, np.asarray(self.loo) * factor, self.n)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; NaN replicates become ``None``."""
        loo = [None if not np.isfinite(v) else float(v) for v in np.asarray(self.loo, dtype=np.float64)]
        return {"mean": float(self.mean), "loo": loo, "n": int(self.n)}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> PairwiseSummary:
        """Inverse of :meth:`to_dict`."""
        loo = np.array([np.nan if v is None else float(v) for v in document["loo"]], dtype=np.float64)
        return cls(float(document["mean"]), loo, int(document["n"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PairwiseSummary):
            return NotImplemented
        return (
            self.mean == other.mean
            and self.n == other.n
            and np.array_equal(np.asarray(self.loo), np.asarray(other.loo), equal_nan=True)
        )


class PairwiseAccumulator:
    """Streaming per-group sums for the exact all-pairs mean of squared distances.

    Rows are added one at a time in the order given (canonical order), in
    float64, so the sums do not depend on how rows were batched.  Every row is
    shifted by the first row seen: distances are unchanged and
    ``sum ||x||^2 - ||sum x||^2 / n`` does not cancel when the features share a
    large common component.
    """

    def __init__(self, dim: int, groups: int = METRICS.jackknife_groups) -> None:
        if dim < 1 or groups < 1:
            raise ValueError(f"PairwiseAccumulator needs dim >= 1 and groups >= 1, got {dim} and {groups}")
        self.dim = dim
        self.groups = groups
        self._shift: np.ndarray | None = None
        self._sum = np.zeros((groups, dim), dtype=np.float64)
        self._squares = np.zeros(groups, dtype=np.float64)
        self._count = np.zeros(groups, dtype=np.int64)
        self._row = np.empty(dim, dtype=np.float64)  # one shifted row, reused: no allocation per image
        self._finite = np.empty(dim, dtype=bool)

    @property
    def n(self) -> int:
        return int(self._count.sum())

    def add(self, x: np.ndarray, group_ids: int | np.ndarray) -> None:
        """Add one row ``(dim,)`` or a batch ``(b, dim)`` with its jackknife group id(s)."""
        rows = np.asarray(x)
        rows = rows[None] if rows.ndim == 1 else rows
        ids = np.atleast_1d(np.asarray(group_ids, dtype=np.int64))
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"PairwiseAccumulator.add: expected rows of {self.dim} values, got shape {rows.shape}")
        if ids.shape != (rows.shape[0],):
            raise ValueError(f"PairwiseAccumulator.add: {rows.shape[0]} rows but group ids of shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.groups):
            raise ValueError(f"PairwiseAccumulator.add: group ids must be in [0, {self.groups})")
        shifted = self._row
        for row, g in zip(rows, ids):
            np.copyto(shifted, row, casting="unsafe")  # float32 -> float64 is exact
            if not np.isfinite(shifted, out=self._finite).all():
                raise ValueError("PairwiseAccumulator.add: features contain NaN or infinite values")
            if self._shift is None:
                self._shift = shifted.copy()
            np.subtract(shifted, self._shift, out=shifted)
            self._sum[g] += shifted
            self._squares[g] += float(shifted @ shifted)
            self._count[g] += 1

    def mean(self) -> float:
        """Exact mean of ``||x_i - x_j||^2`` over all distinct pairs added so far (needs n >= 2)."""
        return sums_mean(self._sum, self._squares, self._count)

    def leave_one_group_out(self) -> np.ndarray:
        """``(groups,)``: the exact all-pairs mean without each group (see :class:`PairwiseSummary`)."""
        return sums_leave_one_group_out(self._sum, self._squares, self._count)

    def summary(self) -> PairwiseSummary:
        """The small per-emotion result; requires the canonical group assignment ``i % groups``."""
        return summary_from_sums(self._sum, self._squares, self._count, "PairwiseAccumulator.summary")


def sums_mean(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> float:
    """The all-pairs mean from per-group ``sums`` ``(groups, dim)``, ``squares`` and ``counts`` (needs n >= 2)."""
    n = int(counts.sum())
    if n < 2:
        raise ValueError(f"a pairwise mean needs at least 2 vectors, got {n}")
    return _pair_mean(n, sums.sum(axis=0), float(squares.sum()))


def sums_leave_one_group_out(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(groups,)``: the all-pairs mean without each group, from the same per-group sums."""
    total, all_squares, n = sums.sum(axis=0), float(squares.sum()), int(counts.sum())
    return np.array(
        [
            _pair_mean(n - int(counts[g]), total - sums[g], all_squares - float(squares[g]))
            for g in range(len(counts))
        ]
    )


def summary_from_sums(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray, who: str) -> PairwiseSummary:
    """The :class:`PairwiseSummary` of per-group float64 sums (shared by the numpy and the device accumulator).

    ``who`` names the caller in the error raised when the group sizes are not those of ``i % groups``.
    """
    n = int(counts.sum())
    if not np.array_equal(counts, group_sizes(n, len(counts))):
        raise ValueError(
            f"{who}: rows were not assigned to groups as image i -> i % groups (group sizes {counts.tolist()})"
        )
    return PairwiseSummary(sums_mean(sums, squares, counts), sums_leave_one_group_out(sums, squares, counts), n)


def diversity_values(
    summaries: Mapping[str, PairwiseSummary], *, level: float = METRICS.ci_level
) -> tuple[MetricValue, dict[str, MetricValue]]:
    """Per-scope all-pairs means with jackknife intervals, and their mean over scopes.

    The overall jackknife removes group ``g`` from every scope at once, so its
    replicates are the means over scopes of the per-scope replicates.
    """
    if not summaries:
        raise ValueError("diversity needs at least one emotion")
    groups = {s.groups for s in summaries.values()}
    if len(groups) != 1:
        raise ValueError(f"all emotions must use the same number of jackknife groups, got {sorted(groups)}")
    (count,) = groups
    per_scope: dict[str, MetricValue] = {}
    for name, s in summaries.items():
        present = group_sizes(s.n, count) > 0
        per_scope[name] = MetricValue(float(s.mean), jackknife_interval(s.mean, s.loo, level, present=present), s.n)
    value = float(np.mean([s.mean for s in summaries.values()]))
    loo = np.mean([np.asarray(s.loo, dtype=np.float64) for s in summaries.values()], axis=0)
    present = np.any([group_sizes(s.n, count) > 0 for s in summaries.values()], axis=0)
    n = sum(s.n for s in summaries.values())
    return MetricValue(value, jackknife_interval(value, loo, level, present=present), n), per_scope
