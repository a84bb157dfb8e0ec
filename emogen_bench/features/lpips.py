"""LPIPS diversity features: one AlexNet forward per image, in a space where LPIPS is a squared distance.

LPIPS v0.1 (``lpips.LPIPS(net="alex")``, spatial average) is, for two images of
one size,

    LPIPS(x, y) = sum_l (1 / (H_l W_l)) sum_{h,w} sum_c w_{l,c} (f_l(x) - f_l(y))_{c,h,w}^2

with ``f_l`` the unit-normalised AlexNet features of layer ``l`` (the package's
``normalize_tensor``, same eps) and ``w_{l,c} >= 0`` its linear layers.  So with

    phi(x) = concat_l flatten( sqrt(w_{l,c} / (H_l W_l)) * f_l(x) )

``||phi(x) - phi(y)||^2 = LPIPS(x, y)``, and the mean over all pairs of a set
follows from per-coordinate variances (PROTOCOL.md section 3) without a single
pair forward.  This needs one image size: every image is brought to
``task.METRICS.lpips_size`` squared (shorter side resized with PIL bicubic on
the 8-bit image, then centre-cropped, torchvision's conventions; a 512x512
image is untouched), then scaled to [-1, 1] exactly as ``lpips.im2tensor``
does.  Data-loader workers hand over the 8-bit square (uint8, a quarter of the
float32 bytes); ``forward`` scales it on the model's device by a lookup table of
the 256 values that scaling gives (:func:`unit_range_table`), bitwise the old
float32 input.  phi has about 2.65 million coordinates at 512x512, so it is not
cached per image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from emogen_bench.errors import WeightsError
from emogen_bench.features.base import ByteTable, ExtractorInfo, FeatureExtractor
from emogen_bench.task import METRICS

if TYPE_CHECKING:
    import lpips

#: Registry ids of the weights this extractor reads.
TRUNK_ARTIFACT_ID = "alexnet-lpips-trunk"
LINEAR_ARTIFACT_ID = "lpips-alex-v0.1"
#: Bump when the preprocessing below changes (it changes cache keys).
PREPROCESS_VERSION = "shorter-side-PIL-bicubic-centre-crop-im2tensor/1"
#: Channels of the five AlexNet layers LPIPS compares (conv1..conv5 after ReLU).
ALEX_CHANNELS: tuple[int, ...] = (64, 192, 384, 256, 256)


def resize_and_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` with PIL bicubic on the uint8 image, then a centre crop to ``size`` squared.

    torchvision's ``Resize(size, BICUBIC)`` + ``CenterCrop(size)`` on the PIL
    image, so the conventions are the ResNets' ones (longer side
    ``int(long * size / short)``, crop offset ``round((extent - size) / 2)``);
    an image whose shorter side already equals ``size`` is only cropped.
    """
    from torchvision import transforms

    pipeline = transforms.Compose(
        [transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(size)]
    )
    return np.asarray(pipeline(Image.fromarray(image)))


def to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """uint8 values -> float32 in [-1, 1]: ``lpips.im2tensor``'s arithmetic (float64 ``x / 127.5 - 1``, then cast)."""
    return (pixels.astype(np.float64) / (255.0 / 2.0) - 1.0).astype(np.float32)


def unit_range_table(channels: int = 3) -> np.ndarray:
    """``channels x 256``: :func:`to_unit_range` of each 8-bit value, the same in every channel."""
    return np.repeat(to_unit_range(np.arange(256, dtype=np.uint8))[None, :], channels, axis=0)


@dataclass(frozen=True)
class LpipsPreprocess:
    """uint8 ``H x W x 3`` -> uint8 ``3 x size x size``: the square :func:`resize_and_crop` makes, channels first."""

    size: int = METRICS.lpips_size

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        square = resize_and_crop(image, self.size)
        return torch.from_numpy(np.ascontiguousarray(square.transpose(2, 0, 1), dtype=np.uint8))


def _check_lpips_model(model: lpips.LPIPS) -> None:
    problems = []
    if getattr(model, "pnet_type", None) != "alex":
        problems.append(f"trunk {getattr(model, 'pnet_type', None)!r} (expected 'alex')")
    if getattr(model, "version", None) != "0.1":
        problems.append(f"version {getattr(model, 'version', None)!r} (expected '0.1')")
    if not getattr(model, "lpips", False) or getattr(model, "spatial", False):
        problems.append("not the linear-layer, spatially averaged LPIPS")
    if problems:
        raise WeightsError(f"the LPIPS model is not AlexNet LPIPS v0.1: {'; '.join(problems)}")
    negative = [i for i, lin in enumerate(model.lins) if bool((lin.model[-1].weight < 0).any())]
    if negative:
        raise WeightsError(
            f"the {LINEAR_ARTIFACT_ID} linear layers {negative} have negative weights, so LPIPS is not a squared "
            "distance in a feature space and the exact all-pairs mean does not apply; the released alex.pth has "
            "none: reinstall the lpips package."
        )


def lpips_phi(model: lpips.LPIPS, images: torch.Tensor) -> torch.Tensor:
    """phi of images in [-1, 1]: ``(N, D)`` with ``||phi(x) - phi(y)||^2 = model(x, y)``."""
    import lpips as lpips_package

    parts = []
    for layer, lin in zip(model.net(model.scaling_layer(images)), model.lins):
        weight = lin.model[-1].weight.reshape(1, -1, 1, 1)
        scale = torch.sqrt(weight / (layer.shape[2] * layer.shape[3]))
        parts.append((lpips_package.normalize_tensor(layer) * scale).flatten(1))
    return torch.cat(parts, dim=1)


def phi_dim(size: int, channels: tuple[int, ...] = ALEX_CHANNELS) -> int:
    """phi's length for AlexNet LPIPS at ``size`` x ``size`` (conv1 stride 4, then three 3x3/2 max pools)."""
    conv1 = (size + 2 * 2 - 11) // 4 + 1
    pool1 = (conv1 - 3) // 2 + 1
    pool2 = (pool1 - 3) // 2 + 1
    sides = (conv1, pool1, pool2, pool2, pool2)
    return int(sum(c * s * s for c, s in zip(channels, sides)))


class LpipsExtractor(FeatureExtractor):
    """Outputs ``{"phi": (D,)}`` float32; not cacheable (D is about 2.65 million at 512x512)."""

    def __init__(
        self,
        lpips_model: lpips.LPIPS,
        artifacts: Mapping[str, str],
        *,
        size: int = METRICS.lpips_size,
        smoke: bool = False,
    ) -> None:
        _check_lpips_model(lpips_model)
        self.lpips_model = lpips_model
        self._preprocessor = LpipsPreprocess(size)
        self.pixels = ByteTable(unit_range_table())
        self.info = ExtractorInfo(
            name="lpips",
            outputs={"phi": (phi_dim(size),)},
            preprocess_version=f"{PREPROCESS_VERSION}:{size}",
            artifacts=dict(artifacts),
            cacheable=False,
            smoke=smoke,
        )

    def model_input(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed uint8 squares -> float32 in [-1, 1] (floating batches only cast to float32, as before)."""
        return self.pixels(batch).float()

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"phi": lpips_phi(self.lpips_model, self.model_input(batch))}
