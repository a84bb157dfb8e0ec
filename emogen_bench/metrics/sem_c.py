"""Sem-C: per image the larger of the ImageNet and Places365 top-1 probabilities; their mean.

Overall over all images and per emotion, each with a seeded percentile
bootstrap ``ci95`` over images (:func:`intervals.bootstrap_mean_interval`).
"""

from __future__ import annotations

import numpy as np

from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.intervals import bootstrap_mean_interval
from emogen_bench.task import DEFAULT_SEED, EMOTION_NAMES, METRICS


def emotion_names(emotions: np.ndarray) -> np.ndarray:
    """Emotion labels as names, whether given as names or as EmoSet class ids."""
    labels = np.asarray(emotions)
    if labels.dtype.kind in "iu":
        if labels.size and (labels.min() < 0 or labels.max() >= len(EMOTION_NAMES)):
            raise ValueError(f"emotion ids must be in [0, {len(EMOTION_NAMES)})")
        return np.asarray(EMOTION_NAMES, dtype=object)[labels]
    unknown = sorted(set(labels.tolist()) - set(EMOTION_NAMES))
    if unknown:
        raise ValueError(f"unknown emotion(s) {unknown}; expected one of {', '.join(EMOTION_NAMES)}")
    return labels.astype(object)


def sem_c(
    imagenet_max_prob: np.ndarray,
    places_max_prob: np.ndarray,
    emotions: np.ndarray,
    *,
    seed: int = DEFAULT_SEED,
    samples: int = METRICS.bootstrap_samples,
    level: float = METRICS.ci_level,
) -> tuple[MetricValue, dict[str, MetricValue]]:
    """Overall and per-emotion Sem-C (per-emotion keys in EmoSet order, present emotions only)."""
    imagenet = np.asarray(imagenet_max_prob, dtype=np.float64).ravel()
    places = np.asarray(places_max_prob, dtype=np.float64).ravel()
    names = emotion_names(np.asarray(emotions).ravel())
    if not (imagenet.shape == places.shape == names.shape) or imagenet.size == 0:
        raise ValueError(
            f"sem_c: need one value per image from each classifier and one emotion each, got "
            f"{imagenet.shape}, {places.shape} and {names.shape}"
        )
    clarity = np.maximum(imagenet, places)

    def value(scores: np.ndarray) -> MetricValue:
        ci95 = bootstrap_mean_interval(scores, seed=seed, samples=samples, level=level)
        return MetricValue(float(scores.mean()), ci95, int(scores.size))

    per_emotion = {e: value(clarity[names == e]) for e in EMOTION_NAMES if np.any(names == e)}
    return value(clarity), per_emotion
