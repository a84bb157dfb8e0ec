"""FID/KID features: the NVlabs TorchScript Inception-v3 behind clean-fid's "clean" resize.

Preprocessing is clean-fid's own resizer (``make_resizer("PIL", False,
"bicubic", (299, 299))``: PIL bicubic on each channel in float mode, no
re-quantisation), called rather than rewritten so it stays identical to
clean-fid.  The model is then called exactly as clean-fid's ``InceptionV3W``
calls it in "clean" mode: ``model.layers((x - 128) / 128)`` on the already
resized images.  (``model(x, return_features=True)`` would resize again inside
the network with ``grid_sample``, an identity only up to rounding at 299x299.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from cleanfid.resize import make_resizer

from emogen_bench.errors import WeightsError
from emogen_bench.features.base import ExtractorInfo, FeatureExtractor, module_device
from emogen_bench.task import METRICS

#: Registry id of the weights this extractor reads.
ARTIFACT_ID = "inception-fid"
#: Bump when the preprocessing below changes (it changes cache keys).
PREPROCESS_VERSION = "cleanfid-PIL-bicubic-float/1"


@dataclass(frozen=True)
class CleanResize:
    """clean-fid's "clean" resize: uint8 ``H x W x 3`` -> float32 ``3 x size x size`` in [0, 255]."""

    size: int = METRICS.inception_size

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        resized = make_resizer("PIL", False, "bicubic", (self.size, self.size))(image)
        return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))


def inception_pool(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The pool features of resized images in [0, 255], computed as clean-fid does: ``(N, D)``."""
    return model.layers((images - 128) / 128).reshape(images.shape[0], -1)


class InceptionExtractor(FeatureExtractor):
    """Outputs ``{"pool": (D,)}``: 2048-d for the real network, read from the model itself."""

    def __init__(self, model: torch.nn.Module, artifacts: Mapping[str, str], *, smoke: bool = False) -> None:
        if not hasattr(model, "layers"):
            raise WeightsError(
                f"the {ARTIFACT_ID} model has no 'layers' submodule, so it is not the NVlabs inception-2015-12-05.pt "
                "TorchScript network clean-fid uses; fetch the pinned file again."
            )
        self.model = model
        self._preprocessor = CleanResize()
        size = self._preprocessor.size
        with torch.no_grad():
            dim = inception_pool(model, torch.zeros((1, 3, size, size), device=module_device(model))).shape[1]
        self.info = ExtractorInfo(
            name="inception",
            outputs={"pool": (int(dim),)},
            preprocess_version=f"{PREPROCESS_VERSION}:{size}",
            artifacts=dict(artifacts),
            smoke=smoke,
        )

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pool": inception_pool(self.model, batch.float())}
