"""Sem-C features: the maximum softmax probability of an ImageNet and of a Places365 ResNet-50.

Preprocessing is the released Sem-C code's torchvision pipeline on the PIL
image: ``Resize(256)`` (shorter side to 256, torchvision's default bilinear
interpolation, which on PIL images is PIL's antialiased bilinear filter),
``CenterCrop(224)``, ``ToTensor()``, ImageNet mean/std.  Both networks read the
same tensor.

The pipeline is split where it leaves 8 bits: data-loader workers run the PIL
stage (:class:`ResizeCrop`, the same value for Sem-C and EmoSet, so the pipeline
computes it once per image for both) and hand over uint8 tensors, a quarter of
the float32 bytes; ``forward`` turns them into the float32 input by a
:class:`ByteTable` on the model's device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from emogen_bench.features.base import ByteTable, ExtractorInfo, FeatureExtractor
from emogen_bench.task import METRICS

#: Registry ids of the weights this extractor reads.
IMAGENET_ARTIFACT_ID = "resnet50-imagenet-v1"
PLACES_ARTIFACT_ID = "resnet50-places365"
#: Bump when the preprocessing below changes (it changes cache keys).
PREPROCESS_VERSION = "torchvision-resize-bilinear-centercrop/1"
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ResizeCrop:
    """uint8 ``H x W x 3`` -> uint8 ``3 x crop x crop``: torchvision ``Resize(resize)`` + ``CenterCrop(crop)`` on PIL.

    The pixels ``ToTensor`` reads in the full pipeline, channels first, before its division by 255.
    """

    resize: int = METRICS.resnet_resize
    crop: int = METRICS.resnet_crop

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        from torchvision import transforms

        pipeline = transforms.Compose([transforms.Resize(self.resize), transforms.CenterCrop(self.crop)])
        pixels = np.array(pipeline(Image.fromarray(image)), dtype=np.uint8)
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def describe(resize: ResizeCrop, mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    """The settings of the whole pipeline, for the cache key (unchanged since the float32 handover)."""
    return f"{resize.resize}/{resize.crop}/mean={list(mean)}/std={list(std)}"


def byte_ramp(channels: int = 3) -> np.ndarray:
    """A ``1 x 256 x channels`` uint8 image whose column ``k`` is ``k`` in every channel."""
    return np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], channels, axis=2)


def to_tensor_normalize_table(mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``C x 256``: torchvision ``ToTensor()`` then ``Normalize(mean, std)`` of each 8-bit value (PIL input)."""
    from torchvision import transforms

    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    return pipeline(Image.fromarray(byte_ramp(len(mean)))).reshape(len(mean), 256)


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
        self._preprocessor = ResizeCrop()
        self.pixels = ByteTable(to_tensor_normalize_table(IMAGENET_MEAN, IMAGENET_STD))
        self.info = ExtractorInfo(
            name="semantic",
            outputs={"imagenet_max_prob": (), "imagenet_top1": (), "places_max_prob": (), "places_top1": ()},
            preprocess_version=f"{PREPROCESS_VERSION}:{describe(self._preprocessor, IMAGENET_MEAN, IMAGENET_STD)}",
            artifacts=dict(artifacts),
            smoke=smoke,
        )

    def model_input(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed uint8 pixels -> the float32 tensor both networks read (floats pass unchanged)."""
        return self.pixels(batch)

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        inputs = self.model_input(batch)
        outputs = {}
        for prefix, model in (("imagenet", self.imagenet_model), ("places", self.places_model)):
            probability, top1 = max_softmax(model(inputs))
            outputs[f"{prefix}_max_prob"] = probability
            outputs[f"{prefix}_top1"] = top1
        return outputs
