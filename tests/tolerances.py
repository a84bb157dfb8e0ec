"""Tolerances derived from float32/float64 rounding of the compared quantities, never from one machine's output.

Two computations of the same quantity by different routes (batched or one image at a time, another CPU's kernels,
another thread count, another summation order) each stay within a rounding bound of the exact value; a test
compares them within the sum of their bounds.  The bounds follow Higham, *Accuracy and Stability of Numerical
Algorithms* (2nd ed.): a sum or dot product of ``k`` terms computed in any order is within ``gamma_k`` times the
sum of the terms' absolute values (Lemma 3.1, eq. 3.5).  What a bound may not assume: any particular order,
blocking, SIMD width or fused multiply-add, so it holds on any CPU.

- :func:`gamma`: ``gamma_k = k u / (1 - k u)``.
- :func:`network_bound`: a float32 conv/linear/ReLU/pool network's output, any evaluation order.
- :func:`covariance_rounding_bound`, :func:`mean_rounding_bound`: float64 mean and covariance, any route.
- :func:`covariance_perturbation_bound`: how far exact covariances move when the features move by ``|E| <= e``.
- :func:`assert_stats_within`: statistics of features from two routes, within the sum of the above.
- :func:`frechet_bound`, :func:`feature_perturbation_bound`, :func:`kid_bound`: FID and KID (used by
  ``test_peer_crosschecks.py``, which documents the checks that use them).
- :func:`softmax_bound`: a row softmax in float32 or float64, any implementation, from logits known within a bound.
- :func:`pair_mean_bound`: the all-pairs mean squared distance from streaming float64 sums against brute force.
- :func:`std_difference_bound`: two float64 routes to per-column standard deviations.
- :func:`lpips_bounds`: the lpips package's float32 LPIPS against the same features' phi space (Sem-D's identity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from scipy import linalg
from torch import nn
from torch.nn import functional as F

EPS64 = float(np.finfo(np.float64).eps)  # float64 unit roundoff is EPS64 / 2; EPS64 leaves a factor 2 spare
U32 = 2.0**-24  # float32 unit roundoff


class StatsLike(Protocol):
    """A mean and covariance of ``n`` items (``GaussianStats``)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def gamma(k: float, unit: float) -> float:
    """Higham's gamma_k = k u / (1 - k u): the relative error of k chained roundings (any summation order)."""
    return k * unit / (1.0 - k * unit)


# --- float32 networks ------------------------------------------------------------------------------------------


def network_bound(ops: Sequence[nn.Module], x: torch.Tensor, *, per_image: bool = False) -> tuple[np.ndarray, float]:
    """``(|W| ... |x|, gamma_K)``: any float32 evaluation of the conv/linear/ReLU/pool chain on inputs ``x``
    is within ``gamma_K(u32)`` times that of the exact output (Higham 3.5: each stage adds ``gamma_{terms}`` of
    its absolute-value product, ReLU, flattening and averaging are 1-Lipschitz, and the absolute-value chain is
    monotone in its input), K = the terms summed along the chain.  Returns a ``(1, D)`` row from ``max|x|``
    everywhere that bounds every image, or with ``per_image`` an ``(N, D)`` row per image from its own ``|x|``."""
    if per_image:
        y = x.detach().abs().double()
    else:
        y = torch.full((1, *x.shape[1:]), float(x.abs().max()), dtype=torch.float64)
    k = 0
    for op in ops:
        if isinstance(op, nn.Conv2d):
            weight, bias = op.weight.detach().double().abs(), op.bias.detach().double().abs()
            y = F.conv2d(y, weight, bias, op.stride, op.padding)
            k += weight[0].numel() + 1
        elif isinstance(op, nn.Linear):
            weight, bias = op.weight.detach().double().abs(), op.bias.detach().double().abs()
            y = F.linear(y, weight, bias)
            k += weight.shape[1] + 1
        elif isinstance(op, nn.AdaptiveAvgPool2d):
            out_h, out_w = torch.nn.modules.utils._pair(op.output_size)
            k += (math.ceil(y.shape[2] / out_h) + 1) * (math.ceil(y.shape[3] / out_w) + 1) + 1  # widest window, / size
            y = F.adaptive_avg_pool2d(y, op.output_size)
        elif isinstance(op, nn.Flatten):
            y = op(y)
        elif not isinstance(op, nn.ReLU):
            raise TypeError(f"network_bound: no rule for {type(op).__name__}")
    return y.flatten(1).numpy(), gamma(k, U32)


def softmax_bound(
    probs: np.ndarray, unit: float, logit_error: np.ndarray | float = 0.0, *, classes: int | None = None
) -> np.ndarray:
    """``(N, C)``: |computed - exact| softmax of logits known within ``logit_error`` (per row), computed in ``unit``.

    Logits within ``delta`` move every probability by a factor in ``[exp(-2 delta), exp(2 delta)]``.  Rounding:
    the shift ``l - max`` is exact at the maximum and moves ``exp`` of the others by ``u Delta`` relative, which
    weighs ``Delta e^-Delta <= 1/e`` in the sum (so ``<= (C - 1) u`` of it) and ``<= u`` absolute in a numerator;
    each ``exp`` is within 2 ulps = ``4u`` (torch's vectorised ``exp``; libm's is within 1), the sum of ``C``
    positive terms ``gamma_C``, the division ``u``: ``gamma_{2C+8}`` of each probability covers all of it.
    ``classes`` (C) defaults to the number of columns of ``probs`` (pass it for a column of maxima).
    """
    p = np.asarray(probs, dtype=np.float64)
    delta = np.asarray(logit_error, dtype=np.float64).reshape(-1, 1) if np.ndim(logit_error) else logit_error
    return p * (np.expm1(2 * np.asarray(delta)) + gamma(2 * (classes or p.shape[1]) + 8, unit)) + unit


def lpips_bounds(network: nn.Module, size: int, n: int) -> tuple[float, float]:
    """``(relative, absolute)``: the lpips package's float32 LPIPS of a pair of ``size`` x ``size`` images is within
    ``relative`` of itself plus ``absolute`` of the pair's value in the phi space (``features.lpips``) summed in
    float64 over ``n`` images, when both routes see the same float32 AlexNet features ``f`` (unit-normalised).

    The package: ``(f_x - f_y)^2`` (3u), a 1x1 conv over ``C`` channels (``gamma_C``), a spatial mean of ``HW``
    (``gamma_{HW+1}``), five layers summed (``gamma_4``), all terms non-negative: ``gamma_{max(C+HW)+9}`` relative.
    phi: ``f * s (1 + theta)(1 + delta)`` with ``|theta| <= 2u`` (divide, sqrt), ``|delta| <= u``, so each squared
    difference moves by ``<= 7u s^2 (|f_x| + |f_y|)^2`` and in all by ``<= 7u * 4 W``, ``W = sum_l max_c w_{l,c}``
    (``sum_c f^2 <= 1`` at each position).  The streaming float64 sums (:func:`pair_mean_bound`, ``||phi||^2 <= W``)
    add ``4 gamma_{D+2n+8} * 4nW / (n - 1) <= 32 gamma_{D+2n+8} W``.
    """
    with torch.no_grad():
        layers = network.net(network.scaling_layer(torch.zeros((1, 3, size, size))))
    shapes = [tuple(layer.shape[1:]) for layer in layers]
    weights = [lin.model[-1].weight.detach().double().numpy() for lin in network.lins]
    relative = gamma(max(c + h * w for c, h, w in shapes) + 10, U32)
    total = sum(float(weight.max()) for weight in weights)
    dim = sum(c * h * w for c, h, w in shapes)
    return relative, gamma(7, U32) * 4 * total + 32 * gamma(dim + 2 * n + 8, EPS64) * total


# --- float64 means and covariances -----------------------------------------------------------------------------


def mean_rounding_bound(x: np.ndarray, unit: float = EPS64) -> np.ndarray:
    """``(d,)``: a mean of ``n`` values, summed in any order (or merged from partial means) then divided, is
    within ``gamma_{n+1} mean|x|`` of the exact mean."""
    array = np.asarray(x, dtype=np.float64)
    return gamma(array.shape[0] + 1, unit) * np.mean(np.abs(array), axis=0)


def covariance_rounding_bound(x: np.ndarray, unit: float = EPS64) -> float:
    """Every entry of an unbiased covariance computed in floating point, centred, from raw sums or merged from
    blocks (Chan et al.), is within ``2 gamma_{n+2} max_j mean(x_j^2) n / (n - 1)`` of the exact one: each sum of
    ``n`` products is within ``gamma_{n+2}`` of ``sum |x_i x_j| <= n max_j mean(x_j^2)`` (Cauchy-Schwarz), and so
    is the mean correction ``n |mu_i mu_j|``."""
    array = np.asarray(x, dtype=np.float64)
    n = array.shape[0]
    return 2 * gamma(n + 2, unit) * float(np.max(np.mean(array * array, axis=0))) * n / (n - 1)


def pair_mean_bound(x: np.ndarray, unit: float = EPS64) -> float:
    """|streaming - brute force| mean of ``||x_i - x_j||^2`` over all distinct pairs of the rows of ``x``, both float64.

    Streaming (``metrics.pairwise``): rows shifted by the first, ``S = sum ||y_i||^2`` within ``gamma_{d+n+2} S``,
    ``||sum y_i||^2 / n`` within ``2 gamma_{n+1} S + gamma_{d+2} S`` (``(sum_i |y_ik|)^2 <= n sum_i y_ik^2``), both
    doubled and divided by ``n - 1``.  Brute force: each pair's ``d`` squared differences ``gamma_{d+3}``, the mean
    of ``P`` pairs ``gamma_{P+1}``, relative to the (non-negative) value.
    """
    array = np.asarray(x, dtype=np.float64)
    n, d = array.shape
    shifted = float(np.sum((array - array[0]) ** 2))
    pairs = [float(np.sum((array[i] - array[j]) ** 2)) for i in range(n) for j in range(i + 1, n)]
    streaming = 2 * 2 * gamma(d + 2 * n + 8, unit) * shifted / (n - 1)
    return streaming + gamma(d + len(pairs) + 8, unit) * float(np.mean(pairs))


def std_difference_bound(x: np.ndarray, unit: float = EPS64) -> np.ndarray:
    """``(d,)``: |route A - route B| unbiased std of each column of ``x``, both in float64 (any order, centred,
    Welford or merged), ``x`` as route A holds it (numpy's std).  Each variance is within ``c_j =
    2 gamma_{n+2} mean(x_j^2) n / (n - 1)`` of exact (:func:`covariance_rounding_bound`, per column), so the two
    within ``2 c_j``, and ``|sqrt a - sqrt b| <= min(sqrt|a - b|, |a - b| / sqrt a)``."""
    array = np.asarray(x, dtype=np.float64)
    n = array.shape[0]
    both = 2 * 2 * gamma(n + 2, unit) * np.mean(array * array, axis=0) * n / (n - 1)
    with np.errstate(divide="ignore"):
        return np.minimum(np.sqrt(both), both / array.std(axis=0, ddof=1))


def covariance_perturbation_bound(x: np.ndarray, error: np.ndarray) -> np.ndarray:
    """``(d, d)``: ``|cov(X + E) - cov(X)|`` entrywise, in exact arithmetic, for any ``|E| <= error``.

    With ``A`` the centred ``X / sqrt(n - 1)``, ``cov = A^T A`` and centring is an orthogonal projection, so the
    column ``j`` of ``dA`` has norm ``c_j <= ||error_j|| / sqrt(n - 1)``;
    ``|dS_ij| = |A_i.dA_j + dA_i.A_j + dA_i.dA_j| <= sqrt(S_ii) c_j + c_i sqrt(S_jj) + c_i c_j`` (Cauchy-Schwarz).
    ``S_ii`` is computed here in float64, raised by its own rounding bound.  ``error`` broadcasts against ``x``.
    """
    array = np.asarray(x, dtype=np.float64)
    n = array.shape[0]
    bound = np.broadcast_to(np.asarray(error, dtype=np.float64), array.shape)
    c = np.linalg.norm(bound, axis=0) / math.sqrt(n - 1)
    spread = np.sqrt(np.diag(np.cov(array, rowvar=False)) + covariance_rounding_bound(array))
    return np.outer(spread, c) + np.outer(c, spread) + np.outer(c, c)


# --- FID and KID -----------------------------------------------------------------------------------------------


def frechet_bound(x_ref: np.ndarray, x_gen: np.ndarray, *, mean_unit: float = EPS64) -> float:
    """|computed - exact| FID of two feature sets for one backward-stable route; ``x_ref`` must have n > d.

    - Covariance entries, centred or from raw sums: :func:`covariance_rounding_bound`;
      ``||dS||_2 <= d max |dS_ij|``.
    - Eigenvalues of ``S1 S2 = S1^(1/2) M S1^(-1/2)`` (M symmetric, S1 positive definite): Bauer-Fike with
      eigenvector condition ``sqrt(cond S1)`` bounds each computed one within
      ``Delta = sqrt(cond S1) (||S1|| ||dS2|| + ||dS1|| ||S2|| + gamma_{2d+4} ||S1|| ||S2||)``.
    - Principal roots: ``|Re sqrt(z) - sqrt(lam)| <= min(sqrt|z - lam|, |z - lam| / sqrt(lam))`` for lam >= 0,
      so ``tr sqrt`` is within ``sum_i min(sqrt Delta, Delta / sqrt(lam_i - Delta))`` (sqrt Delta at zero).
    - Means: sums of n terms in ``mean_unit`` (float32 for clean-fid's ``np.mean`` of float32 features, whose
      ``diff.dot(diff)`` is then float32 too): ``gamma_{n+1}``, then ``gamma_{d+2}`` on ``|mu1 - mu2|^2``.
    """
    xs = [np.asarray(x, dtype=np.float64) for x in (x_ref, x_gen)]
    d = xs[0].shape[1]
    sigmas = [np.cov(x, rowvar=False) for x in xs]
    entry = [covariance_rounding_bound(x) for x in xs]
    norms = [float(np.linalg.norm(s, 2)) for s in sigmas]
    delta = math.sqrt(np.linalg.cond(sigmas[0])) * (
        norms[0] * d * entry[1] + d * entry[0] * norms[1] + gamma(2 * d + 4, EPS64) * norms[0] * norms[1]
    )
    lower = linalg.cholesky(sigmas[0], lower=True)
    lam = linalg.eigvalsh(lower.T @ sigmas[1] @ lower)
    low = np.maximum(lam - delta, 0.0)
    with np.errstate(divide="ignore"):
        sqrt_trace = float(np.sum(np.minimum(math.sqrt(delta), delta / np.sqrt(low))))
    diff = float(np.linalg.norm(xs[0].mean(axis=0) - xs[1].mean(axis=0)))
    dmu = sum(float(np.linalg.norm(mean_rounding_bound(x, mean_unit))) for x in xs)
    mean_term = 2 * diff * dmu + dmu**2 + gamma(d + 2, mean_unit) * diff**2
    traces = [float(np.trace(s)) for s in sigmas]
    trace_term = sum(d * e + gamma(d, EPS64) * t for e, t in zip(entry, traces))
    final = gamma(4, EPS64) * (diff**2 + sum(traces) + 2 * float(np.sqrt(np.maximum(lam, 0)).sum()))
    return 2 * sqrt_trace + trace_term + mean_term + final


def feature_perturbation_bound(xs: Sequence[np.ndarray], errors: Sequence[np.ndarray]) -> float:
    """|FID(X + dX) - FID(X)| in exact arithmetic for ``|dX| <= E`` entrywise (reference first, generated second).

    ``FID = |mu1 - mu2|^2 + |A1|_F^2 + |A2|_F^2 - 2 |A1 A2^T|_*`` with ``A = centred X / sqrt(n - 1)``, and
    ``||A||_F``, ``||.||_*`` are norms: ``|dA|_F <= 2 |E|_F / sqrt(n - 1)`` (row and its mean),
    ``| |PQ^T|_* - |P'Q'^T|_* | <= |dP|_F |Q|_F + |P'|_F |dQ|_F``.
    """
    fro, dfro, means, dmu = [], [], [], 0.0
    for x, e in zip(xs, errors):
        x, e = np.asarray(x, dtype=np.float64), np.asarray(e, dtype=np.float64)
        n = x.shape[0]
        fro.append(float(np.linalg.norm(x - x.mean(axis=0))) / math.sqrt(n - 1))
        dfro.append(2 * float(np.linalg.norm(e)) / math.sqrt(n - 1))
        means.append(x.mean(axis=0))
        dmu += float(np.linalg.norm(e.mean(axis=0)))
    diff = float(np.linalg.norm(means[0] - means[1]))
    traces = sum(df * (2 * f + df) for f, df in zip(fro, dfro))
    nuclear = dfro[0] * fro[1] + (fro[0] + dfro[0]) * dfro[1]
    return 2 * diff * dmu + dmu**2 + traces + 2 * nuclear


def kid_bound(x: np.ndarray, y: np.ndarray) -> float:
    """|computed - exact| unbiased MMD^2 of whole sets in float64, any summation order.

    ``k = (a.b / d + 1)^3`` is within ``gamma_{3(d+3)}`` of ``kabs = (|a|.|b| / d + 1)^3`` (dot product
    ``gamma_d``, then divide, add, cube: x3); each kernel sum adds ``gamma_N``, N = its number of terms.
    """
    d, m, n = x.shape[1], x.shape[0], y.shape[0]

    def kabs_sum(a: np.ndarray, b: np.ndarray) -> float:
        return float(((np.abs(a) @ np.abs(b).T) / d + 1.0).__pow__(3).sum())

    unit = gamma(3 * (d + 3) + max(m, n) ** 2 + 4, EPS64)
    return unit * (kabs_sum(x, x) / (m * (m - 1)) + kabs_sum(y, y) / (n * (n - 1)) + 2 * kabs_sum(x, y) / (m * n))


def stats_rounding_bounds(mu: np.ndarray, sigma: np.ndarray, n: int, unit: float = EPS64) -> tuple[np.ndarray, float]:
    """:func:`mean_rounding_bound` and :func:`covariance_rounding_bound` from a set's mean and covariance alone:
    ``mean(x_j^2) = S_jj (n - 1) / n + mu_j^2`` and ``mean|x_j| <= sqrt(mean(x_j^2))``."""
    second = np.diag(np.asarray(sigma, dtype=np.float64)) * (n - 1) / n + np.asarray(mu, dtype=np.float64) ** 2
    mean_tol = gamma(n + 1, unit) * np.sqrt(second)
    return mean_tol, 2 * gamma(n + 2, unit) * float(np.max(second)) * n / (n - 1)


def assert_stats_within(stats: StatsLike, features: np.ndarray, error: np.ndarray) -> None:
    """``stats`` (float64 mean and covariance of other float32 features of the same ``n`` items, e.g. computed in
    batches on another CPU) equal those of ``features`` within what a feature difference ``|E| <= error`` and
    float64 rounding on both routes allow.  ``error`` broadcasts against ``features``."""
    x = np.asarray(features, dtype=np.float64)
    e = np.broadcast_to(np.asarray(error, dtype=np.float64), x.shape)
    # mean: |mean(E)| <= mean(error); each route's float64 rounding, the other's mean|x| within mean|x| + mean(error)
    mu_tol = e.mean(axis=0) + mean_rounding_bound(x) + mean_rounding_bound(np.abs(x) + e)
    # covariance: the exact change that E can cause, then each route's float64 rounding (|x + E| <= |x| + error)
    sigma_tol = covariance_perturbation_bound(x, e) + covariance_rounding_bound(x) + covariance_rounding_bound(
        np.abs(x) + e)  # fmt: skip
    assert stats.n == len(x), f"{stats.n} items, expected {len(x)}"
    np.testing.assert_array_less(np.abs(stats.mu - x.mean(axis=0)), mu_tol)
    np.testing.assert_array_less(np.abs(stats.sigma - np.cov(x, rowvar=False)), sigma_tol)
