"""Evaluation settings: the one place their defaults live.

``emogen-bench evaluate`` builds its options from :class:`EvalConfig`'s field
defaults, and :func:`emogen_bench.evaluate` takes the same object, so the CLI and
the Python API can never disagree.  Settings here change how the work is done
(device, batch size, cache), never what a number means: those are protocol
constants in :mod:`emogen_bench.task`.  The seed is the exception that is
recorded with every result: it drives KID's subsets and the bootstrap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError
from emogen_bench.task import DEFAULT_SEED, METRIC_KEYS

OUTPUT_FORMATS = ("table", "json", "markdown", "csv")


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate a submission; every field has the default the CLI shows."""

    metrics: tuple[str, ...] = METRIC_KEYS
    per_emotion: int | None = None
    reference_stats: Path | None = None
    device: str = "auto"
    batch_size: int = 32
    num_workers: int = 2
    seed: int = DEFAULT_SEED
    cache: bool = True
    weights_override: Path | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRIC_KEYS]
        if unknown or not self.metrics:
            raise UsageError(
                f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRIC_KEYS)}"
            )
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1 (got {self.batch_size})")
        if self.num_workers < 0:
            raise UsageError(f"number of workers must be 0 or more (got {self.num_workers})")
        ordered = tuple(m for m in METRIC_KEYS if m in self.metrics)
        object.__setattr__(self, "metrics", ordered)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, recorded in every result."""
        document = asdict(self)
        document["metrics"] = list(self.metrics)
        for key in ("reference_stats", "weights_override"):
            document[key] = None if document[key] is None else str(document[key])
        document.pop("show_progress")
        return document


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"fid,lpips"`` -> ``("fid", "lpips")``; ``"all"`` -> every metric."""
    if text.strip() == "all":
        return METRIC_KEYS
    return tuple(part.strip() for part in text.split(",") if part.strip())
