"""Loaders of the benchmark's models and artifacts, each from a local path with strict checks.

``LOADERS`` maps every artifact id of the weights registry to the function that
turns its local copy into a usable object.  File artifacts take the file's path;
Hugging Face snapshots and multi-file artifacts (``emo-space``,
``attr-coefficients``, ``attr-vocabulary``) take their folder.  Nothing here
downloads or looks anything up; a wrong file raises
:class:`~emogen_bench.errors.WeightsError`.  The heavy libraries (transformers,
lpips) are imported on first use, so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

Loader = Callable[[Path], Any]


def _deferred(module: str, function: str) -> Loader:
    """A loader that imports ``module`` when first called, then calls ``function``."""

    def load(path: Path) -> Any:
        return getattr(importlib.import_module(module), function)(path)

    load.__name__ = function
    load.__qualname__ = function
    load.__doc__ = f"``{module}.{function}(path)``, imported on first use."
    return load


LOADERS: dict[str, Loader] = {
    "inception-fid": _deferred("emogen_bench.models.inception", "load_inception"),
    "alexnet-lpips-trunk": _deferred("emogen_bench.models.lpips_alex", "load_alexnet"),
    "lpips-alex-v0.1": _deferred("emogen_bench.models.lpips_alex", "load_lpips_linear"),
    "clip-vit-l14": _deferred("emogen_bench.models.clip", "load_clip_vision"),
    "emo-head-clip": _deferred("emogen_bench.models.emotion_head", "load_emotion_head"),
    "resnet50-imagenet-v1": _deferred("emogen_bench.models.resnet", "load_resnet50_imagenet"),
    "resnet50-places365": _deferred("emogen_bench.models.resnet", "load_resnet50_places365"),
    "emo-resnet50-emoset": _deferred("emogen_bench.models.emoset_resnet", "load_emoset_resnet50"),
    "emo-space": _deferred("emogen_bench.artifacts.emo_space", "load_emo_space"),
    "attr-coefficients": _deferred("emogen_bench.artifacts.attr_tables", "load_attr_coefficients"),
    "attr-vocabulary": _deferred("emogen_bench.artifacts.attr_tables", "load_attr_vocabulary"),
}

__all__ = ["LOADERS", "Loader"]
