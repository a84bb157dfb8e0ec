"""The LPIPS accumulator that keeps its sums on the device (torch, here on CPU tensors) against the numpy one.

Its per-group sums are bitwise the numpy accumulator's (cast, shift subtraction and additions are single
correctly rounded operations, in the same order); only ``sum ||x - shift||^2`` is reduced in another order.
Each route's ``Q`` (a sum of non-negative terms, ``K = dim + n + groups`` roundings deep) is within
``gamma_K * S`` of the exact value, ``S`` the sum of all squared shifted norms; the shared ``||T||^2 / m`` is
bitwise equal; so each mean ``2 (Q - ||T||^2 / m) / (m - 1)`` differs by at most
``2 / (m - 1) * (2 gamma_K + 2 u) S`` plus the final roundings (``8 u |mean|``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tolerances import EPS64, gamma

from emogen_bench.cache import FeatureCache
from emogen_bench.features.lpips_accumulator import DeviceAccumulator
from emogen_bench.metrics.intervals import group_ids
from emogen_bench.metrics.pairwise import PairwiseAccumulator, PairwiseSummary
from emogen_bench.pipeline import _CacheWriter, _LpipsReducer, _Stopwatch

U64 = EPS64 / 2


def rows(n: int, dim: int, offset: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, dim)) * rng.uniform(0.05, 2.0, size=dim) + offset).astype(np.float32)


def bound(x: np.ndarray, groups: int, summary: PairwiseSummary) -> tuple[float, np.ndarray]:
    """The derived bound (module docstring) on |device - numpy| for the mean and each leave-one-group-out mean."""
    n, dim = x.shape
    shifted = x.astype(np.float64) - x[0].astype(np.float64)
    total_squares = float(np.sum(shifted * shifted)) * (1 + 2 * gamma(dim * n, U64))  # S, rounded up
    spread = 2 * (2 * gamma(dim + n + groups, U64) + 2 * U64) * total_squares
    sizes = np.bincount(group_ids(n, groups), minlength=groups)
    remaining = n - sizes

    def one(m: int, mean: float) -> float:
        return np.inf if m < 2 else 2 / (m - 1) * spread + 8 * U64 * abs(mean)

    return one(n, summary.mean), np.array([one(int(m), float(v)) for m, v in zip(remaining, summary.loo)])


@pytest.mark.parametrize(("n", "dim", "groups", "offset", "pieces"), [
    (2, 3, 2, 0.0, [1, 1]),
    (9, 50, 4, 0.0, [3, 1, 5]),
    (31, 700, 20, 25.0, [16, 15]),  # a large common component: the shift by the first row
    (40, 2000, 5, -4.0, [1, 16, 16, 7]),
])
def test_device_sums_are_bitwise_and_the_summary_is_within_the_derived_bound(
    n: int, dim: int, groups: int, offset: float, pieces: list[int]
) -> None:
    x = rows(n, dim, offset, seed=n + dim)
    ids = group_ids(n, groups)
    host, device = PairwiseAccumulator(dim, groups), DeviceAccumulator(dim, groups, "cpu")
    start = 0
    for size in pieces:
        chunk, chunk_ids = x[start : start + size], ids[start : start + size]
        host.add(chunk, chunk_ids)
        device.add(torch.from_numpy(chunk[0] if size == 1 else chunk), chunk_ids[0] if size == 1 else chunk_ids)
        start += size
    assert device.n == host.n == n
    assert np.array_equal(device._sum.numpy(), host._sum)  # bitwise: same roundings in the same order
    want, got = host.summary(), device.summary()
    assert got.n == want.n
    mean_bound, loo_bound = bound(x, groups, want)
    assert abs(got.mean - want.mean) <= mean_bound
    assert mean_bound <= 1e-6 * abs(want.mean)  # the 1e-6 relative, shown to hold here by the bound
    finite = np.isfinite(want.loo)
    assert np.array_equal(np.isfinite(got.loo), finite)
    assert np.all(np.abs(got.loo[finite] - want.loo[finite]) <= loo_bound[finite])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_refused_when_the_summary_is_made(bad: float) -> None:
    x = rows(4, 6, 0.0, seed=1)
    x[2, 3] = bad
    accumulator = DeviceAccumulator(6, 2, "cpu")
    accumulator.add(torch.from_numpy(x), group_ids(4, 2))  # no read-back from the device while adding
    with pytest.raises(ValueError, match="NaN or infinite"):
        accumulator.summary()


def test_rows_not_in_canonical_groups_are_refused() -> None:
    accumulator = DeviceAccumulator(5, 3, "cpu")
    accumulator.add(torch.from_numpy(rows(4, 5, 0.0, seed=2)), np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"not assigned to groups as image i -> i % groups \(group sizes \[4, 0, 0"):
        accumulator.summary()


def test_bad_shapes_and_group_ids_are_refused() -> None:
    accumulator = DeviceAccumulator(5, 3, "cpu")
    with pytest.raises(ValueError, match="expected rows of 5 values"):
        accumulator.add(torch.zeros(2, 4), [0, 1])
    with pytest.raises(ValueError, match="group ids of shape"):
        accumulator.add(torch.zeros(2, 5), [0])
    with pytest.raises(ValueError, match=r"group ids must be in \[0, 3\)"):
        accumulator.add(torch.zeros(1, 5), [3])
    with pytest.raises(ValueError, match="dim >= 1"):
        DeviceAccumulator(0, 3)


def test_the_reducer_on_device_gives_the_cpu_summaries_within_the_bound(tmp_path) -> None:  # noqa: ANN001
    emotions = {"amusement": rows(7, 40, 3.0, seed=3), "awe": rows(5, 40, -1.0, seed=4)}
    positions, start = {}, 0
    for emotion, x in emotions.items():
        positions[emotion] = list(range(start, start + len(x)))
        start += len(x)
    keys = {emotion: f"lpips-{emotion}" for emotion in emotions}
    results = {}
    for device in (None, torch.device("cpu")):
        cache = FeatureCache(tmp_path / str(device), enabled=True)
        writer = _CacheWriter(threaded=True)
        reducer = _LpipsReducer(3, keys, positions, writer, cache, _Stopwatch(), device)
        for emotion, x in emotions.items():
            ps = positions[emotion]
            for cut in range(0, len(ps), 4):  # model chunks of 4
                piece = x[cut : cut + 4].reshape(-1, 5, 8)
                reducer.add(emotion, ps[cut : cut + 4], piece if device is None else torch.from_numpy(piece))
        writer.close()
        assert all(cache.get_summary(keys[e]) == reducer.summaries[e].to_dict() for e in emotions)
        results[device] = reducer.summaries
    for emotion, x in emotions.items():
        want, got = results[None][emotion], results[torch.device("cpu")][emotion]
        mean_bound, loo_bound = bound(x, 3, want)
        assert abs(got.mean - want.mean) <= mean_bound and got.n == want.n
        assert np.all(np.abs(got.loo - want.loo) <= loo_bound)
