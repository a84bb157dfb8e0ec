"""EmoGen's mapping network: an emotion-space vector (768) -> one token embedding of the text encoder.

The supplement's ablation over depth chose two layers, Linear(768, 1024), ReLU, Linear(1024, 768)
(1,574,656 parameters); depth, LayerNorm and dropout stay configurable for that ablation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MappingNetwork(nn.Module):
    """An MLP with ``depth`` Linear layers and ReLU between them.

    ``depth=1`` is a single Linear(in_dim, out_dim).  With ``layernorm`` each hidden Linear is followed
    by a LayerNorm (before its ReLU); with ``dropout`` > 0 each ReLU is followed by Dropout.
    """

    def __init__(
        self,
        in_dim: int = 768,
        hidden: int = 1024,
        out_dim: int = 768,
        depth: int = 2,
        layernorm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"mapper depth must be at least 1, got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mapper dropout must be in [0, 1), got {dropout}")
        self.in_dim, self.hidden, self.out_dim = in_dim, hidden, out_dim
        self.depth, self.layernorm, self.dropout = depth, layernorm, dropout
        widths = [in_dim] + [hidden] * (depth - 1) + [out_dim]
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(width_in, width_out))
            if index < depth - 1:
                if layernorm:
                    layers.append(nn.LayerNorm(width_out))
                layers.append(nn.ReLU())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)

    def forward(self, emotion: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim)`` emotion vectors -> ``(B, out_dim)`` token embeddings."""
        return self.net(emotion)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments, so that ``MappingNetwork(**mapper.config)`` rebuilds it."""
        return {
            "in_dim": self.in_dim,
            "hidden": self.hidden,
            "out_dim": self.out_dim,
            "depth": self.depth,
            "layernorm": self.layernorm,
            "dropout": self.dropout,
        }
