"""Model-side preprocessing of the ``emogen-paper-code`` protocol: the released scripts' inputs, quirks included.

- FID: the 8-bit image as a PIL image -> ``torchvision.transforms.Resize((299, 299))``
  (bilinear, PIL's antialiasing) -> ``ToTensor()`` ([0, 1]) -> torchmetrics'
  ``normalize=True`` step ``(x * 255).byte()`` (truncation) -> the pinned NVlabs
  Inception.  torchmetrics' ``FeatureExtractorInceptionV3`` (torch-fidelity's
  port of the same TensorFlow 2015-12-05 graph, same weights) casts those
  uint8 values to float, resizes 299 -> 299 (an identity) and feeds
  ``(x - 128) / 128`` to the network; :func:`inception_pool` does exactly that.
- LPIPS: the whole image in [0, 1] (``ToTensor``), not the [-1, 1] LPIPS expects.
- Sem-D: the image scaled to [0, 1] (``ToTensor``) and then given to the CLIP
  processor of transformers 4.34, which converts it back to 8 bits for its PIL
  resize and rescales by 1/255 again
  (:func:`emogen_bench.features.clip_pixels.clip_pixels_double_rescaled`).

Which extractors the main pass runs per metric, and which lend their models to
the pair stage, is the protocol's to say (:mod:`emogen_bench.protocols.paper_code`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from emogen_bench.features.base import ExtractorInfo, module_device, run_fixed_batches
from emogen_bench.features.clip import double_rescaled
from emogen_bench.features.inception import InceptionExtractor, inception_pool

if TYPE_CHECKING:
    import lpips

    from emogen_bench.features.clip_pixels import ClipPixelSettings

#: Bump when the preprocessing below changes (it changes cache keys); never shared with eicg-v3's entries.
PREPROCESS_VERSION = "paper-code-torchvision-Resize-bilinear-ToTensor-x255-byte/1"
#: The square size torchvision's Resize brings every image to (and torchmetrics' Inception input size).
SIZE = 299
@dataclass(frozen=True)
class TorchvisionResizeBytes:
    """uint8 ``H x W x 3`` -> uint8 ``3 x size x size``: PIL Resize((size, size)), ToTensor, ``(x * 255).byte()``."""

    size: int = SIZE

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        from torchvision import transforms

        resized = transforms.Resize((self.size, self.size))(Image.fromarray(image))
        return (transforms.ToTensor()(resized) * 255).byte()


class PaperCodeInceptionExtractor(InceptionExtractor):
    """The pinned Inception behind the released code's preprocessing; outputs ``{"pool": (D,)}``."""

    def __init__(self, model: torch.nn.Module, artifacts: Mapping[str, str], *, smoke: bool = False) -> None:
        super().__init__(model, artifacts, smoke=smoke)
        self._preprocessor = TorchvisionResizeBytes()
        self.info = replace(self.info, preprocess_version=f"{PREPROCESS_VERSION}:{SIZE}")

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pool": inception_pool(self.model, batch.float())}


def is_paper_code(info: ExtractorInfo) -> bool:
    """Whether an extractor's preprocessing is this protocol's (only the Inception has a variant)."""
    return info.preprocess_version.startswith(PREPROCESS_VERSION)


def unit_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W x 3`` -> float32 ``1 x 3 x H x W`` in [0, 1] at full resolution (``ToTensor``)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255).unsqueeze(0)


@torch.no_grad()
def lpips_unit_distance(model: lpips.LPIPS, first: np.ndarray, second: np.ndarray) -> float:
    """LPIPS of two same-size images fed in [0, 1] (the released code's input), on the model's device."""
    device = module_device(model)
    return float(model(unit_tensor(first).to(device), unit_tensor(second).to(device)).item())


@torch.no_grad()
def double_rescaled_embeddings(
    vision_model: torch.nn.Module, settings: ClipPixelSettings, images: list[np.ndarray]
) -> np.ndarray:
    """Projected CLIP embeddings ``(N, dim)`` of images passed to the processor already in [0, 1]."""
    from emogen_bench.models.clip import clip_image_embeddings

    device = module_device(vision_model)
    pixels = torch.stack([double_rescaled(settings, image) for image in images]).to(device)
    return run_fixed_batches(lambda batch: {"embedding": clip_image_embeddings(vision_model, batch)}, pixels)[
        "embedding"
    ]
