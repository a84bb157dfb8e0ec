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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from emogen_bench.task import METRICS

if TYPE_CHECKING:
    from emogen_bench.runtime import Runtime


@dataclass(frozen=True)
class ExtractorInfo:
    """Identity of an extractor: what goes into cache keys and into the results' provenance.

    ``outputs`` maps each output name to its per-image shape; ``artifacts`` maps
    each weights-registry id the extractor uses to the digest of the bytes it
    loaded (``ResolvedArtifact.digest``; tiny test models use a digest of their
    seed and configuration).  ``preprocess_version`` changes whenever the
    preprocessing changes.  ``cacheable`` is false for outputs too large to keep
    per image (LPIPS' spatial features).  ``runtime`` is how the features are
    computed (:class:`emogen_bench.runtime.Runtime`: device type, precision
    policy, compile backend); :func:`emogen_bench.pipeline.extract` sets it on its
    own copy, so features computed on another device or by a compiled model get
    other cache keys.  Without it (``{}``) the key is the extractor's identity
    alone, the one reference statistics record.
    """

    name: str
    outputs: Mapping[str, tuple[int, ...]]
    preprocess_version: str
    artifacts: Mapping[str, str] = field(default_factory=dict)
    cacheable: bool = True
    smoke: bool = False
    runtime: Mapping[str, str | None] = field(default_factory=dict)

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
        identity = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:20]
        return runtime_cache_key(identity, self.runtime) if self.runtime else identity


def runtime_cache_key(identity: str, runtime: Mapping[str, str | None]) -> str:
    """The feature-cache key of an extractor whose identity key is ``identity``, run under ``runtime`` (a
    :meth:`~emogen_bench.runtime.Runtime.key_part`: empty for the CPU reference runtime, which keeps ``identity``)."""
    if not runtime:
        return identity
    document = {"extractor": identity, "runtime": dict(sorted(runtime.items()))}
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

    def for_runtime(self, runtime: Runtime) -> FeatureExtractor:
        """This extractor seen under ``runtime`` (:class:`RuntimeView`): same modules, state and preprocessing,
        an ``info`` carrying the runtime, and the ``forward`` compiled when ``runtime.compile`` names a backend.
        The extractor itself is left as it was."""
        return RuntimeView(self.base if isinstance(self, RuntimeView) else self, runtime)

    @torch.no_grad()
    def __call__(
        self, batch: torch.Tensor, *, as_tensors: bool = False
    ) -> dict[str, np.ndarray] | dict[str, torch.Tensor]:
        """Run ``forward`` in fixed-size batches; float32/int64 numpy arrays on the CPU, or with ``as_tensors``
        the tensors where ``forward`` left them (on the device: nothing copied back, nothing waited for)."""
        return run_fixed_batches(self.forward, batch, as_tensors=as_tensors)


class ByteTable(torch.nn.Module):
    """uint8 ``N x C x H x W`` -> float32 by looking each value up in a ``C x 256`` table.

    The table holds what the CPU preprocessing makes of each 8-bit value in each channel (computed by that
    very code when the extractor is built), so the model sees bitwise the float32 tensor that preprocessing
    gave, on any device: a lookup copies values and rounds nothing.  Redoing the arithmetic on the device
    would not promise that (CUDA divides by a CPU scalar as a multiplication by its reciprocal; MPS has no
    float64).  A floating-point batch is taken as already converted and returned unchanged.
    """

    def __init__(self, table: torch.Tensor | np.ndarray) -> None:
        super().__init__()
        values = torch.as_tensor(table, dtype=torch.float32)
        if values.ndim != 2 or values.shape[1] != 256:
            raise ValueError(f"expected a C x 256 table, got {tuple(values.shape)}")
        self.register_buffer("table", values.flatten().contiguous(), persistent=False)
        offsets = torch.arange(values.shape[0], dtype=torch.int32).mul(256).view(1, -1, 1, 1)
        self.register_buffer("offsets", offsets, persistent=False)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dtype != torch.uint8:
            return batch
        if batch.ndim != 4 or batch.shape[1] != self.offsets.shape[1]:
            raise ValueError(f"expected N x {self.offsets.shape[1]} x H x W pixels, got {tuple(batch.shape)}")
        index = batch.to(torch.int32) + self.offsets
        return self.table.index_select(0, index.flatten()).view(batch.shape)


class RuntimeView(FeatureExtractor):
    """An extractor under a runtime: its own ``info`` (with ``runtime`` set), everything else the base's.

    With ``runtime.compile`` the whole ``forward`` goes through ``torch.compile`` (fixed shapes: the model batch
    never changes), so the arithmetic between modules (LPIPS' normalisation and scaling, CLIP's projection) is
    fused too.  Attributes it does not define are the base's (``lpips_model`` for the pair stage, counters).
    """

    def __init__(self, base: FeatureExtractor, runtime: Runtime) -> None:
        self.base = base
        self.info = replace(base.info, runtime=runtime.key_part())
        self.compiled = (
            None if runtime.compile is None else torch.compile(base.forward, backend=runtime.compile, dynamic=False)
        )

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return self.base.preprocess(image)

    @property
    def preprocessor(self) -> Callable[[np.ndarray], torch.Tensor]:
        return self.base.preprocessor

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return (self.compiled or self.base.forward)(batch)

    def to(self, device: torch.device | str) -> FeatureExtractor:
        self.base.to(device)
        return self

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor, **options: bool) -> dict[str, np.ndarray] | dict[str, torch.Tensor]:
        if self.compiled is None:
            return self.base(batch, **options)
        return run_fixed_batches(self.forward, batch, **options)

    def __getattr__(self, name: str) -> object:
        if name == "base":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)


def run_fixed_batches(
    forward: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    batch: torch.Tensor,
    size: int = METRICS.model_batch,
    *,
    as_tensors: bool = False,
) -> dict[str, np.ndarray] | dict[str, torch.Tensor]:
    """Call ``forward`` on chunks of exactly ``size`` rows (zero-padded) and concatenate the outputs.

    The chunks' outputs stay where ``forward`` put them and are concatenated there (exact); they are copied
    to the CPU once per call, not once per chunk, so a device is not waited for between chunks.  With
    ``as_tensors`` they are returned as tensors, left on the device.
    """
    n = batch.shape[0]
    pieces: dict[str, list[torch.Tensor]] = {}
    for start in range(0, n, size):
        chunk = batch[start : start + size]
        real = chunk.shape[0]
        if real < size:
            padding = torch.zeros((size - real, *chunk.shape[1:]), dtype=chunk.dtype, device=chunk.device)
            chunk = torch.cat([chunk, padding])
        for name, value in forward(chunk).items():
            pieces.setdefault(name, []).append(value[:real].detach())
    joined = {name: torch.cat(parts) for name, parts in pieces.items()}
    if as_tensors:
        return joined
    return {name: value.cpu().numpy() for name, value in joined.items()}


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")
