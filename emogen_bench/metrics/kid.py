"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, over seeded subsets.

``k(x, y) = (x . y / d + 1)^3`` as in the KID paper and clean-fid.  Each subset
estimate is the unbiased MMD^2 of ``m`` reference and ``m`` generated vectors
drawn without replacement (``m = min(subset_size, n, m_ref)``, so never more
than the images there are); KID is their mean.  Unlike FID it is unbiased at
small N, which makes it the honest per-emotion comparison.  ``std`` and the
``ci95`` (2.5 / 97.5 percentiles of the subset estimates) describe the spread
over subsets, i.e. the subset-sampling variability at this subset size.
"""

from __future__ import annotations

import numpy as np

from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.fid import feature_matrix
from emogen_bench.task import DEFAULT_SEED, METRICS

#: Up to this many vectors (both sides together) the full kernel matrix is computed once
#: (3072^2 float64 = 75 MB) and every subset reads from it: a per-emotion KID (1,000 generated,
#: 2,000 reference) then costs one Gram matrix instead of 300 subset products.
_GRAM_LIMIT = 3072


def _kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cubic polynomial kernel matrix, computed in place to keep one ``len(x) x len(y)`` array."""
    k = x @ y.T
    k /= x.shape[1]
    k += 1.0
    np.power(k, 3, out=k)
    return k


def _mmd2(kxx_sum: float, kyy_sum: float, kxy_sum: float, m: int, n: int) -> float:
    """Unbiased MMD^2 from kernel sums that exclude the diagonals of ``Kxx`` and ``Kyy``."""
    return kxx_sum / (m * (m - 1)) + kyy_sum / (n * (n - 1)) - 2.0 * kxy_sum / (m * n)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples ``x (m, d)`` and ``y (n, d)`` (m, n >= 2), float64."""
    x = feature_matrix(x, "mmd2_unbiased: x")
    y = feature_matrix(y, "mmd2_unbiased: y", x.shape[1])
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"unbiased MMD^2 needs at least 2 vectors per side, got {x.shape[0]} and {y.shape[0]}")
    kxx, kyy = _kernel(x, x), _kernel(y, y)
    return _mmd2(
        float(kxx.sum() - np.trace(kxx)),
        float(kyy.sum() - np.trace(kyy)),
        float(_kernel(x, y).sum()),
        x.shape[0],
        y.shape[0],
    )


def kid(
    generated: np.ndarray,
    reference_sample: np.ndarray,
    *,
    subsets: int = METRICS.kid_subsets,
    subset_size: int = METRICS.kid_subset_size,
    seed: int = DEFAULT_SEED,
    level: float = METRICS.ci_level,
) -> MetricValue:
    """KID of generated ``(n, d)`` features against a reference sample ``(m_ref, d)``.

    Subset ``s`` draws its reference indices, then its generated indices, from
    one ``default_rng(seed)``: same seed, same subsets.
    """
    ref = feature_matrix(reference_sample, "kid: reference sample")
    gen = feature_matrix(generated, "kid: generated", ref.shape[1])
    size = min(subset_size, gen.shape[0], ref.shape[0])
    if size < 2:
        raise ValueError(f"kid: subsets need at least 2 vectors per side, got {size}")
    if subsets < 1:
        raise ValueError(f"kid: subsets must be >= 1, got {subsets}")
    rng = np.random.default_rng(seed)
    draws = [
        (rng.choice(ref.shape[0], size, replace=False), rng.choice(gen.shape[0], size, replace=False))
        for _ in range(subsets)
    ]
    estimates = np.empty(subsets, dtype=np.float64)
    if ref.shape[0] + gen.shape[0] <= _GRAM_LIMIT:
        both = np.vstack([ref, gen])
        gram = _kernel(both, both)
        diagonal = np.diagonal(gram)
        for s, (ri, gi) in enumerate(draws):
            gi = gi + ref.shape[0]
            kxx = float(gram[np.ix_(ri, ri)].sum() - diagonal[ri].sum())
            kyy = float(gram[np.ix_(gi, gi)].sum() - diagonal[gi].sum())
            estimates[s] = _mmd2(kxx, kyy, float(gram[np.ix_(ri, gi)].sum()), size, size)
    else:
        for s, (ri, gi) in enumerate(draws):
            estimates[s] = mmd2_unbiased(ref[ri], gen[gi])
    alpha = 1.0 - level
    lo, hi = np.quantile(estimates, [alpha / 2, 1.0 - alpha / 2])
    std = float(estimates.std(ddof=1)) if subsets > 1 else 0.0
    extra = {"std": std, "subset_size": int(size), "subsets": int(subsets)}
    return MetricValue(float(estimates.mean()), (float(lo), float(hi)), int(gen.shape[0]), extra)
