"""Sem-C against a direct numpy computation."""

from __future__ import annotations

import numpy as np
import pytest

from emogen_bench.metrics.intervals import bootstrap_mean_interval
from emogen_bench.metrics.sem_c import sem_c
from emogen_bench.task import EMOTION_NAMES


def inputs(n: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = np.sort(rng.integers(0, 8, size=n))
    return rng.uniform(0.0, 1.0, n).astype(np.float32), rng.uniform(0.0, 1.0, n).astype(np.float32), ids


def test_sem_c_is_the_mean_of_the_larger_top1_probability() -> None:
    imagenet, places, ids = inputs()
    clarity = np.where(imagenet > places, imagenet, places).astype(np.float64)
    overall, per_emotion = sem_c(imagenet, places, ids, seed=3)
    assert overall.value == pytest.approx(clarity.mean(), rel=1e-12)
    assert overall.n == 48
    assert overall.ci95 == bootstrap_mean_interval(clarity, seed=3)
    present = [EMOTION_NAMES[i] for i in sorted(set(ids.tolist()))]
    assert list(per_emotion) == present
    for name in present:
        mask = ids == EMOTION_NAMES.index(name)
        assert per_emotion[name].value == pytest.approx(clarity[mask].mean(), rel=1e-12)
        assert per_emotion[name].n == int(mask.sum())


def test_names_and_ids_give_the_same_result_and_the_seed_moves_only_the_interval() -> None:
    imagenet, places, ids = inputs()
    by_id = sem_c(imagenet, places, ids, seed=0)
    names = np.array([EMOTION_NAMES[i] for i in ids])
    assert sem_c(imagenet, places, names, seed=0) == by_id
    other = sem_c(imagenet, places, ids, seed=1)
    assert other[0].value == by_id[0].value and other[0].ci95 != by_id[0].ci95


def test_sem_c_refuses_unknown_emotions_and_misaligned_inputs() -> None:
    imagenet, places, ids = inputs(4)
    with pytest.raises(ValueError, match="unknown emotion"):
        sem_c(imagenet, places, np.array(["awe", "joy", "awe", "awe"]))
    with pytest.raises(ValueError, match="one value per image"):
        sem_c(imagenet[:3], places, ids)
