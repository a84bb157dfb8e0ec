"""EmoGen's stage-2 losses as small pure functions: attribute loss, emotion confidence, their combination.

Per sample: ``(1 - a) * L_LDM + a * L_attr`` where ``a`` is the emotion confidence of the image's
attribute for the image's emotion (0 when the attribute is unknown or below the threshold).  The
released code scales the attribute term by a further 0.01 (``mode="released"``).  Ablations:
``ldm-only`` (L_LDM alone), ``no-attr-loss`` ((1 - a) L_LDM: the attribute term dropped, the confidence
weighting kept), ``no-confidence`` (a fixed weight instead of the confidence for every attribute in the
vocabulary).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from emogen_bench.errors import UsageError

LossMode = Literal["paper", "released"]
Ablation = Literal["full", "ldm-only", "no-attr-loss", "no-confidence"]
LOSS_MODES: tuple[str, ...] = ("paper", "released")
ABLATIONS: tuple[str, ...] = ("full", "ldm-only", "no-attr-loss", "no-confidence")
#: The released code's extra factor on the attribute term (its ``attr_rate``).
RELEASED_ATTR_SCALE = 0.01
#: Target index of a sample whose attribute is not in the vocabulary (no attribute loss).
NO_ATTRIBUTE = -1


def ldm_loss(model_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample epsilon (or v) prediction MSE, ``(B,)`` float32: the mean over channels and pixels."""
    return F.mse_loss(model_pred.float(), target.float(), reduction="none").flatten(1).mean(dim=1)


def attribute_logits(pooled_proj: torch.Tensor, attr_embeds: torch.Tensor, logit_scale: float = 1.0) -> torch.Tensor:
    """``(B, K)`` cosine similarities between projected pooled embeddings and the attribute embeddings.

    The released code feeds the raw cosines (``logit_scale`` 1) to the cross-entropy.
    """
    a = F.normalize(pooled_proj.float(), dim=-1)
    b = F.normalize(attr_embeds.float().to(a.device), dim=-1)
    return logit_scale * a @ b.T


def attribute_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy ``(B,)``; 0 for targets equal to :data:`NO_ATTRIBUTE`."""
    return F.cross_entropy(logits, targets.to(logits.device), reduction="none", ignore_index=NO_ATTRIBUTE)


def attribute_targets(attributes: Sequence[str], vocabulary: Mapping[str, int]) -> torch.Tensor:
    """Class indices ``(B,)`` of the attributes in the vocabulary, :data:`NO_ATTRIBUTE` for unknown ones."""
    return torch.tensor([vocabulary.get(a, NO_ATTRIBUTE) for a in attributes], dtype=torch.long)


def emotion_confidence(
    table: Mapping[str, Any], attributes: Sequence[str], emotion_ids: Sequence[int], threshold: float = 0.0
) -> torch.Tensor:
    """``a`` per sample ``(B,)``: ``table[attribute][emotion]``; 0 when not in the table or below ``threshold``.

    ``table`` maps an attribute to its 8 emotion probabilities (EmoSet label order); ``threshold`` 0,
    the released setting, filters nothing.
    """
    values = []
    for attribute, emotion_id in zip(attributes, emotion_ids):
        row = table.get(attribute)
        a = 0.0 if row is None else float(row[int(emotion_id)])
        values.append(0.0 if a < threshold else a)
    return torch.tensor(values, dtype=torch.float32)


def combine_losses(
    l_ldm: torch.Tensor,
    l_attr: torch.Tensor,
    a: torch.Tensor,
    mode: LossMode = "paper",
    *,
    ablation: Ablation = "full",
    has_attribute: torch.Tensor | None = None,
    fixed_weight: float = 0.5,
) -> torch.Tensor:
    """Per-sample stage-2 loss ``(B,)``.

    ``full``: ``(1 - a) L_LDM + s a L_attr`` with ``s`` 1 (``paper``) or 0.01 (``released``);
    ``ldm-only``: ``L_LDM``; ``no-attr-loss``: ``(1 - a) L_LDM``; ``no-confidence``: ``a`` replaced by
    ``fixed_weight`` where ``has_attribute`` (all samples when not given), 0 elsewhere.
    """
    if mode not in LOSS_MODES:
        raise UsageError(f"unknown loss mode {mode!r}; expected one of {', '.join(LOSS_MODES)}")
    if ablation not in ABLATIONS:
        raise UsageError(f"unknown ablation {ablation!r}; expected one of {', '.join(ABLATIONS)}")
    a = a.to(device=l_ldm.device, dtype=torch.float32)
    if ablation == "ldm-only":
        return l_ldm.float()
    if ablation == "no-confidence":
        present = torch.ones_like(a, dtype=torch.bool) if has_attribute is None else has_attribute.to(a.device)
        a = torch.where(present, torch.full_like(a, fixed_weight), torch.zeros_like(a))
    scale = RELEASED_ATTR_SCALE if mode == "released" else 1.0
    loss = (1 - a) * l_ldm.float()
    if ablation == "no-attr-loss":
        return loss
    return loss + scale * a * l_attr.float().to(loss.device)
