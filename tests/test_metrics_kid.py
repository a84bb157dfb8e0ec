"""KID against clean-fid's kernel_distance and a brute-force unbiased MMD^2 over explicit pairs."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest
from cleanfid.fid import kernel_distance as cleanfid_kernel_distance

from emogen_bench.metrics.kid import kid, mmd2_unbiased

# The package re-exports the function ``kid`` under the module's name; fetch the module itself.
kid_module = importlib.import_module("emogen_bench.metrics.kid")


def features(seed: int, n: int, d: int, offset: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(offset, 1.0, size=(n, d))


def brute_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, one explicit pair at a time."""
    d = x.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_unbiased_mmd_matches_explicit_pairs() -> None:
    x, y = features(0, 6, 3), features(1, 9, 3, offset=0.4)
    assert mmd2_unbiased(x, y) == pytest.approx(brute_mmd2(x, y), rel=1e-12)


def test_whole_sets_as_subsets_equal_clean_fid(monkeypatch: pytest.MonkeyPatch) -> None:
    """With subset size = n on both sides every subset is a permutation: all estimates are equal."""
    gen, ref = features(2, 40, 8, offset=0.3), features(3, 40, 8)
    np.random.seed(0)
    expected = cleanfid_kernel_distance(gen, ref, num_subsets=3, max_subset_size=1000)
    result = kid(gen, ref, subsets=3, subset_size=1000, seed=0)
    assert result.value == pytest.approx(expected, rel=1e-10)
    assert result.extra["subset_size"] == 40 and result.extra["std"] == pytest.approx(0.0, abs=1e-12)
    monkeypatch.setattr(kid_module, "_GRAM_LIMIT", 0)
    assert kid(gen, ref, subsets=3, subset_size=1000, seed=0).value == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("gram_limit", [kid_module._GRAM_LIMIT, 0])
def test_subset_estimates_match_brute_force_on_the_documented_draws(
    monkeypatch: pytest.MonkeyPatch, gram_limit: int
) -> None:
    monkeypatch.setattr(kid_module, "_GRAM_LIMIT", gram_limit)
    gen, ref = features(4, 15, 3, offset=0.5), features(5, 20, 3)
    rng = np.random.default_rng(7)
    estimates = []
    for _ in range(5):
        ri = rng.choice(20, 6, replace=False)
        gi = rng.choice(15, 6, replace=False)
        estimates.append(brute_mmd2(ref[ri], gen[gi]))
    result = kid(gen, ref, subsets=5, subset_size=6, seed=7)
    assert result.value == pytest.approx(np.mean(estimates), rel=1e-10)
    assert result.extra == pytest.approx({"std": np.std(estimates, ddof=1), "subset_size": 6, "subsets": 5})
    assert result.ci95 == pytest.approx(tuple(np.percentile(estimates, [2.5, 97.5])), rel=1e-10)
    assert result.n == 15


def test_seeded_subsets_repeat_and_differ_by_seed() -> None:
    gen, ref = features(6, 50, 4, offset=0.2), features(7, 80, 4)
    first = kid(gen, ref, subsets=10, subset_size=20, seed=0)
    assert kid(gen, ref, subsets=10, subset_size=20, seed=0) == first
    assert kid(gen, ref, subsets=10, subset_size=20, seed=1).value != first.value


def test_subset_size_never_exceeds_the_images_and_tiny_sets_are_refused() -> None:
    gen, ref = features(8, 12, 4), features(9, 30, 4)
    assert kid(gen, ref, subsets=2, subset_size=1000, seed=0).extra["subset_size"] == 12
    with pytest.raises(ValueError, match="at least 2"):
        kid(gen[:1], ref, subsets=2, subset_size=1000, seed=0)
    with pytest.raises(ValueError, match="dimensions"):
        kid(features(10, 5, 3), ref, subsets=2, subset_size=10, seed=0)
