"""Emo-A (ResNet-50) features: the eight emotion logits of EmoGen's EmoSet ResNet-50 classifier.

Preprocessing is the one the classifier was trained with: ``Resize(256)``,
``CenterCrop(224)``, ``ToTensor()``, mean 0.5 / std 0.5 (torchvision on the PIL
image, as in :mod:`emogen_bench.features.semantic`, with other statistics).
Workers hand over the 8-bit stage (:class:`~emogen_bench.features.semantic.ResizeCrop`,
the very value Sem-C uses, so it is computed once per image for both); ``forward``
makes the float32 input on the device by a lookup table.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from emogen_bench.features.base import ByteTable, ExtractorInfo, FeatureExtractor
from emogen_bench.features.semantic import ResizeCrop, describe, to_tensor_normalize_table
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
        self._preprocessor = ResizeCrop()
        self.pixels = ByteTable(to_tensor_normalize_table(EMOSET_MEAN, EMOSET_STD))
        self.info = ExtractorInfo(
            name="emoset",
            outputs={"logits": (len(EMOTIONS),)},
            preprocess_version=f"{PREPROCESS_VERSION}:{describe(self._preprocessor, EMOSET_MEAN, EMOSET_STD)}",
            artifacts=dict(artifacts),
            smoke=smoke,
        )

    def model_input(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed uint8 pixels -> the float32 tensor the network reads (floats pass unchanged)."""
        return self.pixels(batch)

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.model(self.model_input(batch)).float()}
