"""Emo-A (ResNet-50) features: the eight emotion logits of EmoGen's EmoSet ResNet-50 classifier.

Preprocessing is the one the classifier was trained with: ``Resize(256)``,
``CenterCrop(224)``, ``ToTensor()``, mean 0.5 / std 0.5 (torchvision on the PIL
image, as in :mod:`emogen_bench.features.semantic`, with other statistics).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from emogen_bench.features.base import ExtractorInfo, FeatureExtractor
from emogen_bench.features.semantic import ResizeCropNormalize
from emogen_bench.task import EMOTIONS

#: Registry id of the weights this extractor reads.
ARTIFACT_ID = "emo-resnet50-emoset"
#: Bump when the preprocessing below changes (it changes cache keys).
PREPROCESS_VERSION = "torchvision-resize-bilinear-centercrop/1"
EMOSET_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
EMOSET_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


class EmoSetExtractor(FeatureExtractor):
    """Outputs ``{"logits": (8,)}``, indexed like ``task.EMOTIONS``."""

    def __init__(self, model: nn.Module, artifacts: Mapping[str, str], *, smoke: bool = False) -> None:
        self.model = model
        self._preprocessor = ResizeCropNormalize(EMOSET_MEAN, EMOSET_STD)
        self.info = ExtractorInfo(
            name="emoset",
            outputs={"logits": (len(EMOTIONS),)},
            preprocess_version=f"{PREPROCESS_VERSION}:{self._preprocessor.describe()}",
            artifacts=dict(artifacts),
            smoke=smoke,
        )

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.model(batch).float()}
