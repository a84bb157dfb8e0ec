"""EmoGen's emotion space: one diagonal Gaussian per emotion over the 768-d encoder outputs.

The release stores each emotion as two tensor files, ``<emotion>_mean_v2.pt`` and
``<emotion>_std_v2.pt`` (float32, shape (768,)); sampling an emotion embedding is
one independent normal draw per dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from emogen_bench.errors import WeightsError
from emogen_bench.models._state_dict import load_torch_file
from emogen_bench.task import EMOTION_NAMES

EMO_SPACE_DIM = 768
#: File name of one statistic of one emotion in the released folder.
FILE_PATTERN = "{emotion}_{stat}_v2.pt"


@dataclass(frozen=True)
class EmotionGaussian:
    """Mean and (unbiased) standard deviation of one emotion's encoder outputs, float32 (768,)."""

    mean: torch.Tensor
    std: torch.Tensor


def emo_space_files(folder: str | Path) -> dict[tuple[str, str], Path]:
    """The 16 expected paths, keyed by ``(emotion, "mean" | "std")``."""
    folder = Path(folder)
    return {
        (emotion, stat): folder / FILE_PATTERN.format(emotion=emotion, stat=stat)
        for emotion in EMOTION_NAMES
        for stat in ("mean", "std")
    }


def _load_vector(path: Path, *, positive: bool) -> torch.Tensor:
    tensor = load_torch_file(path, what="emotion-space statistic")
    if not isinstance(tensor, torch.Tensor):
        raise WeightsError(f"{path}: expected a tensor of shape ({EMO_SPACE_DIM},), found {type(tensor).__name__}.")
    if tuple(tensor.shape) != (EMO_SPACE_DIM,) or not tensor.is_floating_point():
        raise WeightsError(
            f"{path}: expected a float tensor of shape ({EMO_SPACE_DIM},), found {tensor.dtype} {tuple(tensor.shape)}."
        )
    tensor = tensor.detach().to(torch.float32).contiguous()
    if not torch.isfinite(tensor).all():
        raise WeightsError(f"{path}: holds NaN or infinite values; the file is damaged: fetch it again.")
    if positive and not (tensor > 0).all():
        raise WeightsError(
            f"{path}: a standard deviation must be > 0 in every dimension; found min {tensor.min().item():g}."
        )
    return tensor


def load_emo_space(folder: str | Path) -> dict[str, EmotionGaussian]:
    """All eight emotions' Gaussians, in ``task.EMOTION_NAMES`` order, from the release folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(
            f"{folder}: emotion-space folder not found; fetch it with the `emogen-bench weights` command."
        )
    files = emo_space_files(folder)
    absent = [path.name for path in files.values() if not path.is_file()]
    if absent:
        raise WeightsError(
            f"{folder}: emotion-space files missing ({len(absent)} of {len(files)}): {', '.join(absent[:5])}; "
            "fetch them again."
        )
    return {
        emotion: EmotionGaussian(
            mean=_load_vector(files[emotion, "mean"], positive=False),
            std=_load_vector(files[emotion, "std"], positive=True),
        )
        for emotion in EMOTION_NAMES
    }
