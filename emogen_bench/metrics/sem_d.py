"""Sem-D: exact all-pairs mean squared error between CLIP image embeddings within each emotion.

MSE of a pair = mean over the embedding dimensions of the squared difference,
so the all-pairs mean is ``mean pairwise squared distance / dim``, i.e.
``2 * trace(unbiased covariance) / dim``: exact, no pair sampling.  Overall =
mean over emotions, with the same jackknife as LPIPS.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.intervals import group_ids
from emogen_bench.metrics.pairwise import PairwiseAccumulator, PairwiseSummary, diversity_values
from emogen_bench.task import METRICS


def sem_d(
    embeddings_by_emotion: Mapping[str, np.ndarray],
    *,
    groups: int = METRICS.jackknife_groups,
    level: float = METRICS.ci_level,
) -> tuple[MetricValue, dict[str, MetricValue]]:
    """Overall and per-emotion Sem-D from ``(n, dim)`` embeddings in canonical order."""
    summaries: dict[str, PairwiseSummary] = {}
    for emotion, embeddings in embeddings_by_emotion.items():
        x = np.asarray(embeddings)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"sem_d: {emotion}: expected (n >= 2, dim) embeddings, got shape {x.shape}")
        accumulator = PairwiseAccumulator(x.shape[1], groups)
        accumulator.add(x, group_ids(x.shape[0], groups))
        summaries[emotion] = accumulator.summary().scaled(1.0 / x.shape[1])
    return diversity_values(summaries, level=level)
