"""Confidence intervals against independent closed forms (scipy's normal and t quantiles)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.intervals import (
    bootstrap_mean_interval,
    group_ids,
    group_sizes,
    jackknife_interval,
    wilson_interval,
)

Z95 = float(stats.norm.ppf(0.975))


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_wilson_at_the_boundaries_matches_its_closed_form(n: int) -> None:
    assert wilson_interval(0, n) == pytest.approx((0.0, Z95**2 / (n + Z95**2)), rel=1e-12, abs=1e-15)
    assert wilson_interval(n, n) == pytest.approx((n / (n + Z95**2), 1.0), rel=1e-12)


@pytest.mark.parametrize(("k", "n", "level"), [(1, 10, 0.95), (37, 100, 0.95), (763, 1000, 0.99), (5, 8, 0.8)])
def test_wilson_endpoints_are_where_the_score_test_is_exactly_z(k: int, n: int, level: float) -> None:
    z = float(stats.norm.ppf(0.5 + level / 2))
    lo, hi = wilson_interval(k, n, level)
    p_hat = k / n
    for p in (lo, hi):
        assert abs(p_hat - p) == pytest.approx(z * math.sqrt(p * (1 - p) / n), rel=1e-10)
    assert lo < p_hat < hi


def test_wilson_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_delete_one_jackknife_of_a_mean_is_the_classic_t_interval() -> None:
    values = np.random.default_rng(1).normal(3.0, 2.0, size=25)
    loo = (values.sum() - values) / (values.size - 1)
    expected = stats.t.interval(0.95, values.size - 1, loc=values.mean(), scale=stats.sem(values))
    assert jackknife_interval(values.mean(), loo) == pytest.approx(expected, rel=1e-12)


def test_jackknife_uses_only_present_groups_and_refuses_undefined_ones() -> None:
    loo = np.array([1.0, 2.0, 4.0, 99.0])
    present = np.array([True, True, True, False])
    assert jackknife_interval(2.0, loo, present=present) == jackknife_interval(2.0, loo[:3])
    assert jackknife_interval(2.0, np.array([1.0, np.nan, 3.0])) is None
    assert jackknife_interval(2.0, np.array([1.0, 2.0]), present=np.array([True, False])) is None


def test_bootstrap_is_seeded_and_close_to_the_normal_interval() -> None:
    values = np.random.default_rng(2).normal(0.5, 0.1, size=400)
    first = bootstrap_mean_interval(values, seed=0, samples=2000)
    assert bootstrap_mean_interval(values, seed=0, samples=2000) == first
    assert bootstrap_mean_interval(values, seed=1, samples=2000) != first
    half = Z95 * values.std(ddof=1) / math.sqrt(values.size)
    assert first[0] < values.mean() < first[1]
    assert (first[1] - first[0]) / 2 == pytest.approx(half, rel=0.1)
    assert bootstrap_mean_interval(np.full(9, 0.25), seed=0) == (0.25, 0.25)


def test_groups_cycle_through_the_canonical_order() -> None:
    assert group_ids(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert group_sizes(7, 3).tolist() == [3, 2, 2]
    assert group_sizes(2, 5).tolist() == [1, 1, 0, 0, 0]


def test_metric_value_serialises_to_plain_json() -> None:
    value = MetricValue(np.float64(0.5), (np.float64(0.25), 0.75), np.int64(10), {"biased": True})
    document = value.to_dict()
    assert document == {"value": 0.5, "ci95": [0.25, 0.75], "n": 10, "biased": True}
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert MetricValue(1.0, None, 2).to_dict()["ci95"] is None
