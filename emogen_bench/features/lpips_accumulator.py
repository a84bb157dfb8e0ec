"""LPIPS all-pairs sums kept on the device: the rows (10.6 MB each at 512 px) never come back to the CPU.

:class:`DeviceAccumulator` is :class:`emogen_bench.metrics.pairwise.PairwiseAccumulator` in torch: the same
per-group float64 sums, the same shift by the first row seen, the same order of additions, and the
same :class:`PairwiseSummary` at the end (the sums are copied to the CPU once per emotion and summarised
by the same numpy code).

How close it is to the numpy accumulator: casting float32 to float64, subtracting the shift and adding
into the per-group sums are single correctly rounded IEEE operations on every device, done in the same
order, so the per-group ``sum x`` are bitwise equal.  Only ``||x - shift||^2`` is a reduction whose
order differs (torch's against BLAS' dot); each is within ``gamma_dim`` (``dim * u / (1 - dim * u)``,
``u = 2**-53``) of the exact value, relatively, since the terms are non-negative.  The all-pairs mean is
``2 (S - ||T||^2 / n) / (n - 1)`` with ``S`` the sum of squares; the first row is one of the rows, so
``S <= (n + 1) * spread`` and an error ``e * S`` in ``S`` moves the mean by at most
``(n + 1) * e`` relatively (the same for every leave-one-group-out mean, with its own ``n``).  At
``dim`` = 2.65 M and 10,000 images per emotion that is ``2 * gamma_dim * (n + 1)`` ~ 6e-7 in the worst
case (both sides' errors added); in practice rounding errors cancel and the difference is near 1e-12.

Non-finite rows are refused as by the numpy accumulator, but the check is read back only when the
summary is made (``ValueError`` then), so that adding a batch never waits for the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emogen_bench.metrics.pairwise import PairwiseSummary, summary_from_sums
from emogen_bench.task import METRICS


class DeviceAccumulator:
    """Per-group float64 sums of LPIPS rows on ``device``; rows added in canonical order, as on the CPU."""

    def __init__(self, dim: int, groups: int = METRICS.jackknife_groups, device: str | torch.device = "cpu") -> None:
        if dim < 1 or groups < 1:
            raise ValueError(f"DeviceAccumulator needs dim >= 1 and groups >= 1, got {dim} and {groups}")
        self.dim, self.groups, self.device = dim, groups, torch.device(device)
        self._shift: torch.Tensor | None = None
        self._sum = torch.zeros((groups, dim), dtype=torch.float64, device=self.device)
        self._squares = torch.zeros(groups, dtype=torch.float64, device=self.device)
        self._count = np.zeros(groups, dtype=np.int64)  # known on the host: no read-back needed
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)
        self._row = torch.empty(dim, dtype=torch.float64, device=self.device)

    @property
    def n(self) -> int:
        return int(self._count.sum())

    def add(self, x: torch.Tensor, group_ids: int | Sequence[int] | np.ndarray) -> None:
        """Add one row ``(dim,)`` or a batch ``(b, dim)`` (a tensor on the device) with its group id(s)."""
        rows = x[None] if x.ndim == 1 else x
        ids = np.atleast_1d(np.asarray(group_ids, dtype=np.int64))
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(
                f"DeviceAccumulator.add: expected rows of {self.dim} values, got shape {tuple(rows.shape)}"
            )
        if ids.shape != (rows.shape[0],):
            raise ValueError(f"DeviceAccumulator.add: {rows.shape[0]} rows but group ids of shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.groups):
            raise ValueError(f"DeviceAccumulator.add: group ids must be in [0, {self.groups})")
        rows = rows.to(self.device)
        self._finite &= torch.isfinite(rows).all()
        shifted = self._row
        for row, g in zip(rows, ids.tolist()):
            shifted.copy_(row)  # float32 -> float64 is exact
            if self._shift is None:
                self._shift = shifted.clone()
            shifted.sub_(self._shift)
            self._sum[g] += shifted
            self._squares[g] += torch.dot(shifted, shifted)
            self._count[g] += 1

    def summary(self) -> PairwiseSummary:
        """The same :class:`PairwiseSummary` as the numpy accumulator's (sums copied to the CPU once)."""
        if not bool(self._finite):
            raise ValueError("DeviceAccumulator: features contain NaN or infinite values")
        sums = self._sum.cpu().numpy()
        squares = self._squares.cpu().numpy()
        return summary_from_sums(sums, squares, self._count, "DeviceAccumulator.summary")
