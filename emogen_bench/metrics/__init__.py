"""Metric maths: features in, :class:`MetricValue` out.

Pure numpy/scipy on arrays that the pipeline has already extracted: no models,
no files, no torch.  Every reduction runs in float64 in the order the rows are
given (the canonical image order), and every random draw comes from
``numpy.random.default_rng(seed)``, so a metric is a deterministic function of
its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricValue:
    """One metric over one scope (all images or one emotion).

    ``n`` is the number of generated images the value comes from; ``ci95`` is
    ``None`` where no interval is defined (e.g. per-emotion FID, or a diversity
    with too few images to leave a group out).  ``extra`` holds JSON-able detail
    written beside the value (``biased``, ``std``, ``confusion``, ...).
    """

    value: float
    ci95: tuple[float, float] | None
    n: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"value", "ci95": [lo, hi] or None, "n", **extra}`` with plain Python numbers."""
        ci95 = None if self.ci95 is None else [float(self.ci95[0]), float(self.ci95[1])]
        return {"value": float(self.value), "ci95": ci95, "n": int(self.n), **dict(self.extra)}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> MetricValue:
        """The inverse of :meth:`to_dict` (``extra`` is every key besides value, ci95 and n)."""
        ci95 = document["ci95"]
        extra = {k: v for k, v in document.items() if k not in ("value", "ci95", "n")}
        return cls(
            value=float(document["value"]),
            ci95=None if ci95 is None else (float(ci95[0]), float(ci95[1])),
            n=int(document["n"]),
            extra=extra,
        )


# The metric modules import MetricValue from this package, so they are imported after it is defined.
from emogen_bench.metrics.emo_a import emo_a  # noqa: E402
from emogen_bench.metrics.fid import (  # noqa: E402
    FrechetReference,
    GaussianStats,
    StatsAccumulator,
    fid,
    fid_leave_one_group_out,
    frechet_distance,
)
from emogen_bench.metrics.intervals import (  # noqa: E402
    bootstrap_mean_interval,
    group_ids,
    group_sizes,
    jackknife_interval,
    wilson_interval,
)
from emogen_bench.metrics.kid import kid, mmd2_unbiased  # noqa: E402
from emogen_bench.metrics.lpips import lpips_diversity  # noqa: E402
from emogen_bench.metrics.pairwise import (  # noqa: E402
    PairwiseAccumulator,
    PairwiseSummary,
    diversity_values,
    mean_pairwise_sq_distance,
)
from emogen_bench.metrics.sem_c import sem_c  # noqa: E402
from emogen_bench.metrics.sem_d import sem_d  # noqa: E402

__all__ = [
    "FrechetReference",
    "GaussianStats",
    "MetricValue",
    "PairwiseAccumulator",
    "PairwiseSummary",
    "StatsAccumulator",
    "bootstrap_mean_interval",
    "diversity_values",
    "emo_a",
    "fid",
    "fid_leave_one_group_out",
    "frechet_distance",
    "group_ids",
    "group_sizes",
    "jackknife_interval",
    "kid",
    "lpips_diversity",
    "mean_pairwise_sq_distance",
    "mmd2_unbiased",
    "sem_c",
    "sem_d",
    "wilson_interval",
]
