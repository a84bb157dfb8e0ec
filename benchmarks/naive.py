"""The naive evaluation the fused pipeline replaces: every metric on its own, as the released scripts do.

Each metric decodes every image again and runs its own model pass; CLIP runs
twice (once for Emo-A, once for Sem-D); LPIPS is averaged over randomly
sampled pairs, two AlexNet forwards per pair (``lpips.LPIPS(x, y)``), each
pair's images read and decoded again.  Pairs go through the model 16 at a
time, which is kinder to the naive side than the released code's one pair
per call.  Only features are computed: the metric maths is the same on both
sides and is measured separately.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from emogen_bench.features.base import FeatureExtractor
from emogen_bench.pipeline import ImageItem, read_image
from emogen_bench.task import EMOTION_NAMES, METRICS

#: The naive per-metric passes: metric key -> the extractor it runs (CLIP twice).
NAIVE_PASSES: tuple[tuple[str, str], ...] = (
    ("fid", "inception"),
    ("emo_a", "clip"),
    ("sem_d", "clip"),
    ("sem_c", "semantic"),
    ("emo_a_resnet50", "emoset"),
)


def single_metric_pass(items: Sequence[ImageItem], extractor: FeatureExtractor) -> dict[str, np.ndarray]:
    """Decode every image, preprocess it for one extractor, run the model in batches of 16."""
    inputs = torch.stack([extractor.preprocess(read_image(item.path, item.sha256)) for item in items])
    return extractor(inputs)


def _load(extractor: FeatureExtractor, item: ImageItem) -> torch.Tensor:
    """Read, decode and preprocess one image again (the naive way: every time it is needed)."""
    return extractor.preprocess(read_image(item.path, item.sha256))


def sample_pairs(n: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``pairs`` random index pairs ``(i, j)``, ``i != j``, drawn with replacement from ``n`` images."""
    first = rng.integers(0, n, size=pairs)
    second = (first + rng.integers(1, n, size=pairs)) % n
    return np.stack([first, second], axis=1)


@torch.no_grad()
def lpips_sampled_pairs(
    items: Sequence[ImageItem], extractor: FeatureExtractor, pairs_per_emotion: int, *, seed: int = 0
) -> dict[str, float]:
    """Per emotion, the mean ``lpips.LPIPS(x, y)`` over ``pairs_per_emotion`` sampled pairs (2 forwards a pair)."""
    model = extractor.lpips_model  # type: ignore[attr-defined]
    to_float = extractor.model_input  # type: ignore[attr-defined]  # uint8 squares -> the [-1, 1] floats it reads
    rng = np.random.default_rng(seed)
    means = {}
    for emotion in EMOTION_NAMES:
        members = [item for item in items if item.emotion == emotion]
        if len(members) < 2:
            continue
        distances = []
        for start in range(0, pairs_per_emotion, METRICS.model_batch):
            chunk = sample_pairs(len(members), min(METRICS.model_batch, pairs_per_emotion - start), rng)
            left = torch.stack([_load(extractor, members[i]) for i in chunk[:, 0]])
            right = torch.stack([_load(extractor, members[j]) for j in chunk[:, 1]])
            distances.append(model(to_float(left), to_float(right)).flatten().numpy())
        means[emotion] = float(np.concatenate(distances).mean())
    return means


def naive_evaluate(
    items: Sequence[ImageItem], extractors: Mapping[str, FeatureExtractor], *, pairs_per_emotion: int, seed: int = 0
) -> dict[str, float]:
    """Run every naive pass; return the seconds each took (keys: metric names, ``lpips`` for the pairs)."""
    seconds = {}
    for metric, name in NAIVE_PASSES:
        started = time.perf_counter()
        single_metric_pass(items, extractors[name])
        seconds[metric] = time.perf_counter() - started
    started = time.perf_counter()
    lpips_sampled_pairs(items, extractors["lpips"], pairs_per_emotion, seed=seed)
    seconds["lpips"] = time.perf_counter() - started
    return seconds
