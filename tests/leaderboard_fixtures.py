"""Leaderboard entry documents built in code (schema ``emogen-bench/leaderboard-entry`` v1), for the tests.

``entry_document`` writes a complete, valid entry of each status; tests change
one field to make each kind of bad entry.  ``results_document`` is a complete
results JSON (``emogen-bench/results`` v1) of an official run with official
weights, the input of ``emogen-bench leaderboard add``: its manifest, counts and
digest agree, as ``leaderboard add`` checks; ``pinning_registry`` is a weights
registry that pins its weights and reference statistics (a verified entry needs that).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from emogen_bench.hashing import digest_listing, sha256_bytes
from emogen_bench.protocols import PROTOCOLS
from emogen_bench.task import EMOTION_NAMES
from emogen_bench.weights.registry import Registry, parse_registry

ENTRY_SCHEMA = "emogen-bench/leaderboard-entry"
DIGEST = "sha256:" + "ab" * 32

#: Metric keys of each protocol, in table order.
PROTOCOL_METRICS = {
    "eicg-v3": ("fid", "kid", "lpips", "emo_a", "emo_a_resnet50", "sem_c", "sem_d"),
    "emogen-paper-code": ("fid", "lpips", "emo_a", "sem_c", "sem_d"),
}


#: The digests ``results_document`` records for its weights: ``sha256:`` over each artifact's (file, sha256) listing.
ARTIFACT_DIGESTS = {
    "clip-vit-l14": digest_listing([("model.safetensors", "c" * 64)]),
    "inception-fid": digest_listing([("inception-2015-12-05.pt", "d" * 64)]),
}
REFERENCE_SHA256 = "e" * 64


def _value(value: float, n: int | None, ci: bool) -> dict[str, Any]:
    return {"value": value, "ci95": [value * 0.95, value * 1.05] if ci else None, "n": n}


def metric_block(protocol: str, base: float, *, per_emotion: bool, ci: bool = True) -> dict[str, Any]:
    """``{"overall": {...}, "per_emotion": {...}}`` with deterministic values derived from ``base``."""
    keys = PROTOCOL_METRICS[protocol]
    scale = {"fid": 40.0, "kid": 0.01, "lpips": 0.7, "emo_a": 0.7, "emo_a_resnet50": 0.6, "sem_c": 0.6, "sem_d": 0.03}
    overall = {key: _value(round(scale[key] * base, 6), 8000 if ci else None, ci) for key in keys}
    emotions: dict[str, Any] = {}
    if per_emotion:
        for i, emotion in enumerate(EMOTION_NAMES):
            factor = base * (0.9 + 0.025 * i)
            emotions[emotion] = {key: _value(round(scale[key] * factor, 6), 1000, ci) for key in keys}
    return {"overall": overall, "per_emotion": emotions}


def provenance(protocol: str = "eicg-v3") -> dict[str, Any]:
    """The provenance block of a self-reported or verified entry."""
    return {
        "benchmark_version": "0.1.0",
        "results_schema_version": 1,
        "created": "2026-11-27T00:00:00+00:00",
        "submission_digest": DIGEST,
        "n_images": 8000,
        "counts": {emotion: 1000 for emotion in EMOTION_NAMES},
        "run_kind": "official",
        "official_weights": True,
        "artifacts": {"clip-vit-l14": "c" * 64, "inception-fid": "d" * 64},
        "reference_sha256": "e" * 64,
        "seed": 0,
        "environment": {"python": "3.11.7", "torch": "2.14.1", "device": "cuda:0"},
    }


def entry_document(
    method: str = "Method A",
    *,
    status: str = "self-reported",
    protocol: str = "eicg-v3",
    base: float = 1.0,
    slug: str | None = None,
) -> dict[str, Any]:
    """A valid leaderboard entry; ``published`` entries carry a citation and no provenance or per-emotion data."""
    slug = slug or method.lower().replace(" ", "-")
    published = status == "published"
    return {
        "schema": ENTRY_SCHEMA,
        "schema_version": 1,
        "id": f"{protocol}/{slug}",
        "method": method,
        "status": status,
        "protocol": protocol,
        "paper": "https://example.org/paper",
        "code": None,
        "added": "2026-11-27",
        "citation": {
            "reference": "Example et al., An example method, 2024",
            "where": ["Table 1, p. 6"],
            "url": "https://example.org/paper",
        }
        if published
        else None,
        "verified_by": "maintainer" if status == "verified" else None,
        "notes": None,
        "provenance": None if published else provenance(protocol),
        "metrics": metric_block(protocol, base, per_emotion=not published, ci=not published),
        "user_study": None,
    }


def submission_block(per_emotion: int = 1000, emotions: Sequence[str] = EMOTION_NAMES) -> dict[str, Any]:
    """The ``submission`` block evaluate writes for ``per_emotion`` images of each of ``emotions``: the manifest of
    ``[path, sha256]`` pairs, and the image count, counts and digest made from it."""
    manifest = sorted(
        [f"{emotion}/{index:04d}.png", sha256_bytes(f"{emotion}/{index}".encode())]
        for emotion in emotions
        for index in range(per_emotion)
    )
    return {
        "path": "/data/submission",
        "digest": digest_listing([(path, sha256) for path, sha256 in manifest]),
        "n_images": len(manifest),
        "counts": {emotion: per_emotion for emotion in emotions},
        "metadata_sha256": None,
        "metadata": None,
        "manifest": manifest,
    }


def pinning_registry(protocol: str = "eicg-v3") -> Registry:
    """A weights registry that pins the weights and the reference statistics of ``results_document(protocol)``."""

    def artifact(name: str, sha256: str) -> dict[str, Any]:
        file = {"name": name, "urls": [f"https://example.org/{name}"], "pin": "sha256", "sha256": sha256}
        return {"description": "d", "used_by": ["fid"], "license": "l", "loader": "tensor-files", "files": [file]}

    clip = {"repo_id": "openai/clip-vit-large-patch14", "revision": "3" * 40, "allow_patterns": ["*"],
            "required_files": ["model.safetensors"]}  # fmt: skip
    artifacts = {
        "clip-vit-l14": {"description": "d", "used_by": ["emo_a"], "license": "l", "loader": "hf-snapshot", "hf": clip},
        "inception-fid": artifact("inception-2015-12-05.pt", "d" * 64),
        f"ref-stats-{protocol}": artifact("ref.npz", REFERENCE_SHA256),
    }
    return parse_registry({"schema": 1, "artifacts": artifacts}, source="test registry")


def results_document(protocol: str = "eicg-v3", *, base: float = 1.0) -> dict[str, Any]:
    """A complete results JSON of an official run with official weights (what ``evaluate`` writes)."""
    block = metric_block(protocol, base, per_emotion=True)
    return copy.deepcopy(
        {
            "schema": "emogen-bench/results",
            "schema_version": 1,
            "protocol": protocol,
            "protocol_version": PROTOCOLS[protocol].version if protocol in PROTOCOLS else 1,
            "smoke": False,
            "benchmark_version": "0.1.0",
            "created": "2026-11-27T00:00:00+00:00",
            "run": {"kind": "official", "per_emotion": 1000, "label": "official"},
            "submission": submission_block(),
            "reference": {"sha256": REFERENCE_SHA256, "protocol": protocol},
            "artifacts": {
                name: {"digest": digest, "official": True, "overridden": False}
                for name, digest in ARTIFACT_DIGESTS.items()
            },
            "official_weights": True,
            "seed": 0,
            "config": {"metrics": list(PROTOCOL_METRICS[protocol]), "seed": 0},
            "environment": {"python": "3.11.7", "packages": {"torch": "2.14.1"}, "device": "cuda:0"},
            "timings": {},
            "features": {},
            "metrics_cached": False,
            "metrics": block,
            "not_computed": {},
        }
    )
