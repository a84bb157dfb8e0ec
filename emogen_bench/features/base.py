"""What every feature extractor is: a preprocessing step and a batched forward.

An extractor turns one decoded image (8-bit RGB, ``H x W x 3`` numpy array) into
per-image feature arrays.  ``preprocess`` runs in data-loader workers on the
CPU; ``forward`` runs the model on a batch on the chosen device.  The pipeline
decodes each image once and hands the same array to every extractor.

Determinism: :func:`run_fixed_batches` always feeds the model batches of
exactly ``task.METRICS.model_batch`` images (the last one padded with zeros), so
an image's features never depend on the loader's batch size or its neighbours.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from emogen_bench.task import METRICS


@dataclass(frozen=True)
class ExtractorInfo:
    """Identity of an extractor: what goes into cache keys and into the results' provenance.

    ``outputs`` maps each output name to its per-image shape; ``artifacts`` maps
    each weights-registry id the extractor uses to the digest of the bytes it
    loaded (``ResolvedArtifact.digest``; tiny test models use a digest of their
    seed and configuration).  ``preprocess_version`` changes whenever the
    preprocessing changes.  ``cacheable`` is false for outputs too large to keep
    per image (LPIPS' spatial features).
    """

    name: str
    outputs: Mapping[str, tuple[int, ...]]
    preprocess_version: str
    artifacts: Mapping[str, str] = field(default_factory=dict)
    cacheable: bool = True
    smoke: bool = False

    @property
    def cache_key(self) -> str:
        """A short digest of everything that determines this extractor's outputs."""
        document = {
            "name": self.name,
            "outputs": {k: list(v) for k, v in sorted(self.outputs.items())},
            "preprocess": self.preprocess_version,
            "artifacts": dict(sorted(self.artifacts.items())),
            "model_batch": METRICS.model_batch,
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:20]


class FeatureExtractor(ABC):
    """A model plus its preprocessing.

    Subclasses set ``info`` and implement ``forward``.  The preprocessing is
    either a picklable callable holding no model, stored as ``_preprocessor``
    (what the built-in extractors do, so workers started with ``spawn`` or
    ``forkserver`` receive no model copies), or an override of ``preprocess``.
    """

    info: ExtractorInfo
    _preprocessor: Callable[[np.ndarray], torch.Tensor] | None = None

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One ``H x W x 3`` uint8 RGB array -> one model input tensor (CPU)."""
        if self._preprocessor is None:
            raise NotImplementedError(f"{type(self).__name__} sets no _preprocessor and does not override preprocess")
        return self._preprocessor(image)

    @property
    def preprocessor(self) -> Callable[[np.ndarray], torch.Tensor]:
        """The preprocessing alone, as a picklable callable for data-loader workers."""
        return self._preprocessor if self._preprocessor is not None else self.preprocess

    @abstractmethod
    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """A batch of preprocessed inputs on the device -> ``{output name: (N, *shape)}`` tensors."""

    def to(self, device: torch.device | str) -> FeatureExtractor:
        """Move the extractor's modules to ``device``; returns self."""
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(device)
        return self

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """Run ``forward`` in fixed-size batches and return float32/int64 numpy arrays on the CPU."""
        return run_fixed_batches(self.forward, batch)


def run_fixed_batches(
    forward: Callable[[torch.Tensor], dict[str, torch.Tensor]], batch: torch.Tensor, size: int = METRICS.model_batch
) -> dict[str, np.ndarray]:
    """Call ``forward`` on chunks of exactly ``size`` rows (zero-padded) and concatenate the outputs."""
    n = batch.shape[0]
    pieces: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, size):
        chunk = batch[start : start + size]
        real = chunk.shape[0]
        if real < size:
            padding = torch.zeros((size - real, *chunk.shape[1:]), dtype=chunk.dtype, device=chunk.device)
            chunk = torch.cat([chunk, padding])
        for name, value in forward(chunk).items():
            pieces.setdefault(name, []).append(value[:real].detach().cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in pieces.items()}


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")
