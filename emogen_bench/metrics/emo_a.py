"""Emo-A: top-1 emotion accuracy of a classifier's softmax against the target emotion.

Used for the CLIP head (``emo_a``) and the EmoSet ResNet-50 (``emo_a_resnet50``).
Beside the accuracy (Wilson ``ci95``): the mean probability given to the target
emotion and the polarity accuracy (summed probabilities of the positive
emotions against the negative ones, ties counted as positive, compared with the
target's polarity), as in the released evaluation code.  Overall ``extra`` has
the 8x8 confusion matrix (rows = target, columns = predicted, EmoSet order);
each emotion has its row of it as ``predicted``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.intervals import wilson_interval
from emogen_bench.task import EMOTION_NAMES, EMOTIONS, METRICS

_POSITIVE = np.array([e.polarity == "positive" for e in EMOTIONS])


def _scores(probabilities: np.ndarray, targets: np.ndarray, level: float) -> tuple[float, tuple[float, float], dict]:
    predicted = probabilities.argmax(axis=1)
    correct = int(np.count_nonzero(predicted == targets))
    positive_mass = probabilities[:, _POSITIVE].sum(axis=1)
    negative_mass = probabilities[:, ~_POSITIVE].sum(axis=1)
    polarity_right = (positive_mass >= negative_mass) == _POSITIVE[targets]
    extra: dict[str, Any] = {
        "mean_target_probability": float(probabilities[np.arange(targets.size), targets].mean()),
        "polarity_accuracy": float(polarity_right.mean()),
    }
    return correct / targets.size, wilson_interval(correct, targets.size, level), extra


def emo_a(
    probabilities: np.ndarray, targets: np.ndarray, *, level: float = METRICS.ci_level
) -> tuple[MetricValue, dict[str, MetricValue]]:
    """Overall and per-emotion Emo-A from ``(n, 8)`` probabilities and ``(n,)`` target ids.

    Per-emotion keys are emotion names in EmoSet order, for the emotions present.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    target = np.asarray(targets).ravel()
    classes = len(EMOTION_NAMES)
    if probs.ndim != 2 or probs.shape[1] != classes or probs.shape[0] != target.size or target.size == 0:
        raise ValueError(
            f"emo_a: expected (n, {classes}) probabilities and n targets, got {probs.shape} and {target.shape}"
        )
    if target.dtype.kind not in "iu" or target.min() < 0 or target.max() >= classes:
        raise ValueError(f"emo_a: targets must be integer emotion ids in [0, {classes})")
    if not np.all(np.isfinite(probs)):
        raise ValueError("emo_a: probabilities contain NaN or infinite values")
    target = target.astype(np.int64)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (target, probs.argmax(axis=1)), 1)

    value, ci95, extra = _scores(probs, target, level)
    overall = MetricValue(value, ci95, int(target.size), {"confusion": confusion.tolist(), **extra})
    per_emotion: dict[str, MetricValue] = {}
    for emotion_id, name in enumerate(EMOTION_NAMES):
        mask = target == emotion_id
        if mask.any():
            value, ci95, extra = _scores(probs[mask], target[mask], level)
            extra = {"predicted": confusion[emotion_id].tolist(), **extra}
            per_emotion[name] = MetricValue(value, ci95, int(mask.sum()), extra)
    return overall, per_emotion
