"""Sem-C features: the maximum softmax probability of an ImageNet and of a Places365 ResNet-50.

Preprocessing is the released Sem-C code's torchvision pipeline on the PIL
image: ``Resize(256)`` (shorter side to 256, torchvision's default bilinear
interpolation, which on PIL images is PIL's antialiased bilinear filter),
``CenterCrop(224)``, ``ToTensor()``, ImageNet mean/std.  Both networks read the
same tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from emogen_bench.features.base import ExtractorInfo, FeatureExtractor
from emogen_bench.task import METRICS

#: Registry ids of the weights this extractor reads.
IMAGENET_ARTIFACT_ID = "resnet50-imagenet-v1"
PLACES_ARTIFACT_ID = "resnet50-places365"
#: Bump when the preprocessing below changes (it changes cache keys).
PREPROCESS_VERSION = "torchvision-resize-bilinear-centercrop/1"
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ResizeCropNormalize:
    """torchvision ``Resize(resize)`` + ``CenterCrop(crop)`` + ``ToTensor`` + ``Normalize(mean, std)`` on PIL."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int = METRICS.resnet_resize
    crop: int = METRICS.resnet_crop

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        from torchvision import transforms

        pipeline = transforms.Compose(
            [
                transforms.Resize(self.resize),
                transforms.CenterCrop(self.crop),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
            ]
        )
        return pipeline(Image.fromarray(image))

    def describe(self) -> str:
        """The settings, for the cache key."""
        return f"{self.resize}/{self.crop}/mean={list(self.mean)}/std={list(self.std)}"


def max_softmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the largest softmax probability (float32) and its class index (int64)."""
    top = torch.softmax(logits.float(), dim=1).max(dim=1)
    return top.values, top.indices


class SemanticExtractor(FeatureExtractor):
    """Outputs ``imagenet_max_prob``, ``imagenet_top1``, ``places_max_prob``, ``places_top1`` (scalars per image)."""

    def __init__(
        self, imagenet_model: nn.Module, places_model: nn.Module, artifacts: Mapping[str, str], *, smoke: bool = False
    ) -> None:
        self.imagenet_model = imagenet_model
        self.places_model = places_model
        self._preprocessor = ResizeCropNormalize(IMAGENET_MEAN, IMAGENET_STD)
        self.info = ExtractorInfo(
            name="semantic",
            outputs={"imagenet_max_prob": (), "imagenet_top1": (), "places_max_prob": (), "places_top1": ()},
            preprocess_version=f"{PREPROCESS_VERSION}:{self._preprocessor.describe()}",
            artifacts=dict(artifacts),
            smoke=smoke,
        )

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = {}
        for prefix, model in (("imagenet", self.imagenet_model), ("places", self.places_model)):
            probability, top1 = max_softmax(model(batch))
            outputs[f"{prefix}_max_prob"] = probability
            outputs[f"{prefix}_top1"] = top1
        return outputs
