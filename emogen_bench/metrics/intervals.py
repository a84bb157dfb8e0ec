"""Confidence intervals used by the metrics (protocol ``eicg-v3``).

- Accuracies (Emo-A): Wilson score interval, which stays inside [0, 1] and is
  sensible at 0% or 100%, unlike the normal (Wald) interval.
- Means of per-image values (Sem-C): percentile bootstrap over images, seeded.
- All-pairs diversities and FID: delete-a-group jackknife.  Image ``i`` of a
  scope (canonical order) belongs to group ``i % groups``; the interval is the
  full-sample estimate +- t * SE with ``groups - 1`` degrees of freedom (the
  t quantile, not z, because 20 groups give only 19 degrees of freedom).

Every interval is then clipped to its metric's domain (:data:`METRIC_DOMAINS`,
:func:`clip_values`), and the bounds cut are recorded beside the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from emogen_bench.metrics import MetricValue
from emogen_bench.task import METRICS

#: Bootstrap resamples drawn per chunk; bounds memory at this many x n indices.
_BOOTSTRAP_CHUNK = 100


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")


def wilson_interval(successes: int, n: int, level: float = METRICS.ci_level) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    The interval is the set of p with ``|p_hat - p| <= z * sqrt(p (1 - p) / n)``,
    i.e. the two roots of that quadratic in p.
    """
    _check_level(level)
    if n <= 0:
        raise ValueError(f"Wilson interval needs n >= 1, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    from scipy import stats  # imported here: scipy costs ~1 s at start-up (`--help`)

    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean_interval(
    values: np.ndarray,
    *,
    seed: int,
    samples: int = METRICS.bootstrap_samples,
    level: float = METRICS.ci_level,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the images with replacement, seeded.

    Resamples are drawn in fixed chunks so memory stays at ``chunk x n`` indices;
    the draws, and so the interval, depend only on ``values``, ``seed`` and ``samples``.
    """
    _check_level(level)
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("bootstrap needs at least one value")
    if samples < 1:
        raise ValueError(f"bootstrap needs samples >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    means = np.empty(samples, dtype=np.float64)
    for start in range(0, samples, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, samples)
        indices = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[indices].mean(axis=1)
    alpha = 1.0 - level
    lo, hi = np.quantile(means, [alpha / 2, 1.0 - alpha / 2])
    return float(lo), float(hi)


def jackknife_interval(
    full: float,
    leave_one_group_out: np.ndarray,
    level: float = METRICS.ci_level,
    *,
    present: np.ndarray | None = None,
) -> tuple[float, float] | None:
    """Delete-a-group jackknife interval around ``full``.

    ``leave_one_group_out[g]`` is the estimate without group ``g``; ``present``
    marks the groups that hold images (default: all).  With G present groups,
    ``SE^2 = (G - 1) / G * sum_g (theta_g - mean theta)^2`` and the interval is
    ``full +- t_{G-1} * SE``, centred on the plain estimate (no bias correction,
    so the interval always surrounds the reported value).  Returns ``None``
    when fewer than two groups are present or a present group's estimate is not
    finite (removing it left too few images).
    """
    _check_level(level)
    loo = np.asarray(leave_one_group_out, dtype=np.float64).ravel()
    if present is not None:
        mask = np.asarray(present, dtype=bool).ravel()
        if mask.shape != loo.shape:
            raise ValueError(f"present has shape {mask.shape}, leave_one_group_out has {loo.shape}")
        loo = loo[mask]
    groups = loo.size
    if groups < 2 or not np.all(np.isfinite(loo)) or not math.isfinite(full):
        return None
    variance = (groups - 1) / groups * float(np.sum((loo - loo.mean()) ** 2))
    from scipy import stats  # imported here: scipy costs ~1 s at start-up (`--help`)

    half = float(stats.t.ppf(0.5 + level / 2, groups - 1)) * math.sqrt(variance)
    return float(full) - half, float(full) + half


def group_ids(n: int, groups: int) -> np.ndarray:
    """Jackknife group of each image in canonical order: image ``i`` -> ``i % groups``."""
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    return np.arange(n, dtype=np.int64) % groups


def group_sizes(n: int, groups: int) -> np.ndarray:
    """Number of images in each group under :func:`group_ids`."""
    return np.bincount(group_ids(n, groups), minlength=groups)


# --- metric domains -------------------------------------------------------------------------------

#: The values each metric's quantity can take, ``(lowest, highest)``, ``None`` where there is no bound.  FID,
#: LPIPS and Sem-D are means of squared distances and KID estimates MMD^2, all never negative; Emo-A (both
#: classifiers) is an accuracy and Sem-C a mean probability, both fractions.  The one definition of the domains:
#: intervals are clipped to them here, and whatever checks a reported number against them reads this table.
METRIC_DOMAINS: dict[str, tuple[float | None, float | None]] = {
    "fid": (0.0, None),
    "kid": (0.0, None),
    "lpips": (0.0, None),
    "emo_a": (0.0, 1.0),
    "emo_a_resnet50": (0.0, 1.0),
    "sem_c": (0.0, 1.0),
    "sem_d": (0.0, None),
}
#: Metrics whose reported value is an unbiased estimate that may fall just outside the domain: KID's MMD^2 is
#: never negative, its unbiased estimate can be.  The value is kept as estimated; only its interval is clipped.
UNBIASED_ESTIMATES = frozenset({"kid"})
#: The names a clipped bound is recorded under (``extra["clipped"]``), in this order.
CLIPPED_BOUNDS = ("low", "high")


def clip_interval(
    ci95: tuple[float, float], domain: tuple[float | None, float | None]
) -> tuple[tuple[float, float], tuple[str, ...]]:
    """``ci95`` with each bound moved into ``domain``, and which bounds moved (``"low"``, ``"high"``).

    A normal-theory interval (the jackknife's estimate +- t * SE) knows nothing of a metric's range, and at a
    handful of images it can reach far past it (Sem-D [-621, 1876] at n = 3); no value outside the domain is
    possible, so the interval is cut at its edge, and the cut is recorded rather than hidden.
    """
    lowest, highest = domain
    given = dict(zip(CLIPPED_BOUNDS, (float(bound) for bound in ci95)))
    bounds = dict(given)
    for name, bound in given.items():
        if lowest is not None and bound < lowest:
            bounds[name] = float(lowest)
        elif highest is not None and bound > highest:
            bounds[name] = float(highest)
    clipped = tuple(name for name in CLIPPED_BOUNDS if bounds[name] != given[name])
    return (bounds["low"], bounds["high"]), clipped


def clip_to_domain(key: str, value: MetricValue) -> MetricValue:
    """``value`` with its interval clipped to metric ``key``'s domain; ``extra["clipped"]`` lists the bounds cut.

    Idempotent: a value clipped before keeps its record (a cached value is clipped again without change).
    Metrics without a domain, and values without an interval, are returned as they are.
    """
    domain = METRIC_DOMAINS.get(key)
    if domain is None or value.ci95 is None:
        return value
    ci95, clipped = clip_interval(value.ci95, domain)
    if not clipped:
        return value
    earlier = value.extra.get("clipped") or []
    extra = {**value.extra, "clipped": [name for name in CLIPPED_BOUNDS if name in clipped or name in earlier]}
    return MetricValue(value.value, ci95, value.n, extra)


def clip_values(
    overall: Mapping[str, MetricValue], per_emotion: Mapping[str, Mapping[str, MetricValue]]
) -> tuple[dict[str, MetricValue], dict[str, dict[str, MetricValue]]]:
    """Every interval of an evaluation's values (overall and per emotion) clipped to its metric's domain."""
    return (
        {key: clip_to_domain(key, value) for key, value in overall.items()},
        {e: {key: clip_to_domain(key, value) for key, value in values.items()} for e, values in per_emotion.items()},
    )
