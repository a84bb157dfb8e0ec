"""EmoGen's emotion encoder: a ResNet-50 trained as an 8-way classifier on EmoSet.

Architecture of the released checkpoint (``2023-08-22-best.pth``): the torchvision
ResNet-50 as ``cnn`` (its ``fc`` unused), its first eight children again as
``backbone`` (the same modules, so the file stores those tensors twice), average
pool, ``fc_1`` Linear(2048, 768), and ``fc_2`` = ReLU, Dropout(0.5),
Linear(768, 8).  The 768-d ``fc_1`` output (before the ReLU) is the emotion
representation the emotion space is built on; the logits index ``task.EMOTIONS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet50

from emogen_bench.errors import WeightsError
from emogen_bench.models._state_dict import (
    build_on_meta,
    check_state_dict,
    load_strict,
    load_torch_file,
    strip_prefix,
    unwrap_state_dict,
)
from emogen_bench.task import EMOTIONS

#: Size of the emotion representation (``fc_1`` output).
EMOTION_EMBED_DIM = 768
#: The ResNet-50 children shared as ``backbone.0`` .. ``backbone.7``.
BACKBONE_CHILDREN: tuple[str, ...] = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class EmoSetResNet50(nn.Module):
    """ResNet-50 trunk -> pool -> ``fc_1`` (768-d representation) -> ``fc_2`` (8 emotion logits)."""

    def __init__(self, embed_dim: int = EMOTION_EMBED_DIM, num_emotions: int = len(EMOTIONS)) -> None:
        super().__init__()
        self.cnn = resnet50(weights=None)
        self.backbone = nn.Sequential(*(getattr(self.cnn, name) for name in BACKBONE_CHILDREN))
        self.fc_1 = nn.Linear(self.cnn.fc.in_features, embed_dim)
        self.fc_2 = nn.Sequential(nn.ReLU(), nn.Dropout(0.5), nn.Linear(embed_dim, num_emotions))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The emotion representation: the ``fc_1`` output, before the ReLU."""
        pooled = torch.flatten(self.cnn.avgpool(self.backbone(images)), 1)
        return self.fc_1(pooled)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc_2(self.embed(images))


def backbone_key_map(keys: Iterable[str]) -> dict[str, str]:
    """Map each ``backbone.<i>.<rest>`` key to the ``cnn.<child>.<rest>`` key of the same tensor."""
    mapping = {}
    for key in keys:
        if key.startswith("backbone."):
            _, index, rest = key.split(".", 2)
            mapping[key] = f"cnn.{BACKBONE_CHILDREN[int(index)]}.{rest}"
    return mapping


def differing_duplicates(state: Mapping[str, Any]) -> list[str]:
    """``backbone.*`` keys whose tensor differs from its ``cnn.*`` twin (both present)."""
    return [
        key
        for key, twin in backbone_key_map(state).items()
        if twin in state and not torch.equal(state[key], state[twin])
    ]


def load_emoset_resnet50(path: str | Path) -> EmoSetResNet50:
    """The EmoSet emotion encoder from a raw, ``{"state_dict": ...}`` or ``{"model": ...}`` file; strict.

    The twice-stored backbone tensors must be equal: they are one set of modules.
    """
    path = Path(path)
    what = "EmoSet ResNet-50 emotion encoder"
    state = strip_prefix(unwrap_state_dict(load_torch_file(path, what=what), path=path, what=what), "module.")
    model = build_on_meta(EmoSetResNet50)
    check_state_dict(model.state_dict(), state, path=path, what=what)
    differing = differing_duplicates(state)
    if differing:
        raise WeightsError(
            f"{path}: the {what} stores the ResNet trunk twice (cnn.* and backbone.*) and the copies differ in "
            f"{len(differing)} tensors (first: {', '.join(differing[:5])}); they must be one set of weights. "
            "The file is not the released checkpoint: fetch it again."
        )
    return load_strict(model, state, path=path, what=what)
