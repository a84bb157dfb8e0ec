"""Emo-A and Sem-D features: one CLIP ViT-L/14 image forward gives the embedding and the emotion logits.

Preprocessing is the snapshot's own ``CLIPImageProcessor`` applied ONCE to the
8-bit RGB array (shortest side 224 bicubic, centre crop 224, rescale by 1/255
exactly once, CLIP mean/std).  The released EmoGen code scaled images to [0, 1]
before handing them to the processor, which divided by 255 again, so CLIP saw
nearly uniform images; :func:`double_rescaled` reproduces that bug, used only by
the ``emogen-paper-code`` protocol's pair stage (:mod:`emogen_bench.features.paper_code`).
The processor's class and settings are part of the cache key (transformers 5
replaced the PIL processor with a torchvision one).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from emogen_bench.errors import WeightsError
from emogen_bench.features.base import ExtractorInfo, FeatureExtractor
from emogen_bench.task import EMOTIONS

if TYPE_CHECKING:
    from transformers import CLIPImageProcessor

#: Registry ids of the weights this extractor reads.
VISION_ARTIFACT_ID = "clip-vit-l14"
HEAD_ARTIFACT_ID = "emo-head-clip"
#: Bump when the way the processor is applied changes (it changes cache keys).
PREPROCESS_VERSION = "clip-processor-once/1"
#: Processor settings that determine its output; they enter the cache key.
PROCESSOR_FIELDS: tuple[str, ...] = (
    "do_resize", "size", "resample", "do_center_crop", "crop_size",
    "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std", "do_convert_rgb",
)  # fmt: skip


def processor_settings(processor: CLIPImageProcessor) -> dict[str, Any]:
    """The processor's class, backend and output-determining settings, as plain JSON values."""
    config = processor.to_dict()
    settings = {name: _plain(config.get(name)) for name in PROCESSOR_FIELDS}
    settings["class"] = type(processor).__name__
    settings["backend"] = str(getattr(processor, "backend", "pil"))
    return settings


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)  # also IntEnum members such as PIL's Resampling.BICUBIC
    return value if isinstance(value, (float, str)) else str(value)


@dataclass(frozen=True)
class ClipPreprocess:
    """The CLIP image processor called once on one uint8 ``H x W x 3`` array -> ``3 x S x S`` float32."""

    processor: CLIPImageProcessor

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        pixels = self.processor(images=image, return_tensors="pt", input_data_format="channels_last")["pixel_values"]
        return pixels[0].to(torch.float32)


def double_rescaled(processor: CLIPImageProcessor, image: np.ndarray) -> torch.Tensor:
    """The released code's bug (emogen-paper-code only): the image scaled to [0, 1], then rescaled by the processor."""
    scaled = image.astype(np.float32) / 255.0
    pixels = processor(images=scaled, return_tensors="pt", input_data_format="channels_last")["pixel_values"]
    return pixels[0]


def _linear_in_features(module: nn.Module) -> int:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            return layer.in_features
    raise WeightsError(f"the {HEAD_ARTIFACT_ID} emotion head has no linear layer")


def _check_rescaled_once(processor: CLIPImageProcessor) -> None:
    factor = getattr(processor, "rescale_factor", None)
    if not getattr(processor, "do_rescale", False) or factor is None or not math.isclose(factor, 1 / 255):
        raise WeightsError(
            f"the {VISION_ARTIFACT_ID} image processor must rescale 8-bit images by 1/255 exactly once "
            f"(found do_rescale={getattr(processor, 'do_rescale', None)}, rescale_factor={factor}); "
            "its preprocessor_config.json is not the pinned one: fetch the snapshot again."
        )


class ClipExtractor(FeatureExtractor):
    """Outputs ``{"embedding": (768,), "emotion_logits": (8,)}`` (the projected, unnormalised embedding)."""

    def __init__(
        self,
        vision_model: nn.Module,
        image_processor: CLIPImageProcessor,
        emotion_head: nn.Module,
        artifacts: Mapping[str, str],
        *,
        smoke: bool = False,
    ) -> None:
        _check_rescaled_once(image_processor)
        dim = int(vision_model.config.projection_dim)
        head_dim = _linear_in_features(emotion_head)
        if head_dim != dim:
            raise WeightsError(
                f"the {HEAD_ARTIFACT_ID} emotion head reads {head_dim}-d embeddings but the {VISION_ARTIFACT_ID} "
                f"model gives {dim}-d ones; the two files do not belong together (expected 768 for both)."
            )
        self.vision_model = vision_model
        self.emotion_head = emotion_head
        self.image_processor = image_processor
        self._preprocessor = ClipPreprocess(image_processor)
        settings = json.dumps(processor_settings(image_processor), sort_keys=True)
        self.info = ExtractorInfo(
            name="clip",
            outputs={"embedding": (dim,), "emotion_logits": (len(EMOTIONS),)},
            preprocess_version=f"{PREPROCESS_VERSION}:{hashlib.sha256(settings.encode()).hexdigest()[:16]}",
            artifacts=dict(artifacts),
            smoke=smoke,
        )

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        from emogen_bench.models.clip import clip_image_embeddings

        embedding = clip_image_embeddings(self.vision_model, batch)
        return {"embedding": embedding, "emotion_logits": self.emotion_head(embedding)}
