"""Emo-A against direct numpy counting: accuracy, confusion, target probability, polarity, Wilson."""

from __future__ import annotations

import numpy as np
import pytest

from emogen_bench.metrics.emo_a import emo_a
from emogen_bench.metrics.intervals import wilson_interval
from emogen_bench.task import EMOTION_NAMES


def inputs(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = np.sort(rng.integers(0, 8, size=n))
    logits = rng.normal(size=(n, 8))
    logits[np.arange(n), targets] += 1.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probabilities.astype(np.float32), targets


def test_overall_matches_direct_counting() -> None:
    probabilities, targets = inputs()
    overall, _ = emo_a(probabilities, targets)
    correct = sum(int(np.argmax(p) == t) for p, t in zip(probabilities, targets))
    confusion = [[0] * 8 for _ in range(8)]
    for p, t in zip(probabilities, targets):
        confusion[t][int(np.argmax(p))] += 1
    polarity = np.mean([(p[:4].sum() >= p[4:].sum()) == (t <= 3) for p, t in zip(probabilities, targets)])
    assert overall.value == correct / 64 and overall.n == 64
    assert overall.ci95 == wilson_interval(correct, 64)
    assert overall.extra["confusion"] == confusion
    assert overall.extra["mean_target_probability"] == pytest.approx(
        np.mean([float(p[t]) for p, t in zip(probabilities, targets)]), rel=1e-12
    )
    assert overall.extra["polarity_accuracy"] == pytest.approx(polarity, rel=1e-12)


def test_per_emotion_values_are_the_same_computation_on_each_subset() -> None:
    probabilities, targets = inputs(seed=1)
    overall, per_emotion = emo_a(probabilities, targets)
    assert list(per_emotion) == [EMOTION_NAMES[i] for i in sorted(set(targets.tolist()))]
    for name, value in per_emotion.items():
        mask = targets == EMOTION_NAMES.index(name)
        sub_overall, _ = emo_a(probabilities[mask], targets[mask])
        assert (value.value, value.ci95, value.n) == (sub_overall.value, sub_overall.ci95, int(mask.sum()))
        assert value.extra["predicted"] == overall.extra["confusion"][EMOTION_NAMES.index(name)]
        assert value.extra["polarity_accuracy"] == sub_overall.extra["polarity_accuracy"]


def test_perfect_and_hopeless_classifiers() -> None:
    targets = np.arange(8).repeat(2)
    perfect = np.eye(8)[targets]
    overall, _ = emo_a(perfect, targets)
    assert overall.value == 1.0 and overall.extra["polarity_accuracy"] == 1.0 and overall.ci95[1] == 1.0
    opposite = np.eye(8)[(targets + 4) % 8]
    overall, _ = emo_a(opposite, targets)
    assert overall.value == 0.0 and overall.extra["polarity_accuracy"] == 0.0 and overall.ci95[0] == 0.0


def test_emo_a_refuses_malformed_inputs() -> None:
    probabilities, targets = inputs(8)
    with pytest.raises(ValueError, match="probabilities"):
        emo_a(probabilities[:, :7], targets)
    with pytest.raises(ValueError, match="targets"):
        emo_a(probabilities, targets + 8)
