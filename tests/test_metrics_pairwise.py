"""The all-pairs identity, its jackknife, LPIPS and Sem-D diversity against brute force over every pair."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from emogen_bench.metrics.intervals import group_ids, jackknife_interval
from emogen_bench.metrics.lpips import lpips_diversity
from emogen_bench.metrics.pairwise import PairwiseAccumulator, PairwiseSummary, mean_pairwise_sq_distance
from emogen_bench.metrics.sem_d import sem_d


def rows(seed: int, n: int, d: int, offset: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + offset


def brute_pairs(x: np.ndarray) -> float:
    """Mean squared Euclidean distance over every distinct pair, one pair at a time."""
    pairs = list(itertools.combinations(range(len(x)), 2))
    return float(np.mean([np.sum((x[i] - x[j]) ** 2) for i, j in pairs]))


def accumulate(x: np.ndarray, groups: int, batches: list[int] | None = None) -> PairwiseAccumulator:
    accumulator = PairwiseAccumulator(x.shape[1], groups)
    ids = group_ids(len(x), groups)
    edges = [0, *(batches or []), len(x)]
    for start, stop in zip(edges, edges[1:]):
        accumulator.add(x[start:stop], ids[start:stop])
    return accumulator


@pytest.mark.parametrize("n", [2, 3, 7, 40])
def test_variance_identity_equals_every_pair(n: int) -> None:
    x = rows(n, n, 5)
    assert mean_pairwise_sq_distance(x) == pytest.approx(brute_pairs(x), rel=1e-12)
    assert accumulate(x, 4).mean() == pytest.approx(brute_pairs(x), rel=1e-12)


def test_streaming_sums_survive_a_large_common_offset_and_ignore_batching() -> None:
    x = rows(1, 30, 6, offset=1e6)
    by_row = accumulate(x, 4, batches=list(range(1, 30)))
    by_batch = accumulate(x, 4, batches=[7, 8, 20])
    assert by_row.mean() == pytest.approx(brute_pairs(x), rel=1e-9)
    assert by_row.mean() == by_batch.mean()
    np.testing.assert_array_equal(by_row.leave_one_group_out(), by_batch.leave_one_group_out())


@pytest.mark.parametrize(("n", "groups"), [(11, 4), (20, 20), (3, 5)])
def test_leave_one_group_out_equals_brute_force_on_the_rest(n: int, groups: int) -> None:
    x = rows(2, n, 4)
    loo = accumulate(x, groups).leave_one_group_out()
    ids = group_ids(n, groups)
    for g in range(groups):
        rest = x[ids != g]
        assert loo[g] == pytest.approx(brute_pairs(rest), rel=1e-10)


def test_two_images_leave_no_pairs_without_a_group() -> None:
    x = rows(3, 2, 4)
    summary = accumulate(x, 3).summary()
    assert np.isnan(summary.loo[:2]).all() and summary.loo[2] == summary.mean
    assert summary.mean == pytest.approx(brute_pairs(x), rel=1e-12)


def test_summary_round_trips_through_json_and_insists_on_canonical_groups() -> None:
    summary = accumulate(rows(4, 2, 3), 4).summary()
    restored = PairwiseSummary.from_dict(json.loads(json.dumps(summary.to_dict(), allow_nan=False)))
    assert restored == summary and restored.n == 2
    accumulator = PairwiseAccumulator(3, 4)
    accumulator.add(rows(5, 3, 3), [0, 0, 1])
    with pytest.raises(ValueError, match="i % groups"):
        accumulator.summary()


def brute_diversity(by_emotion: dict[str, np.ndarray], groups: int, scale: float = 1.0) -> tuple:
    """Per-emotion brute force, their mean, and the overall jackknife interval from brute-force replicates."""
    per_emotion = {e: brute_pairs(x) * scale for e, x in by_emotion.items()}
    overall = float(np.mean(list(per_emotion.values())))
    replicates = [
        np.mean([brute_pairs(x[group_ids(len(x), groups) != g]) * scale for x in by_emotion.values()])
        for g in range(groups)
    ]
    return per_emotion, overall, jackknife_interval(overall, np.array(replicates))


def test_lpips_diversity_equals_brute_force_per_emotion_and_overall() -> None:
    by_emotion = {"amusement": rows(6, 9, 7), "fear": rows(7, 13, 7, offset=0.5)}
    per_emotion, overall, ci95 = brute_diversity(by_emotion, groups=3)
    accumulators = {e: accumulate(x, 3) for e, x in by_emotion.items()}
    for inputs in (accumulators, {e: a.summary() for e, a in accumulators.items()}):
        result, by = lpips_diversity(inputs)
        assert result.value == pytest.approx(overall, rel=1e-12)
        assert result.ci95 == pytest.approx(ci95, rel=1e-9)
        assert result.n == 22
        assert list(by) == ["amusement", "fear"]
        for emotion, value in by.items():
            assert value.value == pytest.approx(per_emotion[emotion], rel=1e-12)
            assert value.ci95[0] < value.value < value.ci95[1]


def test_sem_d_is_the_all_pairs_mean_squared_error() -> None:
    embeddings = {"awe": rows(8, 12, 16, offset=3.0).astype(np.float32), "sadness": rows(9, 7, 16).astype(np.float32)}
    exact = {e: x.astype(np.float64) for e, x in embeddings.items()}
    per_emotion, overall, ci95 = brute_diversity(exact, groups=4, scale=1 / 16)
    result, by = sem_d(embeddings, groups=4)
    assert result.value == pytest.approx(overall, rel=1e-10)
    assert result.ci95 == pytest.approx(ci95, rel=1e-9)
    mse = np.mean([np.mean((a - b) ** 2) for a, b in itertools.combinations(exact["awe"], 2)])
    assert by["awe"].value == pytest.approx(mse, rel=1e-10)
    assert by["sadness"].value == pytest.approx(per_emotion["sadness"], rel=1e-10)
    assert by["sadness"].n == 7 and result.n == 19


def test_diversity_refuses_mixed_group_counts() -> None:
    with pytest.raises(ValueError, match="jackknife groups"):
        lpips_diversity({"awe": accumulate(rows(10, 5, 2), 2), "fear": accumulate(rows(11, 5, 2), 3)})
