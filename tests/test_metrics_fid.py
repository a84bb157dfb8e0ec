"""FID against clean-fid's own formula (scipy sqrtm) and against float64 closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from cleanfid.fid import frechet_distance as cleanfid_frechet_distance

from emogen_bench.metrics.fid import (
    FrechetReference,
    GaussianStats,
    StatsAccumulator,
    fid,
    fid_leave_one_group_out,
    frechet_distance,
)
from emogen_bench.metrics.intervals import jackknife_interval


def random_features(seed: int, n: int, d: int, offset: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + rng.normal(size=d) + offset


def random_spd(seed: int, d: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def stats(mu: np.ndarray, sigma: np.ndarray, n: int = 100) -> GaussianStats:
    return GaussianStats(np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64), n)


def sqrt_trace_from_data(x1: np.ndarray, x2: np.ndarray) -> float:
    """tr sqrt(S1 S2) = nuclear norm of A1 A2^T with S = A^T A, A = centred data / sqrt(n - 1)."""
    a1 = (x1 - x1.mean(0)) / np.sqrt(len(x1) - 1)
    a2 = (x2 - x2.mean(0)) / np.sqrt(len(x2) - 1)
    return float(np.linalg.svd(a1 @ a2.T, compute_uv=False).sum())


def closed_form_from_data(x1: np.ndarray, x2: np.ndarray) -> float:
    diff = x1.mean(0) - x2.mean(0)
    traces = np.trace(np.cov(x1, rowvar=False)) + np.trace(np.cov(x2, rowvar=False))
    return float(diff @ diff + traces - 2 * sqrt_trace_from_data(x1, x2))


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")
def test_agrees_with_clean_fid_on_full_rank_statistics() -> None:
    a = GaussianStats.from_features(random_features(0, 300, 24))
    b = GaussianStats.from_features(random_features(1, 250, 24))
    expected = cleanfid_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("n1", "n2", "d"), [(300, 200, 16), (12, 9, 40), (5, 300, 20), (2, 2, 8)])
def test_matches_the_nuclear_norm_closed_form_full_and_low_rank(n1: int, n2: int, d: int) -> None:
    x1, x2 = random_features(2, n1, d), random_features(3, n2, d, offset=0.3)
    value = frechet_distance(GaussianStats.from_features(x1), GaussianStats.from_features(x2))
    assert value == pytest.approx(closed_form_from_data(x1, x2), rel=1e-12)


def test_diagonal_covariances_match_the_closed_form_including_a_singular_one() -> None:
    rng = np.random.default_rng(4)
    a_var, b_var = rng.uniform(0.1, 3.0, 12), rng.uniform(0.1, 3.0, 12)
    a_var[[0, 5]] = 0.0
    mu_a, mu_b = rng.normal(size=12), rng.normal(size=12)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(a_var) - np.sqrt(b_var)) ** 2)
    assert frechet_distance(stats(mu_a, np.diag(a_var)), stats(mu_b, np.diag(b_var))) == pytest.approx(
        expected, rel=1e-12
    )


def test_commuting_covariances_match_the_closed_form() -> None:
    rng = np.random.default_rng(5)
    basis, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    a_eig, b_eig = rng.uniform(0.01, 5.0, 10), rng.uniform(0.01, 5.0, 10)
    a = stats(np.zeros(10), basis @ np.diag(a_eig) @ basis.T)
    b = stats(np.ones(10), basis @ np.diag(b_eig) @ basis.T)
    expected = 10.0 + np.sum((np.sqrt(a_eig) - np.sqrt(b_eig)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_identical_distributions_give_zero_and_a_shift_gives_its_squared_norm() -> None:
    sigma = random_spd(6, 32)
    mu = np.random.default_rng(7).normal(size=32)
    shift = np.random.default_rng(8).normal(size=32)
    assert abs(frechet_distance(stats(mu, sigma), stats(mu, sigma))) < 1e-10 * np.trace(sigma)
    assert frechet_distance(stats(mu, sigma), stats(mu + shift, sigma)) == pytest.approx(shift @ shift, abs=1e-9)


def test_a_factored_reference_gives_the_same_distance_every_time() -> None:
    ref = GaussianStats.from_features(random_features(9, 100, 8))
    other = GaussianStats.from_features(random_features(10, 80, 8))
    factored = FrechetReference(ref)
    assert factored.distance(other) == factored.distance(other) == frechet_distance(ref, other)


def test_streaming_statistics_match_the_in_memory_ones() -> None:
    x = random_features(11, 203, 12, offset=1e4)
    whole = GaussianStats.from_features(x)
    chunked = StatsAccumulator(12)
    for start, stop in [(0, 1), (1, 8), (8, 58), (58, 203)]:
        chunked.add(x[start:stop])
    merged = StatsAccumulator(12)
    second = StatsAccumulator(12)
    for row in x[:100]:
        merged.add(row)
    second.add(x[100:])
    merged.merge(second)
    for accumulator in (chunked, merged):
        result = accumulator.stats()
        assert result.n == 203
        np.testing.assert_allclose(result.mu, whole.mu, rtol=1e-12)
        np.testing.assert_allclose(result.sigma, whole.sigma, rtol=1e-12, atol=1e-12 * np.abs(whole.sigma).max())


def test_leave_one_group_out_matches_recomputing_without_the_group() -> None:
    generated = random_features(12, 23, 6)
    reference = GaussianStats.from_features(random_features(13, 60, 6))
    loo = fid_leave_one_group_out(generated, reference, 5)
    keep = np.arange(23) % 5
    expected = [frechet_distance(reference, GaussianStats.from_features(generated[keep != g])) for g in range(5)]
    np.testing.assert_allclose(loo, expected, rtol=1e-9)


def test_pooled_fid_has_a_jackknife_interval_and_per_emotion_fid_is_flagged() -> None:
    generated = random_features(14, 40, 6, offset=0.5)
    reference = GaussianStats.from_features(random_features(15, 90, 6))
    value = frechet_distance(reference, GaussianStats.from_features(generated))
    pooled = fid(generated, reference, groups=8)
    assert pooled.value == pytest.approx(value, rel=1e-12)
    assert pooled.n == 40
    assert pooled.ci95 == jackknife_interval(pooled.value, fid_leave_one_group_out(generated, reference, 8))
    assert pooled.ci95[0] < pooled.value < pooled.ci95[1]
    per_emotion = fid(generated, reference, groups=None)
    assert per_emotion.ci95 is None and per_emotion.extra["biased"] is True
    assert per_emotion.value == pytest.approx(value, rel=1e-12)


def test_fewer_images_than_groups_leaves_empty_groups_at_the_full_value() -> None:
    generated = random_features(16, 3, 4)
    reference = GaussianStats.from_features(random_features(17, 30, 4))
    loo = fid_leave_one_group_out(generated, reference, 5)
    full = frechet_distance(reference, GaussianStats.from_features(generated))
    assert loo[3] == pytest.approx(full, rel=1e-12) and loo[4] == pytest.approx(full, rel=1e-12)
    assert fid(generated, reference, groups=5).ci95 == jackknife_interval(full, loo[:3])


def test_mismatched_or_broken_features_are_refused() -> None:
    reference = GaussianStats.from_features(random_features(18, 30, 4))
    with pytest.raises(ValueError, match="dimensions"):
        fid(random_features(19, 10, 5), reference, groups=None)
    broken = random_features(20, 10, 4)
    broken[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fid(broken, reference, groups=None)


@pytest.mark.parametrize("n", [3, 40, 70])
def test_gram_route_equals_the_covariance_route(n: int) -> None:
    # n <= d takes the n x n Gram matrix; n > d the d x d covariance: both must give the same distance.
    rng = np.random.default_rng(n)
    reference = GaussianStats.from_features(rng.normal(size=(200, 64)) @ rng.normal(size=(64, 64)))
    generated = rng.normal(0.3, 1.2, size=(n, 64))
    factored = FrechetReference(reference)
    expected = factored.distance(GaussianStats.from_features(generated))
    assert factored.distance_to_features(generated) == pytest.approx(expected, rel=1e-10, abs=1e-10)
