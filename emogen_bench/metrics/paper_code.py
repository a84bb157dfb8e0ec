"""Metric maths of the ``emogen-paper-code`` protocol: what the EmoGen released scripts compute, quirks included.

Pure numpy on features and per-pair values the pipeline has already produced
(docs/paper_code.md lists every quirk and why it is reproduced):

- FID in torchmetrics' formulation: float64 sums ``sum x`` and ``sum x x^T``,
  ``mu = sum x / n``, ``cov = (sum x x^T - n mu mu^T) / (n - 1)``, and the trace
  term ``sum real(sqrt(eigvals(S1 @ S2)))`` of the non-symmetric product.
- LPIPS and Sem-D from a few seeded random pairs per emotion, drawn from a pool
  of ``*jpg`` files that is never reset between emotions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.fid import GaussianStats, feature_matrix
from emogen_bench.metrics.intervals import bootstrap_mean_interval
from emogen_bench.task import EMOTION_NAMES, METRICS

#: The released code reads only files whose name ends in this (case-sensitive: ``.JPG``, ``.jpeg``, ``.png`` are not).
JPG_SUFFIX = "jpg"
#: Beside the aggregated FID: which of the two numbers the paper's Table 1 shows is not stated.
AGGREGATE_NOTE = "aggregated FID of the pooled sums; the paper does not say whether Table 1 shows it or the mean"


# --- FID ------------------------------------------------------------------------------------------


class SumsAccumulator:
    """torchmetrics' FID state in float64: ``n``, ``sum x`` and ``sum x x^T`` (raw sums, no centring)."""

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"SumsAccumulator: dim must be >= 1, got {dim}")
        self.dim = dim
        self.n = 0
        self.total = np.zeros(dim, dtype=np.float64)
        self.outer = np.zeros((dim, dim), dtype=np.float64)

    def add(self, batch: np.ndarray) -> None:
        """Add feature vectors ``(b, d)`` (converted to float64 first, as torchmetrics does)."""
        x = feature_matrix(np.atleast_2d(batch), "SumsAccumulator.add", self.dim)
        self.n += x.shape[0]
        self.total += x.sum(axis=0)
        self.outer += x.T @ x

    def merge(self, other: SumsAccumulator) -> None:
        """Add another accumulator's sums (the pooled statistics are the sum of the emotions')."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge a {other.dim}-d accumulator into a {self.dim}-d one")
        self.n += other.n
        self.total += other.total
        self.outer += other.outer

    def stats(self) -> GaussianStats:
        """Mean and unbiased covariance from the sums: ``(sum x x^T - n mu mu^T) / (n - 1)``."""
        if self.n < 2:
            raise ValueError(f"Gaussian statistics need at least 2 feature vectors, got {self.n}")
        mu = self.total / self.n
        return GaussianStats(mu, (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1), self.n)


def sums_stats(x: np.ndarray) -> GaussianStats:
    """The statistics of ``(n, d)`` features computed from raw sums, as torchmetrics does."""
    features = feature_matrix(x, "sums_stats")
    accumulator = SumsAccumulator(features.shape[1])
    accumulator.add(features)
    return accumulator.stats()


def torchmetrics_frechet(real: GaussianStats, fake: GaussianStats) -> float:
    """``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 sum real(sqrt(eigvals(S1 @ S2)))`` in float64 (torchmetrics' order)."""
    if real.dim != fake.dim:
        raise ValueError(f"Fréchet distance: {fake.dim}-d statistics against a {real.dim}-d reference")
    diff = real.mu - fake.mu
    eigenvalues = np.linalg.eigvals(real.sigma @ fake.sigma).astype(np.complex128)
    trace_sqrt = float(np.sqrt(eigenvalues).real.sum())
    return float(diff @ diff + np.trace(real.sigma) + np.trace(fake.sigma) - 2.0 * trace_sqrt)


def paper_code_fid(
    features: np.ndarray,
    emotions: Sequence[str],
    reference_per_emotion: Mapping[str, GaussianStats],
    reference_pooled: GaussianStats,
) -> tuple[MetricValue, dict[str, MetricValue]]:
    """Per emotion: that emotion's generated features against its reference; overall: pooled sums against pooled.

    ``extra.mean_over_emotions`` beside the overall value is the mean of the
    per-emotion FIDs.  No interval: the released code has none.
    """
    x = feature_matrix(features, "paper_code_fid: generated", reference_pooled.dim)
    labels = np.asarray(emotions)
    per_emotion: dict[str, MetricValue] = {}
    for emotion in EMOTION_NAMES:
        rows = x[labels == emotion]
        if rows.shape[0] < 2:  # no covariance: the released code gets NaN; the emotion gets no FID here
            continue
        value = torchmetrics_frechet(reference_per_emotion[emotion], sums_stats(rows))
        per_emotion[emotion] = MetricValue(value, None, rows.shape[0], {"biased": True})
    pooled = torchmetrics_frechet(reference_pooled, sums_stats(x))
    mean = float(np.mean([v.value for v in per_emotion.values()])) if per_emotion else None
    overall = MetricValue(pooled, None, x.shape[0], {"mean_over_emotions": mean, "note": AGGREGATE_NOTE})
    return overall, per_emotion


# --- pair sampling --------------------------------------------------------------------------------


def is_jpg(name: str) -> bool:
    """Whether the released code reads this file: its name ends in ``jpg`` (case-sensitive)."""
    return name.endswith(JPG_SUFFIX)


@dataclass(frozen=True)
class PairPlan:
    """The sampled pairs: ``pairs[emotion]`` is ``(P, 2)`` indices into the ``*jpg`` files, in canonical order.

    ``pool_size[emotion]`` is how many files emotion's pairs were drawn from
    (its own and every earlier emotion's, EmoSet order).
    """

    pairs: Mapping[str, np.ndarray]
    pool_size: Mapping[str, int]


def sample_pairs(file_emotions: Sequence[str], emotions: Sequence[str], pairs: int, seed: int) -> PairPlan:
    """Draw ``pairs`` pairs of two distinct files per emotion, from a pool that is never reset.

    ``file_emotions`` is the emotion of each ``*jpg`` file in canonical order
    (emotion id, path); ``emotions`` the emotions to score.  One generator,
    ``numpy.random.default_rng(seed)``, serves every emotion in EmoSet order;
    emotion k's pool holds the files of emotions 1..k, as in the released code.
    Raises ``ValueError`` naming the emotion whose pool has fewer than 2 files.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    labels = np.asarray(file_emotions)
    order = {e: i for i, e in enumerate(EMOTION_NAMES)}
    if labels.size and np.any(np.diff([order[e] for e in labels]) < 0):
        raise ValueError("sample_pairs: files must be in canonical order (EmoSet emotion order)")
    rng = np.random.default_rng(seed)
    drawn: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for emotion in sorted(set(emotions), key=order.__getitem__):
        pool = int(np.sum([order[e] <= order[emotion] for e in labels]))
        if pool < 2:
            raise ValueError(f"{emotion}: only {pool} *{JPG_SUFFIX} file(s) in the pool; a pair needs 2")
        drawn[emotion] = np.array([rng.choice(pool, size=2, replace=False) for _ in range(pairs)], dtype=np.int64)
        sizes[emotion] = pool
    return PairPlan(drawn, sizes)


def pair_mse(pair_embeddings: np.ndarray) -> np.ndarray:
    """Sem-D of each pair of ``(P, 2, dim)`` embeddings: mean over dimensions of the squared difference, float64."""
    x = np.asarray(pair_embeddings, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] != 2:
        raise ValueError(f"pair_mse: expected (pairs, 2, dim) embeddings, got shape {x.shape}")
    return np.mean((x[:, 0] - x[:, 1]) ** 2, axis=1)


def stratified_bootstrap_interval(
    values_by_emotion: Mapping[str, np.ndarray],
    *,
    seed: int,
    samples: int = METRICS.bootstrap_samples,
    level: float = METRICS.ci_level,
) -> tuple[float, float]:
    """Percentile interval of the mean over emotions of per-emotion pair means, pairs resampled within each."""
    rng = np.random.default_rng(seed)
    replicates = np.zeros(samples, dtype=np.float64)
    for emotion in values_by_emotion:
        x = np.asarray(values_by_emotion[emotion], dtype=np.float64)
        replicates += x[rng.integers(0, x.size, size=(samples, x.size))].mean(axis=1)
    replicates /= len(values_by_emotion)
    alpha = 1.0 - level
    lo, hi = np.quantile(replicates, [alpha / 2, 1.0 - alpha / 2])
    return float(lo), float(hi)


def pair_metric(
    values_by_emotion: Mapping[str, np.ndarray],
    plan: PairPlan,
    file_emotions: Sequence[str],
    *,
    seed: int,
    skipped: int,
) -> tuple[MetricValue, dict[str, MetricValue]]:
    """LPIPS or Sem-D: mean over each emotion's pairs, then mean over emotions; seeded bootstrap ``ci95``.

    ``n`` is the number of distinct files in the pairs; ``extra`` says how many
    pairs, how many cross emotions, the pool size and (overall) how many files
    were skipped for not ending in ``jpg``.
    """
    labels = np.asarray(file_emotions)
    per_emotion: dict[str, MetricValue] = {}
    for emotion, values in values_by_emotion.items():
        pairs = plan.pairs[emotion]
        extra = {
            "pairs": int(len(pairs)),
            "cross_emotion_pairs": int(np.sum(np.any(labels[pairs] != emotion, axis=1))),
            "pool": int(plan.pool_size[emotion]),
        }
        ci95 = bootstrap_mean_interval(values, seed=seed)
        per_emotion[emotion] = MetricValue(float(np.mean(values)), ci95, int(np.unique(pairs).size), extra)
    every = np.concatenate([plan.pairs[e] for e in values_by_emotion])
    overall = MetricValue(
        float(np.mean([v.value for v in per_emotion.values()])),
        stratified_bootstrap_interval(values_by_emotion, seed=seed),
        int(np.unique(every).size),
        {
            "pairs": int(len(every)),
            "cross_emotion_pairs": int(sum(v.extra["cross_emotion_pairs"] for v in per_emotion.values())),
            "jpg_files": int(labels.size),
            "skipped_non_jpg": int(skipped),
        },
    )
    return overall, per_emotion
