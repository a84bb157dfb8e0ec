"""EmoSet images for the emotion encoder and the CLIP head: rows of a prepared index, read from the EmoSet folder.

The rows come from ``emogen_bench.data.load_index`` (the ``--out`` folder of
``emogen-bench data prepare``); an image's file is ``emoset_root / row.path``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms

from emogen_bench.data import IndexRow
from emogen_bench.errors import DataError, UsageError
from emogen_bench.task import DATA

#: The released encoder's preprocessing: Resize 256 (shorter side), CenterCrop 224, then (x - 0.5) / 0.5.
ENCODER_RESIZE = 256
ENCODER_CROP = 224
ENCODER_MEAN = (0.5, 0.5, 0.5)
ENCODER_STD = (0.5, 0.5, 0.5)


def encoder_transform(train: bool, *, resize: int = ENCODER_RESIZE, crop: int = ENCODER_CROP) -> Callable[[Any], Any]:
    """PIL image -> normalised tensor (3, crop, crop) for the emotion encoder.

    Evaluation (``train=False``) is the released code's: Resize, CenterCrop,
    ToTensor, Normalize(0.5, 0.5).  Training replaces the centre crop by a
    random crop of the same size and adds a horizontal flip, so the training
    images keep the framing the encoder sees at evaluation.
    """
    if crop > resize:
        raise UsageError(f"encoder crop {crop} is larger than the resize {resize}; use crop <= resize")
    crop_step = (
        transforms.Compose([transforms.RandomCrop(crop), transforms.RandomHorizontalFlip()])
        if train
        else (transforms.CenterCrop(crop))
    )
    return transforms.Compose([
        transforms.Resize(resize),
        crop_step,
        transforms.ToTensor(),
        transforms.Normalize(ENCODER_MEAN, ENCODER_STD),
    ])  # fmt: skip


def split_rows(rows: Sequence[IndexRow], split: str) -> list[IndexRow]:
    """The rows of one split (``train``, ``val`` or ``test``), in index order."""
    if split not in DATA.splits:
        raise UsageError(f"unknown split {split!r}; expected one of {', '.join(DATA.splits)}")
    return [row for row in rows if row.split == split]


def open_rgb(path: Path, row: IndexRow) -> Image.Image:
    """The image of ``row`` as RGB; a missing or unreadable file is a :class:`DataError` naming it."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        reason = "file not found" if isinstance(exc, FileNotFoundError) else f"{type(exc).__name__}: {exc}"
        raise DataError(
            f"{path}: cannot read the image of index row {row.id!r} ({reason}). The EmoSet folder changed since "
            "`emogen-bench data prepare`: restore the file or prepare the index again."
        ) from None


class EmoSetImages(Dataset):
    """``(image tensor, emotion id, position in rows)`` for each index row; the file is ``emoset_root / row.path``.

    ``transform`` maps the RGB PIL image to what the model reads (default:
    :func:`encoder_transform` for evaluation).
    """

    def __init__(
        self,
        rows: Sequence[IndexRow],
        emoset_root: str | Path,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        root = Path(emoset_root)
        if not root.is_dir():
            raise UsageError(f"{root}: EmoSet folder not found; pass the folder that `data prepare` read")
        self.rows = list(rows)
        self.root = root
        self.transform = transform if transform is not None else encoder_transform(False)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int) -> tuple[Any, int, int]:
        row = self.rows[position]
        image = open_rgb(self.root / row.path, row)
        return self.transform(image), row.emotion_id, position

    def labels(self) -> torch.Tensor:
        """The emotion ids of all rows, (N,) int64, in row order."""
        return torch.tensor([row.emotion_id for row in self.rows], dtype=torch.long)
