"""The rounding bounds of ``tolerances.py`` hold for what another CPU changes, and still catch real bugs (issue 13).

Another CPU model, ``ATEN_CPU_CAPABILITY=default`` or another thread count evaluates the same float32 network in
another order, so features computed in batches and one at a time differ in their last bits: on an Intel CPU a
reference covariance element came out -0.0021699 against -0.0021705, outside ``rtol=1e-4, atol=1e-7`` picked
on an AMD one.  Here a few-ulp perturbation of the features stands for that other CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_reference_stats import ToyInception
from tolerances import (
    EPS64,
    U32,
    assert_stats_within,
    covariance_rounding_bound,
    gamma,
    mean_rounding_bound,
    network_bound,
    pair_mean_bound,
    softmax_bound,
    std_difference_bound,
)
from torch import nn

from emogen_bench.metrics.fid import GaussianStats
from emogen_bench.metrics.pairwise import PairwiseAccumulator


def toy_inputs(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random 8 x 8 RGB inputs in [0, 1], as ToyInception's preprocessing gives."""
    return torch.rand((n, 3, 8, 8), generator=torch.Generator().manual_seed(seed))


def one_by_one(model: ToyInception, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return np.stack([model.forward(x[None])["pool"][0].numpy() for x in inputs]).astype(np.float64)


def toy_error(model: ToyInception, inputs: torch.Tensor) -> np.ndarray:
    """Twice ``network_bound``: |batched - one by one| features on any CPU."""
    scale, unit = network_bound([model.conv, nn.ReLU(), nn.Flatten(), model.linear], inputs, per_image=True)
    return 2 * unit * scale


def few_ulps(x: np.ndarray, ulps: int, seed: int) -> np.ndarray:
    """``x`` as float32, each entry moved by a random number of float32 ulps in ``[-ulps, ulps]``."""
    values = np.asarray(x, dtype=np.float32)
    steps = np.random.default_rng(seed).integers(-ulps, ulps + 1, size=values.shape)
    return (values + steps * np.spacing(np.abs(values))).astype(np.float64)


def test_network_bound_covers_batched_against_one_by_one_features() -> None:
    model, inputs = ToyInception(), toy_inputs(40)
    batched = model(inputs)["pool"].astype(np.float64)  # fixed batches of 16, zero-padded
    single = one_by_one(model, inputs)
    error = toy_error(model, inputs)
    assert np.all(np.abs(batched - single) <= error)
    assert np.all(np.abs(few_ulps(single, 8, seed=1) - single) <= error)  # a few ulps is well inside the bound
    _, unit = network_bound([model.conv, nn.ReLU(), nn.Flatten(), model.linear], inputs)
    assert unit == gamma(3 * 9 + 1 + 4 * 6 * 6 + 1, U32)  # conv: 27 products + bias; linear: 144 + bias


@pytest.mark.parametrize("n", [7, 59])  # the smallest emotion and the pooled set of the fake EmoSet
def test_statistics_of_features_a_few_ulps_apart_are_within_the_bound(n: int) -> None:
    model, inputs = ToyInception(), toy_inputs(n, seed=n)
    single, error = one_by_one(model, inputs), toy_error(model, inputs)
    for seed in range(5):
        assert_stats_within(GaussianStats.from_features(few_ulps(single, 8, seed)), single, error)


@pytest.mark.parametrize("n", [7, 59])
def test_the_statistics_bound_catches_a_wrong_sample_and_a_biased_covariance(n: int) -> None:
    model, inputs = ToyInception(), toy_inputs(n, seed=n)
    single, error = one_by_one(model, inputs), toy_error(model, inputs)
    other = one_by_one(model, toy_inputs(1, seed=1000))
    with pytest.raises(AssertionError):  # one image replaced by another
        assert_stats_within(GaussianStats.from_features(np.concatenate([single[1:], other])), single, error)
    right = GaussianStats.from_features(single)
    with pytest.raises(AssertionError):  # divided by n, not n - 1
        assert_stats_within(GaussianStats(right.mu, right.sigma * (n - 1) / n, n), single, error)
    with pytest.raises(AssertionError, match="items"):  # one image too few
        assert_stats_within(GaussianStats.from_features(single[1:]), single, error)


def test_float32_accumulation_fails_the_float64_bound() -> None:
    """The same features reduced in float32 instead of float64: what the float64-only comparisons catch."""
    features = one_by_one(ToyInception(), toy_inputs(59))
    in_float32 = features.astype(np.float32)
    sigma32 = np.cov(in_float32, rowvar=False, dtype=np.float32)
    mu32 = in_float32.mean(axis=0, dtype=np.float32)
    assert np.any(np.abs(sigma32 - np.cov(features, rowvar=False)) > 2 * covariance_rounding_bound(features))
    assert np.any(np.abs(mu32 - features.mean(axis=0)) > 2 * mean_rounding_bound(features))


def test_softmax_bound_covers_float32_against_float64_and_catches_a_temperature() -> None:
    logits = torch.randn((64, 365), generator=torch.Generator().manual_seed(2)) * 4
    in_float32 = torch.softmax(logits, dim=1).double().numpy()
    exact = torch.softmax(logits.double(), dim=1).numpy()  # the same float32 logits, in float64
    tol = softmax_bound(exact, U32) + softmax_bound(exact, EPS64)
    assert np.all(np.abs(in_float32 - exact) <= tol)
    moved = logits + 1e-4 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(3))
    delta = (moved - logits).abs().amax(dim=1).double().numpy()
    moved_probs = torch.softmax(moved, dim=1).double().numpy()
    assert np.all(np.abs(moved_probs - exact) <= softmax_bound(exact, U32, delta) + softmax_bound(exact, EPS64))
    hotter = torch.softmax(logits / 1.001, dim=1).double().numpy()  # a temperature bug
    assert np.any(np.abs(hotter - exact) > tol)


def test_pair_mean_bound_covers_the_streaming_sums_and_catches_n_for_n_minus_1() -> None:
    x = np.random.default_rng(4).normal(size=(7, 768)).astype(np.float32).astype(np.float64) + 30.0
    accumulator = PairwiseAccumulator(768, groups=3)
    accumulator.add(x, np.arange(7) % 3)
    brute = float(np.mean([np.sum((x[i] - x[j]) ** 2) for i in range(7) for j in range(i + 1, 7)]))
    assert abs(accumulator.mean() - brute) <= pair_mean_bound(x)
    assert abs(accumulator.mean() * 6 / 7 - brute) > pair_mean_bound(x)


def test_std_difference_bound_covers_two_float64_routes_and_catches_the_population_std() -> None:
    x = np.random.default_rng(5).normal(size=(40, 16)) * 3 + 1e3  # a large offset: the routes round differently
    mean = np.zeros(16)
    m2 = np.zeros(16)
    for k, row in enumerate(x, start=1):  # Welford, one row at a time
        delta = row - mean
        mean += delta / k
        m2 += delta * (row - mean)
    welford = np.sqrt(m2 / (len(x) - 1))
    assert np.all(np.abs(welford - x.std(axis=0, ddof=1)) <= std_difference_bound(x))
    assert np.any(np.abs(x.std(axis=0) - x.std(axis=0, ddof=1)) > std_difference_bound(x))
