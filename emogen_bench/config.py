"""Evaluation settings: the one place their defaults live.

``emogen-bench evaluate`` builds its options from :class:`EvalConfig`'s field
defaults, and :func:`emogen_bench.evaluate` takes the same object, so the CLI and
the Python API can never disagree.  Settings here change how the work is done
(device, batch size, cache), never what a number means: those are protocol
constants in :mod:`emogen_bench.task`.  Two exceptions are recorded with every
result: the seed (KID's subsets, the bootstrap, the paper-code pair sampling)
and the ``protocol`` (:mod:`emogen_bench.protocols`), which names the
definitions the numbers follow; ``pairs`` belongs to the ``emogen-paper-code``
protocol (random pairs per emotion for its LPIPS and Sem-D) and is ignored by
``eicg-v3``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError
from emogen_bench.protocols import get_protocol
from emogen_bench.task import DEFAULT_SEED, METRIC_KEYS, PROTOCOL

OUTPUT_FORMATS = ("table", "json", "markdown", "csv")


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate a submission; every field has the default the CLI shows.

    ``metrics=None`` means every metric of ``protocol``; a metric the protocol
    does not define is a usage error.
    """

    metrics: tuple[str, ...] | None = None
    per_emotion: int | None = None
    reference_stats: Path | None = None
    device: str = "auto"
    batch_size: int = 32
    num_workers: int = 2
    seed: int = DEFAULT_SEED
    cache: bool = True
    weights_override: Path | None = None
    show_progress: bool = True
    protocol: str = PROTOCOL
    pairs: int = 10

    def __post_init__(self) -> None:
        protocol = get_protocol(self.protocol)
        metrics = protocol.metrics if self.metrics is None else tuple(self.metrics)
        unknown = [m for m in metrics if m not in METRIC_KEYS]
        if unknown or not metrics:
            raise UsageError(
                f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRIC_KEYS)}"
            )
        foreign = [m for m in metrics if m not in protocol.metrics]
        if foreign:
            raise UsageError(
                f"metric(s) {', '.join(foreign)} are not defined under protocol {protocol.name}; "
                f"its metrics are {', '.join(protocol.metrics)}"
            )
        check_seed(self.seed)
        check_device(self.device)
        if isinstance(self.pairs, bool) or not isinstance(self.pairs, int) or self.pairs < 1:
            raise UsageError(f"pairs per emotion must be an integer of at least 1 (got {self.pairs!r})")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1 (got {self.batch_size})")
        if self.num_workers < 0:
            raise UsageError(f"number of workers must be 0 or more (got {self.num_workers})")
        object.__setattr__(self, "metrics", tuple(m for m in METRIC_KEYS if m in metrics))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, recorded in every result."""
        document = asdict(self)
        document["metrics"] = list(self.metrics)
        for key in ("reference_stats", "weights_override"):
            document[key] = None if document[key] is None else str(document[key])
        document.pop("show_progress")
        return document


#: Devices a command accepts: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")
#: Seeds are non-negative and fit 63 bits (numpy, torch and the per-image seed derivation all take them).
MAX_SEED = 2**63 - 1


def check_device(device: str) -> str:
    """``device`` if a command can compute on it; a usage error for ``foo`` or ``meta`` (which holds no data)."""
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise UsageError(f"device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def check_seed(seed: int) -> int:
    """``seed`` if it is an integer in [0, 2**63 - 1]; a usage error otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed {seed!r}: expected an integer from 0 to {MAX_SEED}")
    return seed


def parse_metrics(text: str, protocol: str = PROTOCOL) -> tuple[str, ...]:
    """``"fid,lpips"`` -> ``("fid", "lpips")``; ``"all"`` -> every metric of ``protocol``."""
    if text.strip() == "all":
        return get_protocol(protocol).metrics
    return tuple(part.strip() for part in text.split(",") if part.strip())
