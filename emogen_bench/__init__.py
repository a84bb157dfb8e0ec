"""emogen-bench: the benchmark for Emotional Image Content Generation (EICG).

The public API, which ``reference``, ``baselines`` and ``leaderboard`` use (and
nothing deeper):

- the task and protocol constants: :mod:`emogen_bench.task`;
- submissions: :func:`validate_submission`, :class:`SubmissionMetadata`, :func:`write_metadata`;
- the EmoSet data index: :func:`prepare_emoset`, :func:`load_index`, :func:`balanced_order`;
- pinned weights: :func:`open_store`, :func:`load_artifact`, :class:`WeightStore`.

Submodules are imported on first use, so ``import emogen_bench`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "validate_submission": "emogen_bench.submission",
    "ValidationReport": "emogen_bench.submission",
    "SubmissionMetadata": "emogen_bench.submission",
    "write_metadata": "emogen_bench.submission",
    "prepare_emoset": "emogen_bench.data",
    "load_index": "emogen_bench.data",
    "index_digest": "emogen_bench.data",
    "balanced_order": "emogen_bench.data",
    "IndexRow": "emogen_bench.data",
    "open_store": "emogen_bench.weights",
    "load_artifact": "emogen_bench.weights",
    "WeightStore": "emogen_bench.weights",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'emogen_bench' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
