"""Synthetic features and reference statistics at full size, for timing the metric maths alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emogen_bench.metrics.fid import GaussianStats
from emogen_bench.metrics.pairwise import PairwiseSummary
from emogen_bench.task import EMOTION_NAMES, METRICS


def random_gaussian(dim: int, rng: np.random.Generator) -> GaussianStats:
    """A well-conditioned random Gaussian (full-rank covariance), as reference statistics of many images."""
    factor = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    return GaussianStats(rng.standard_normal(dim), factor @ factor.T + 0.01 * np.eye(dim), 100_000)


def reference_stats(dim: int = 2048, *, seed: int = 0, extractor_info=None):  # noqa: ANN001, ANN201
    """Reference statistics with random per-emotion and pooled Gaussians and random KID samples.

    With ``extractor_info`` (the Inception extractor's ``ExtractorInfo``) the
    metadata is complete, so the statistics can be written with
    ``write_reference_stats`` and used by ``evaluate``.
    """
    from emogen_bench import __version__
    from emogen_bench.reference_stats import (
        REFERENCE_FORMAT,
        REFERENCE_FORMAT_VERSION,
        ReferenceStats,
        extractor_identity,
    )
    from emogen_bench.task import PROTOCOL

    rng = np.random.default_rng(seed)
    metadata = {}
    if extractor_info is not None:
        metadata = {
            "format": REFERENCE_FORMAT,
            "format_version": REFERENCE_FORMAT_VERSION,
            "protocol": PROTOCOL,
            "benchmark_version": __version__,
            "index_digest": "synthetic",
            "split": "all",
            "n": 100_000 * len(EMOTION_NAMES),
            "counts": {emotion: 100_000 for emotion in EMOTION_NAMES},
            "kid_sample_counts": {emotion: METRICS.kid_reference_per_emotion for emotion in EMOTION_NAMES},
            "feature_dim": dim,
            "extractor": extractor_identity(extractor_info),
            "seed": seed,
            "created": "synthetic",
        }
    return ReferenceStats(
        per_emotion={emotion: random_gaussian(dim, rng) for emotion in EMOTION_NAMES},
        pooled=random_gaussian(dim, rng),
        kid_sample={
            emotion: rng.standard_normal((METRICS.kid_reference_per_emotion, dim), dtype=np.float32)
            for emotion in EMOTION_NAMES
        },
        metadata=metadata,
    )


def extraction(per_emotion: int, *, inception_dim: int = 2048, clip_dim: int = 768, seed: int = 0):  # noqa: ANN201
    """Random features of ``8 * per_emotion`` images shaped as ``extract`` returns them, and their items."""
    from emogen_bench.pipeline import ExtractionResult, ImageItem

    rng = np.random.default_rng(seed)
    n = per_emotion * len(EMOTION_NAMES)
    items = [
        ImageItem(path=Path(f"{e}/{i}.png"), relpath=f"{e}/{i}.png", sha256=f"{k:064x}", emotion=e)
        for k, (e, i) in enumerate((e, i) for e in EMOTION_NAMES for i in range(per_emotion))
    ]
    groups = METRICS.jackknife_groups
    features = {
        "inception": {"pool": rng.standard_normal((n, inception_dim), dtype=np.float32)},
        "clip": {
            "embedding": rng.standard_normal((n, clip_dim), dtype=np.float32),
            "emotion_logits": rng.standard_normal((n, len(EMOTION_NAMES)), dtype=np.float32),
        },
        "semantic": {
            "imagenet_max_prob": rng.random(n, dtype=np.float32),
            "places_max_prob": rng.random(n, dtype=np.float32),
        },
        "emoset": {"logits": rng.standard_normal((n, len(EMOTION_NAMES)), dtype=np.float32)},
    }
    lpips = {e: PairwiseSummary(0.7, np.full(groups, 0.7), per_emotion) for e in EMOTION_NAMES}
    result = ExtractionResult(features=features, lpips=lpips, timings={}, counts={})
    return items, result
