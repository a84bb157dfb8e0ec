"""LPIPS diversity: the exact mean LPIPS over all distinct pairs within each emotion.

LPIPS(x, y) = sum over layers of the spatial mean of sum_c w_c (f_x - f_y)^2
with unit-normalised features f, i.e. ``||phi_x - phi_y||^2`` once each
feature is scaled by ``sqrt(w_c / (H_l W_l))`` (the extractor does that).  So
the all-pairs mean is the variance identity of :mod:`pairwise`: exact, one
AlexNet forward per image, no pair sampling.  Overall = mean over emotions,
as in the paper.
"""

from __future__ import annotations

from collections.abc import Mapping

from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.pairwise import PairwiseAccumulator, PairwiseSummary, diversity_values
from emogen_bench.task import METRICS


def lpips_diversity(
    per_emotion: Mapping[str, PairwiseAccumulator | PairwiseSummary], *, level: float = METRICS.ci_level
) -> tuple[MetricValue, dict[str, MetricValue]]:
    """Overall and per-emotion LPIPS diversity, each with a delete-a-group jackknife ``ci95``."""
    summaries = {
        emotion: value.summary() if isinstance(value, PairwiseAccumulator) else value
        for emotion, value in per_emotion.items()
    }
    return diversity_values(summaries, level=level)
