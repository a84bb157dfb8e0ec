"""How features are computed: the device, the protocol's precision policy and whether models are compiled.

Features computed on different devices, under different precision settings, or
by compiled models can differ in their last bits (cuDNN's TF32 convolutions
differ from fp32 by about 1e-3), so a :class:`Runtime` is part of every
feature-cache key (:meth:`Runtime.key_part`; the CPU reference runtime keeps the
extractor's identity key) and is recorded with every result: CPU and GPU features
never mix in one cache entry.

The precision policy is part of the protocol, not a setting: every protocol
computes in IEEE float32 (``fp32-strict``):

- TF32 off for matmuls and cuDNN convolutions (torch >= 2.9 says
  ``fp32_precision = "ieee"``; older versions ``allow_tf32 = False`` and
  ``set_float32_matmul_precision("highest")``);
- cuDNN deterministic, its autotuner (``benchmark``) off, and torch's
  deterministic algorithms where it has them (``warn_only``: an operation without
  a deterministic version warns, it does not stop the run); on CUDA,
  ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when the variable is not set, which cuBLAS
  needs for reproducible matmuls;
- uninitialised memory is *not* filled with NaN (torch's default under
  deterministic mode): nothing reads it, and filling costs time on every allocation.

On the CPU these settings change no result: torch's CPU kernels use neither TF32
nor an autotuner.  :func:`precision_policy` applies them for the duration of a
pass and restores the previous values, so importing or calling the library
leaves torch as it found it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

#: The name of the precision policy every protocol uses (recorded in results and cache keys).
PRECISION_POLICY = "fp32-strict"
#: The cuBLAS workspace setting torch documents for deterministic matmuls on CUDA >= 10.2.
CUBLAS_WORKSPACE = ":4096:8"
#: What ``--compile`` runs: torch.compile's default backend.
COMPILE_BACKEND = "inductor"


@dataclass(frozen=True)
class Runtime:
    """The device type features are computed on, the precision policy, and the compile backend (or none)."""

    device: str = "cpu"
    precision: str = PRECISION_POLICY
    compile: str | None = None

    @classmethod
    def for_device(cls, device: str | torch.device, *, compile: bool = False) -> Runtime:
        """The runtime of a pass on ``device`` (only its type counts: ``cuda:0`` and ``cuda:1`` agree)."""
        return cls(torch.device(device).type, PRECISION_POLICY, COMPILE_BACKEND if compile else None)

    def to_dict(self) -> dict[str, str | None]:
        """JSON-ready form, recorded in every result's provenance."""
        return {"device": self.device, "precision": self.precision, "compile": self.compile}

    def key_part(self) -> dict[str, str | None]:
        """What this runtime adds to feature-cache keys: nothing for the reference runtime (the CPU, the
        protocol's policy, eager models), whose features keep the extractor's identity key, as before runtimes
        were keyed (caches filled then stay valid); everything else, :meth:`to_dict`."""
        return {} if self == Runtime("cpu") else self.to_dict()


def _uses_new_precision_api() -> bool:
    """True where torch has the per-backend ``fp32_precision`` settings (torch >= 2.9)."""
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(
        getattr(torch.backends.cudnn, "conv", None), "fp32_precision"
    )


def _precision_state() -> dict[str, object]:
    """The torch settings the policy changes, as they are now."""
    import torch.utils.deterministic

    state: dict[str, object] = {
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "fill_uninitialized": torch.utils.deterministic.fill_uninitialized_memory,
    }
    if _uses_new_precision_api():
        state["matmul_fp32"] = torch.backends.cuda.matmul.fp32_precision
        state["conv_fp32"] = torch.backends.cudnn.conv.fp32_precision
    else:  # pragma: no cover - torch < 2.9
        state["matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
        state["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        state["matmul_precision"] = torch.get_float32_matmul_precision()
    return state


def _set_precision_state(state: dict[str, object]) -> None:
    import torch.utils.deterministic

    torch.backends.cudnn.deterministic = bool(state["cudnn_deterministic"])
    torch.backends.cudnn.benchmark = bool(state["cudnn_benchmark"])
    torch.use_deterministic_algorithms(bool(state["deterministic"]), warn_only=bool(state["warn_only"]))
    torch.utils.deterministic.fill_uninitialized_memory = bool(state["fill_uninitialized"])
    if "matmul_fp32" in state:
        torch.backends.cuda.matmul.fp32_precision = str(state["matmul_fp32"])
        torch.backends.cudnn.conv.fp32_precision = str(state["conv_fp32"])
    else:  # pragma: no cover - torch < 2.9
        torch.backends.cuda.matmul.allow_tf32 = bool(state["matmul_tf32"])
        torch.backends.cudnn.allow_tf32 = bool(state["cudnn_tf32"])
        torch.set_float32_matmul_precision(str(state["matmul_precision"]))


def policy_state() -> dict[str, object]:
    """The torch settings of the ``fp32-strict`` policy (what :func:`precision_policy` sets)."""
    state: dict[str, object] = {
        "cudnn_deterministic": True,
        "cudnn_benchmark": False,
        "deterministic": True,
        "warn_only": True,
        "fill_uninitialized": False,
    }
    if _uses_new_precision_api():
        state.update(matmul_fp32="ieee", conv_fp32="ieee")
    else:  # pragma: no cover - torch < 2.9
        state.update(matmul_tf32=False, cudnn_tf32=False, matmul_precision="highest")
    return state


@contextmanager
def precision_policy(device: str | torch.device = "cpu") -> Iterator[dict[str, object]]:
    """Compute under the ``fp32-strict`` policy inside the block; torch's previous settings come back after.

    Yields the settings applied (recorded in the results).  On CUDA the cuBLAS
    workspace variable is set when absent (it must be before cuBLAS starts; a
    process that used cuBLAS before keeps its workspace, and torch then warns).
    """
    saved = _precision_state()
    if torch.device(device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    applied = policy_state()
    _set_precision_state(applied)
    try:
        yield applied
    finally:
        _set_precision_state(saved)
