"""Conditioning Stable Diffusion on an emotion: one added placeholder token whose embedding the mapper writes.

The placeholder is really added to the tokenizer (a new id after EOS) and the text encoder's embedding
matrix grows by one row; the prompt is just that token, so it sits at position 1 after BOS.  At encoding
time the token's embedding is replaced by the mapper output (position embeddings are added as usual),
and the full 77 x H last hidden state conditions the U-Net.

The pooled embedding for the attribute loss is taken at the EOS position, as CLIP pools.  The released
code pools at ``argmax(input_ids)``, which with an added token (id above EOS) is the placeholder itself;
``mode="released"`` reproduces that.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from emogen_bench.errors import UsageError

PLACEHOLDER = "<emotion>"
PooledMode = Literal["eos", "released"]
POOLED_MODES: tuple[str, ...] = ("eos", "released")


def add_placeholder_token(tokenizer: Any, text_encoder: nn.Module, token: str = PLACEHOLDER) -> int:
    """Add ``token`` to the tokenizer and one embedding row to the text encoder; return its id.

    Calling it again with the same pair is harmless (the existing id is returned).  The new row holds
    the mean of the existing rows (deterministic; its value never reaches the model, since
    :func:`encode_prompt` replaces it) and keeps the matrix's ``requires_grad`` setting.
    """
    if token not in tokenizer.get_vocab():
        if tokenizer.add_tokens([token]) != 1:
            raise UsageError(f"the tokenizer refused to add the placeholder token {token!r}")
    token_id = int(tokenizer.convert_tokens_to_ids(token))
    embedding = text_encoder.get_input_embeddings()
    rows = embedding.weight.shape[0]
    if rows < len(tokenizer):
        trainable = embedding.weight.requires_grad
        mean = embedding.weight.detach().mean(dim=0)
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        embedding = text_encoder.get_input_embeddings()
        with torch.no_grad():
            embedding.weight[rows:] = mean.to(embedding.weight.dtype)
        embedding.weight.requires_grad_(trainable)
    return token_id


def emotion_prompt_ids(tokenizer: Any, prompt: str | Sequence[str] = PLACEHOLDER) -> torch.Tensor:
    """Token ids ``(N, 77)`` of one prompt or several, padded like SD-1.5 (EOS to the full length).

    Every prompt must contain the placeholder, and the placeholder must already be in the tokenizer.
    """
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if PLACEHOLDER not in tokenizer.get_vocab():
        raise UsageError(f"the placeholder {PLACEHOLDER!r} is not in the tokenizer; call add_placeholder_token first")
    missing = [p for p in prompts if PLACEHOLDER not in p]
    if missing:
        raise UsageError(f"prompt {missing[0]!r} has no {PLACEHOLDER!r}; write the emotion token into the prompt")
    return tokenizer(
        prompts, padding="max_length", truncation=True, max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids


def _replacement(input_ids: torch.Tensor, placeholder_id: int, emotion_embeds: torch.Tensor) -> torch.Tensor:
    """``(B, L, H)`` rows to write at the placeholder positions (the k-th occurrence gets ``embeds[:, k]``)."""
    mask = input_ids == placeholder_id
    counts = mask.sum(dim=1)
    if bool((counts == 0).any()):
        raise UsageError(f"a prompt holds no placeholder token (id {placeholder_id}); nothing to condition on")
    if emotion_embeds.dim() == 2:
        return emotion_embeds[:, None, :].expand(-1, input_ids.shape[1], -1)
    if int(counts.max()) > emotion_embeds.shape[1]:
        raise UsageError(
            f"a prompt holds {int(counts.max())} placeholders but only {emotion_embeds.shape[1]} embeddings"
        )
    occurrence = (mask.cumsum(dim=1) - 1).clamp(min=0)
    index = occurrence[..., None].expand(-1, -1, emotion_embeds.shape[-1])
    return torch.gather(emotion_embeds, 1, index)


@contextmanager
def _token_override(
    embedding: nn.Module, input_ids: torch.Tensor, placeholder_id: int, embeds: torch.Tensor
) -> Iterator[None]:
    """While active, the embedding layer's output at the placeholder positions is ``embeds``."""
    mask = (input_ids == placeholder_id)[..., None]
    replacement = _replacement(input_ids, placeholder_id, embeds)

    def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.to(output.device), replacement.to(device=output.device, dtype=output.dtype), output)

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def encode_prompt(
    text_encoder: nn.Module, input_ids: torch.Tensor, placeholder_id: int, emotion_embeds: torch.Tensor
) -> torch.Tensor:
    """The last hidden state ``(B, 77, H)`` with the placeholder's token embedding replaced by ``emotion_embeds``.

    ``emotion_embeds`` is ``(B, H)`` (every placeholder of row b gets row b) or ``(B, K, H)`` (the k-th
    placeholder of row b gets ``[b, k]``: several emotions in one prompt, for emotion fusion).  The
    replacement acts as ``inputs_embeds`` would: on the token embedding, before the position embedding
    is added, and gradients flow back into ``emotion_embeds``.  CLIPTextModel in transformers 5 takes no
    ``inputs_embeds``, so the token-embedding layer's output is overridden for this one call.
    """
    if emotion_embeds.shape[0] != input_ids.shape[0]:
        raise UsageError(f"{input_ids.shape[0]} prompts but {emotion_embeds.shape[0]} emotion embeddings")
    device = text_encoder.get_input_embeddings().weight.device
    input_ids = input_ids.to(device)
    with _token_override(text_encoder.get_input_embeddings(), input_ids, placeholder_id, emotion_embeds):
        return text_encoder(input_ids=input_ids).last_hidden_state


def pooled_embedding(
    last_hidden_state: torch.Tensor, input_ids: torch.Tensor, eos_id: int, mode: PooledMode = "eos"
) -> torch.Tensor:
    """``(B, H)``: the hidden state at the first EOS (``"eos"``), or at ``argmax(input_ids)`` (``"released"``)."""
    if mode == "eos":
        positions = (input_ids == eos_id).int().argmax(dim=-1)
    elif mode == "released":
        positions = input_ids.int().argmax(dim=-1)
    else:
        raise UsageError(f"unknown pooled mode {mode!r}; expected one of {', '.join(POOLED_MODES)}")
    positions = positions.to(last_hidden_state.device)
    return last_hidden_state[torch.arange(last_hidden_state.shape[0], device=last_hidden_state.device), positions]


def attribute_text(attribute: str) -> str:
    """The text an attribute name is embedded as: ``amusement_park`` -> ``amusement park``."""
    return attribute.replace("_", " ")


@torch.no_grad()
def embed_texts(
    tokenizer: Any,
    text_encoder: nn.Module,
    text_projection: nn.Module,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
) -> torch.Tensor:
    """CLIP text embeddings ``(N, D)`` float32: EOS-pooled last hidden state through the text projection.

    This is CLIP's ``get_text_features`` for texts without the placeholder; EmoGen embeds the attribute
    vocabulary with it once, before training.
    """
    device = text_encoder.get_input_embeddings().weight.device
    chunks = []
    for start in range(0, len(texts), batch_size):
        ids = tokenizer(
            list(texts[start : start + batch_size]),
            padding="max_length",
            truncation=True,
            max_length=tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids.to(device)
        hidden = text_encoder(input_ids=ids).last_hidden_state
        pooled = pooled_embedding(hidden, ids, tokenizer.eos_token_id, "eos")
        weight = next(text_projection.parameters())
        chunks.append(text_projection(pooled.to(weight.dtype)).float())
    return torch.cat(chunks) if chunks else torch.zeros(0, text_projection.weight.shape[0])
