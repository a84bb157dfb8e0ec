"""EmoGen's CLIP-space emotion classifier: one linear layer on the 768-d CLIP image embedding.

The released file (``time_2023-11-12_03-29-best.pth``) holds ``fc.weight`` (8, 768)
and ``fc.bias`` (8,), saved from a CUDA device; it is mapped to the CPU here.
Class ``k`` of the logits is the emotion with id ``k`` (``task.EMOTIONS``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from emogen_bench.models._state_dict import build_on_meta, load_strict, load_torch_file, unwrap_state_dict
from emogen_bench.task import EMOTIONS

#: Size of the CLIP ViT-L/14 projected image embedding the head reads.
CLIP_EMBED_DIM = 768


class EmotionHead(nn.Module):
    """``fc``: Linear(768, 8); input the projected CLIP image embedding, output emotion logits."""

    def __init__(self, embed_dim: int = CLIP_EMBED_DIM, num_emotions: int = len(EMOTIONS)) -> None:
        super().__init__()
        self.fc = nn.Linear(embed_dim, num_emotions)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.fc(embeddings)


def load_emotion_head(path: str | Path) -> EmotionHead:
    """The CLIP-space emotion head from its state dict file, keys and shapes checked strictly."""
    path = Path(path)
    state = unwrap_state_dict(load_torch_file(path, what="CLIP emotion head"), path=path, what="CLIP emotion head")
    return load_strict(build_on_meta(EmotionHead), state, path=path, what="CLIP emotion head (fc: 768 -> 8)")
