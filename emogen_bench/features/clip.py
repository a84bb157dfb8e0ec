"""Emo-A and Sem-D features: one CLIP ViT-L/14 image forward gives the embedding and the emotion logits.

Preprocessing is the PIL pipeline of transformers 4.x's ``CLIPImageProcessor``
(shortest side 224 bicubic, centre crop 224, rescale by 1/255 exactly once,
CLIP mean/std), written out in :mod:`emogen_bench.features.clip_pixels` so the
pixels do not depend on the installed transformers (version 5 resizes with
torchvision, 1-3 levels of 8 bits away).  The settings come from the
snapshot's ``preprocessor_config.json`` and enter the cache key.  The released
EmoGen code scaled images to [0, 1] before the processor, which divided by 255
again, so CLIP saw nearly uniform images; :func:`double_rescaled` reproduces
that bug, used only by the ``emogen-paper-code`` protocol's pair stage
(:mod:`emogen_bench.features.paper_code`).

Data-loader workers hand over the 8-bit stage (resized and cropped, uint8); the
float stage (rescale, mean/std), elementwise, is a lookup table of its 256 values
per channel applied on the model's device, so the model sees bitwise the pixels
:func:`~emogen_bench.features.clip_pixels.clip_pixels` makes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from emogen_bench.errors import WeightsError
from emogen_bench.features.base import ByteTable, ExtractorInfo, FeatureExtractor
from emogen_bench.features.clip_pixels import (
    PIPELINE_VERSION,
    ClipPixelSettings,
    clip_pixels_double_rescaled,
    float_stage_table,
    resized_and_cropped,
)
from emogen_bench.task import EMOTIONS

#: Registry ids of the weights this extractor reads.
VISION_ARTIFACT_ID = "clip-vit-l14"
HEAD_ARTIFACT_ID = "emo-head-clip"
#: Bump when the way the pixels are made changes (it changes cache keys).
PREPROCESS_VERSION = PIPELINE_VERSION


def pixel_settings(source: ClipPixelSettings | Any) -> ClipPixelSettings:
    """Settings from a :class:`ClipPixelSettings` or any transformers image processor (only its settings are read)."""
    return source if isinstance(source, ClipPixelSettings) else ClipPixelSettings.from_processor(source)


def processor_settings(source: ClipPixelSettings | Any) -> dict[str, Any]:
    """The output-determining settings and the pipeline version, as plain JSON values."""
    return {"pipeline": PIPELINE_VERSION, **pixel_settings(source).to_dict()}


@dataclass(frozen=True)
class ClipPreprocess:
    """uint8 ``H x W x 3`` -> uint8 ``3 x S x S``: the 8-bit stage of the CLIP pixels (picklable, holds no model)."""

    settings: ClipPixelSettings

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        pixels = resized_and_cropped(image, self.settings)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.uint8))


def double_rescaled(settings: ClipPixelSettings | Any, image: np.ndarray) -> torch.Tensor:
    """The released code's bug (emogen-paper-code only): ``ToTensor`` output in [0, 1] given to the processor."""
    return torch.from_numpy(clip_pixels_double_rescaled(image, pixel_settings(settings)))


def _linear_in_features(module: nn.Module) -> int:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            return layer.in_features
    raise WeightsError(f"the {HEAD_ARTIFACT_ID} emotion head has no linear layer")


def _check_rescaled_once(settings: ClipPixelSettings) -> None:
    if not settings.rescales_once:
        raise WeightsError(
            f"the {VISION_ARTIFACT_ID} image processor must rescale 8-bit images by 1/255 exactly once "
            f"(found do_rescale={settings.do_rescale}, rescale_factor={settings.rescale_factor}); "
            "its preprocessor_config.json is not the pinned one: fetch the snapshot again."
        )


class ClipExtractor(FeatureExtractor):
    """Outputs ``{"embedding": (768,), "emotion_logits": (8,)}`` (the projected, unnormalised embedding)."""

    def __init__(
        self,
        vision_model: nn.Module,
        pixels: ClipPixelSettings | Any,
        emotion_head: nn.Module,
        artifacts: Mapping[str, str],
        *,
        smoke: bool = False,
    ) -> None:
        settings = pixel_settings(pixels)
        _check_rescaled_once(settings)
        dim = int(vision_model.config.projection_dim)
        head_dim = _linear_in_features(emotion_head)
        if head_dim != dim:
            raise WeightsError(
                f"the {HEAD_ARTIFACT_ID} emotion head reads {head_dim}-d embeddings but the {VISION_ARTIFACT_ID} "
                f"model gives {dim}-d ones; the two files do not belong together (expected 768 for both)."
            )
        self.vision_model = vision_model
        self.emotion_head = emotion_head
        self.pixel_settings = settings
        self._preprocessor = ClipPreprocess(settings)
        self.pixels = ByteTable(float_stage_table(settings))
        described = json.dumps(processor_settings(settings), sort_keys=True)
        self.info = ExtractorInfo(
            name="clip",
            outputs={"embedding": (dim,), "emotion_logits": (len(EMOTIONS),)},
            preprocess_version=f"{PREPROCESS_VERSION}:{hashlib.sha256(described.encode()).hexdigest()[:16]}",
            artifacts=dict(artifacts),
            smoke=smoke,
        )

    def model_input(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed uint8 pixels -> the float32 CLIP pixels (floating batches pass unchanged)."""
        return self.pixels(batch)

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        from emogen_bench.models.clip import clip_image_embeddings

        embedding = clip_image_embeddings(self.vision_model, self.model_input(batch))
        return {"embedding": embedding, "emotion_logits": self.emotion_head(embedding)}
