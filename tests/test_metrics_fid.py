"""FID against clean-fid's own formula (scipy sqrtm) and against float64 closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from cleanfid.fid import frechet_distance as cleanfid_frechet_distance
from scipy import linalg

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


U = np.finfo(np.float64).eps / 2  # unit round-off of float64


def truth_and_tolerances(x1: np.ndarray, x2: np.ndarray) -> tuple[float, float, float, float]:
    """``(FID, tr sqrt(S1 S2), FID tolerance, trace tolerance)`` from the data, never forming ``S1 S2``.

    The truth is the nuclear norm of ``A1 A2^T`` (``S = A^T A``).  The tolerances are float64
    rounding: each step from the data to the eigenvalues that are square-rooted (two covariances,
    the Cholesky or eigh factor, ``B^T S2 B`` or ``(Xc B)(Xc B)^T``, ``eigvalsh``) is normwise
    backward stable, so together they move those eigenvalues by at most
    ``delta = C m u ||S1|| ||S2||`` (C = 10 for ~5 steps, m = max(n1, n2, d) the longest sum).
    Weyl pairs the i-th largest computed eigenvalue with the i-th largest true one,
    ``sigma_i^2``; the code keeps the ``k = min(n1 - 1, n2 - 1, d)`` largest, all that can be
    non-zero, and ``|sqrt a - sqrt b| <= min(|a - b| / sqrt b, sqrt |a - b|)``, so
    ``|dt| <= sum_{i <= k} min(delta / sigma_i, sqrt delta)`` (a condition-dependent factor:
    ``delta / sigma_i`` grows as ``sigma_i`` shrinks), plus ``C m u ||A1|| ||A2||`` per singular
    value for the truth's own SVD.  The FID adds ``C m u (tr S1 + tr S2 + |dmu|^2)`` for its
    traces and sums.  Keeping round-off eigenvalues instead (clipping only the negative ones)
    adds ~``sqrt(u ||S1|| ||S2||)`` for each of up to ``d - k``: far outside this when ``k < d``.
    """
    a1 = (x1 - x1.mean(0)) / np.sqrt(len(x1) - 1)
    a2 = (x2 - x2.mean(0)) / np.sqrt(len(x2) - 1)
    sigma = linalg.svdvals(a1 @ a2.T)
    (n1, d), n2 = x1.shape, len(x2)
    k, m = min(n1 - 1, n2 - 1, d), max(n1, n2, d)
    norm1, norm2 = linalg.svdvals(a1)[0] ** 2, linalg.svdvals(a2)[0] ** 2
    delta = 10 * m * U * norm1 * norm2
    trace_tol = float(np.minimum(delta / sigma[:k], np.sqrt(delta)).sum() + sigma.size * delta / np.sqrt(norm1 * norm2))
    diff = x1.mean(0) - x2.mean(0)
    traces = float(np.einsum("ij,ij->", a1, a1) + np.einsum("ij,ij->", a2, a2))
    t = float(sigma.sum())
    return float(diff @ diff + traces - 2 * t), t, 2 * trace_tol + 10 * m * U * (traces + diff @ diff), trace_tol


def ill_conditioned_features(seed: int, n: int, d: int, cond: float, offset: float = 0.1) -> np.ndarray:
    """``n > d`` vectors with covariance ``Q diag(s^2) Q^T`` (up to rounding of the data), ``s^2`` from 1
    down to ``1 / cond`` geometrically, ``Q`` a random rotation: ill-conditioned in no special basis."""
    rng = np.random.default_rng(seed)
    columns = rng.normal(size=(n, d))
    orthonormal, _ = np.linalg.qr(columns - columns.mean(axis=0))  # centred orthonormal columns
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    scales = cond ** (-np.arange(d) / (2 * (d - 1)))
    return np.sqrt(n - 1) * (orthonormal * scales) @ rotation.T + offset * rng.normal(size=d)


def hadamard_features(n: int, exponents: np.ndarray, mean: np.ndarray, copies: int = 1, seed: int = 0) -> np.ndarray:
    """``copies`` row-shuffled copies of ``H[:, 1:d+1] * 2**-exponents + mean`` (``H`` the ``n x n`` Hadamard
    matrix), interleaved so that jackknife group ``i % copies`` is one whole copy.

    Columns of ``H`` past the first are exactly orthogonal and sum to 0, and with power-of-two scales and
    means in eighths every sum and product that np.cov and the FID code form is exact (integer multiples of
    one power of two, within 53 bits): the covariance, and that of each jackknife remainder, is exactly
    diagonal, with only the division by ``n - 1`` rounded.
    """
    design = linalg.hadamard(n)[:, 1 : exponents.size + 1] * 2.0**-exponents
    rng = np.random.default_rng(seed)
    stacked = np.stack([design[rng.permutation(n)] for _ in range(copies)], axis=1)
    return stacked.reshape(n * copies, exponents.size) + mean


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


@pytest.mark.parametrize("levels", [13, 20, 23], ids=["cond-7e7", "cond-1e12", "cond-7e13"])
def test_ill_conditioned_diagonal_covariances_are_exact_to_rounding_on_every_path(levels: int) -> None:
    # Covariances 4**-e on the diagonal, e from 0 to `levels` (condition 4**levels: ~1e8, 1e12, 1e14), the
    # generated scales 2x or 0.5x the reference's: eigenvalues of B^T S2 B reach 4**-(2 levels + 1) of
    # their maximum, far below the old cut-off (d * eps * max), whose loss of sqrt(d eps) ~ 1e-7 fails here.
    d, copies = 64, 4
    rng = np.random.default_rng(levels)
    e1 = np.round(np.arange(d) * levels / (d - 1))
    e2 = e1 + rng.choice([-1.0, 1.0], size=d)
    mu1 = rng.integers(-8, 9, size=d) / 8
    mu2 = mu1 + rng.integers(-1, 2, size=d) / 8
    x1 = hadamard_features(128, e1, mu1)
    x2 = hadamard_features(128, e2, mu2, copies=copies, seed=1)
    s1, s2 = GaussianStats.from_features(x1), GaussianStats.from_features(x2)
    assert np.count_nonzero(s1.sigma - np.diag(np.diag(s1.sigma))) == 0  # exactly diagonal, as built

    def closed_form(n2: int) -> tuple[float, float, float]:
        # tr sqrt(S1 S2) = sum sqrt(a_j b_j) with a_j = n1 / (n1 - 1) 4**-e1_j (the nuclear norm of A1 A2^T)
        c1, c2 = np.sqrt(len(x1) / (len(x1) - 1)), np.sqrt(n2 / (n2 - 1))
        sd1, sd2 = c1 * 2.0**-e1, c2 * 2.0**-e2
        scale = float(np.sum(sd1**2) + np.sum(sd2**2) + np.sum((mu1 - mu2) ** 2))
        fid_value = float(np.sum((mu1 - mu2) ** 2) + np.sum((sd1 - sd2) ** 2))
        return fid_value, float(np.sum(sd1 * sd2)), scale + fid_value

    # Rounding: covariance entries 2u (one division), Cholesky of a diagonal matrix and eigvalsh of the
    # diagonal B^T S2 B are exact but for sqrt and the two products (<= 5u per term), summing d terms adds
    # (d - 1)u; the closed form has the same kind of error, and FID's traces and sums add (d + 4)u of
    # tr S1 + tr S2 + |dmu|^2 (>= 2 tr sqrt).  Altogether below 4 d u of that scale plus the FID for d >= 13.
    fid_value, trace_sqrt, scale = closed_form(len(x2))
    reference = FrechetReference(s1)
    assert reference.trace_sqrt_product(s2.sigma, s2.n) == pytest.approx(trace_sqrt, rel=4 * d * U, abs=0)
    for got in (
        frechet_distance(s1, s2),
        frechet_distance(s2, s1),
        reference.distance(s2),
        reference.distance_to_features(x2),
        fid(x2, s1, groups=copies).value,
    ):
        assert got == pytest.approx(fid_value, rel=0, abs=4 * d * U * scale)
    # Each jackknife remainder (copies - 1 whole copies) is again exactly diagonal.
    fid_rest, _, scale_rest = closed_form(len(x2) - len(x2) // copies)
    for got in fid_leave_one_group_out(x2, reference, copies):
        assert got == pytest.approx(fid_rest, rel=0, abs=4 * d * U * scale_rest)


@pytest.mark.parametrize("cond", [1e8, 1e12, 1e14])
def test_ill_conditioned_rotated_covariances_within_rounding_on_every_path(cond: float) -> None:
    # Ill-conditioned in a random basis; the generated side has full rank (the d x d route) or n < d
    # (per-emotion FID's Gram route).  Tolerances: truth_and_tolerances.
    d, groups = 64, 5
    x1 = ill_conditioned_features(1, 160, d, cond)
    s1 = GaussianStats.from_features(x1)
    reference = FrechetReference(s1)
    for x2 in (ill_conditioned_features(2, 200, d, cond), random_features(3, 48, d)):
        s2 = GaussianStats.from_features(x2)
        fid_value, trace_sqrt, fid_tol, trace_tol = truth_and_tolerances(x1, x2)
        assert reference.trace_sqrt_product(s2.sigma, s2.n) == pytest.approx(trace_sqrt, rel=0, abs=trace_tol)
        assert frechet_distance(s1, s2) == pytest.approx(fid_value, rel=0, abs=fid_tol)
        assert frechet_distance(s2, s1) == pytest.approx(fid_value, rel=0, abs=fid_tol)
        assert reference.distance_to_features(x2) == pytest.approx(fid_value, rel=0, abs=fid_tol)
        assert fid(x2, reference, groups=groups).value == pytest.approx(fid_value, rel=0, abs=fid_tol)
        keep = np.arange(len(x2)) % groups
        for g, got in enumerate(fid_leave_one_group_out(x2, reference, groups)):
            expected, _, tol, _ = truth_and_tolerances(x1, x2[keep != g])
            assert got == pytest.approx(expected, rel=0, abs=tol)


@pytest.mark.parametrize(
    ("n1", "n2", "d"),
    [(400, 50, 200), (50, 400, 200), (50, 80, 200), (1000, 125, 256), (125, 1000, 256)],
    ids=["generated-n<d", "reference-n<d", "both-n<d", "per-emotion-scaled", "reference-per-emotion-scaled"],
)
def test_rank_deficient_covariances_within_rounding_on_every_path(n1: int, n2: int, d: int) -> None:
    # Fewer vectors than dimensions on one side or both (1,000 x 2048 per emotion, scaled by 1/8 to
    # 125 x 256): only min(n1 - 1, n2 - 1, d) eigenvalues can be non-zero; the others are round-off,
    # and keeping them (clipping only negatives) misses these tolerances by 100-1000x.
    groups = 5
    x1, x2 = random_features(21, n1, d), random_features(22, n2, d, offset=0.3)
    s1, s2 = GaussianStats.from_features(x1), GaussianStats.from_features(x2)
    reference = FrechetReference(s1)
    fid_value, trace_sqrt, fid_tol, trace_tol = truth_and_tolerances(x1, x2)
    assert reference.trace_sqrt_product(s2.sigma, s2.n) == pytest.approx(trace_sqrt, rel=0, abs=trace_tol)
    assert FrechetReference(s2).trace_sqrt_product(s1.sigma, s1.n) == pytest.approx(trace_sqrt, rel=0, abs=trace_tol)
    assert frechet_distance(s1, s2) == pytest.approx(fid_value, rel=0, abs=fid_tol)
    assert frechet_distance(s2, s1) == pytest.approx(fid_value, rel=0, abs=fid_tol)
    assert reference.distance(s2) == pytest.approx(fid_value, rel=0, abs=fid_tol)
    assert reference.distance_to_features(x2) == pytest.approx(fid_value, rel=0, abs=fid_tol)
    assert fid(x2, reference, groups=groups).value == pytest.approx(fid_value, rel=0, abs=fid_tol)
    keep = np.arange(n2) % groups
    for g, got in enumerate(fid_leave_one_group_out(x2, reference, groups)):
        expected, _, tol, _ = truth_and_tolerances(x1, x2[keep != g])
        assert got == pytest.approx(expected, rel=0, abs=tol)


def test_statistics_of_fewer_than_two_vectors_are_refused() -> None:
    # The rank bound n - 1 needs the n that the unbiased covariance was computed from.
    one = GaussianStats(np.zeros(3), np.eye(3), 1)
    other = GaussianStats.from_features(random_features(23, 10, 3))
    with pytest.raises(ValueError, match="n >= 2"):
        FrechetReference(one)
    with pytest.raises(ValueError, match="n >= 2"):
        FrechetReference(other).distance(one)
