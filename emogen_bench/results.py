"""The results document: what ``evaluate`` returns and writes, with its provenance.

Schema ``emogen-bench/results`` version 1 (docs/results.md).  Every number sits
under a stable metric key as ``{value, ci95, n, ...}``, beside everything needed
to reproduce or distrust it: protocol, run size, submission digest and manifest,
reference statistics, each weight artifact's hash and whether it is the official
one, the seed, software versions, device and time per stage.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from emogen_bench import __version__
from emogen_bench.errors import InvalidInputError
from emogen_bench.fileio import check_output_file, write_json_atomic
from emogen_bench.metrics import MetricValue
from emogen_bench.safe_read import read_json
from emogen_bench.task import EMOTION_NAMES, METRIC_KEYS

# The metric names and directions live in task.py; results documents are where most readers look for them.
from emogen_bench.task import LOWER_IS_BETTER as LOWER_IS_BETTER
from emogen_bench.task import METRIC_LABELS as METRIC_LABELS
from emogen_bench.task import PERCENT_METRICS as PERCENT_METRICS

SCHEMA = "emogen-bench/results"
SCHEMA_VERSION = 1


_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pillow", "transformers", "lpips", "clean-fid")


def environment(device: str) -> dict[str, Any]:
    """Software versions and the device, as recorded in every result."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": device,
    }
    try:
        import torch

        info["cuda"] = torch.version.cuda
        if device.startswith("cuda") and torch.cuda.is_available():
            info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    except ImportError:  # pragma: no cover - torch is a dependency
        info["cuda"] = None
    return info


@dataclass(frozen=True)
class EvaluationResult:
    """One evaluation of one submission under one protocol."""

    protocol: str
    run: dict[str, Any]
    smoke: bool
    submission: dict[str, Any]
    reference: dict[str, Any] | None
    artifacts: dict[str, Any]
    seed: int
    config: dict[str, Any]
    environment: dict[str, Any]
    timings: dict[str, float]
    overall: dict[str, MetricValue]
    per_emotion: dict[str, dict[str, MetricValue]]
    not_computed: dict[str, str] = field(default_factory=dict)
    features: dict[str, dict[str, int]] = field(default_factory=dict)
    protocol_version: int | None = None
    metrics_cached: bool = False
    benchmark_version: str = __version__
    created: str = ""

    @property
    def official_weights(self) -> bool:
        """True when every artifact used is the official pinned one (and none is a smoke model)."""
        return not self.smoke and all(a.get("official") for a in self.artifacts.values())

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON document (docs/results.md)."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "protocol": self.protocol,
            "protocol_version": self.protocol_version,
            "smoke": self.smoke,
            "benchmark_version": self.benchmark_version,
            "created": self.created,
            "run": self.run,
            "submission": self.submission,
            "reference": self.reference,
            "artifacts": self.artifacts,
            "official_weights": self.official_weights,
            "seed": self.seed,
            "config": self.config,
            "environment": self.environment,
            "timings": self.timings,
            "features": self.features,
            "metrics_cached": self.metrics_cached,
            "metrics": {
                "overall": {key: value.to_dict() for key, value in self.overall.items()},
                "per_emotion": {
                    emotion: {key: value.to_dict() for key, value in values.items()}
                    for emotion, values in self.per_emotion.items()
                },
            },
            "not_computed": self.not_computed,
        }

    def write(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the JSON document atomically; refuses to replace an existing file unless asked.

        Without ``overwrite`` the file is put in place with a hard link, so a file
        that appears under that name meanwhile is not replaced either.
        """
        submission = self.submission.get("path")
        path = check_output_file(path, overwrite=overwrite,
                                 inputs={"the submission": submission} if submission else None)  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json_atomic(path, self.to_dict(), overwrite=overwrite)


def read_results(path: str | Path) -> dict[str, Any]:
    """Read a results JSON and check its schema name and version; returns the document."""
    path = Path(path)
    document = read_json(path, "results document", InvalidInputError)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise InvalidInputError(f"{path}: not an emogen-bench results document (schema {SCHEMA!r} expected)")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise InvalidInputError(
            f"{path}: results schema version {document.get('schema_version')!r}; this tool reads {SCHEMA_VERSION}"
        )
    return document


def metric_keys_in(document: dict[str, Any]) -> list[str]:
    """The metric keys present in a results document, in table order."""
    overall = document.get("metrics", {}).get("overall", {})
    return [key for key in METRIC_KEYS if key in overall]


def emotions_in(document: dict[str, Any]) -> list[str]:
    """The emotions present in a results document, in EmoSet order."""
    per_emotion = document.get("metrics", {}).get("per_emotion", {})
    return [emotion for emotion in EMOTION_NAMES if emotion in per_emotion]
