"""The placeholder token, prompt encoding through its embedding only, and the pooled embedding."""

from __future__ import annotations

import pytest
import torch

from emogen_bench.errors import UsageError
from reference.conditioning import (
    PLACEHOLDER,
    add_placeholder_token,
    embed_texts,
    emotion_prompt_ids,
    encode_prompt,
    pooled_embedding,
)
from reference.sd import tiny_sd_components


@pytest.fixture(scope="module")
def parts():  # type: ignore[no-untyped-def]
    components = tiny_sd_components(seed=3)
    before = (len(components.tokenizer), components.text_encoder.get_input_embeddings().weight.shape[0])
    token_id = add_placeholder_token(components.tokenizer, components.text_encoder)
    return components, token_id, before


def test_placeholder_is_really_added(parts) -> None:  # type: ignore[no-untyped-def]
    components, token_id, (tokens_before, rows_before) = parts
    weight = components.text_encoder.get_input_embeddings().weight
    assert token_id == tokens_before == rows_before  # a new id, after every existing one (EOS included)
    assert token_id > components.tokenizer.eos_token_id
    assert len(components.tokenizer) == tokens_before + 1 and weight.shape[0] == rows_before + 1
    assert components.text_encoder.config.vocab_size == rows_before + 1
    assert components.tokenizer.tokenize(f"{PLACEHOLDER} bag") == [PLACEHOLDER, "bag</w>"]
    assert not weight.requires_grad
    assert torch.allclose(weight[token_id], weight[:-1].mean(dim=0))
    assert add_placeholder_token(components.tokenizer, components.text_encoder) == token_id  # idempotent
    assert len(components.tokenizer) == tokens_before + 1


def test_placeholder_lands_at_position_one(parts) -> None:  # type: ignore[no-untyped-def]
    components, token_id, _ = parts
    ids = emotion_prompt_ids(components.tokenizer)
    tok = components.tokenizer
    assert ids.shape == (1, 77)
    assert ids[0, :3].tolist() == [tok.bos_token_id, token_id, tok.eos_token_id]
    assert (ids[0, 2:] == tok.eos_token_id).all()  # SD-1.5 pads with EOS
    two = emotion_prompt_ids(tok, [PLACEHOLDER, f"{PLACEHOLDER} cup"])
    assert two[:, 1].tolist() == [token_id, token_id]
    with pytest.raises(UsageError, match="has no"):
        emotion_prompt_ids(tok, "a cup")


def test_prompt_changes_only_through_the_placeholder_embedding(parts) -> None:  # type: ignore[no-untyped-def]
    components, token_id, _ = parts
    encoder = components.text_encoder
    ids = emotion_prompt_ids(components.tokenizer, [PLACEHOLDER, f"{PLACEHOLDER} bag"])
    embeds = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    hidden = encode_prompt(encoder, ids, token_id, embeds)
    weight = encoder.get_input_embeddings().weight
    original = weight[token_id].clone()
    expected = []
    with torch.no_grad():  # independent computation: write the row into the embedding matrix itself
        for b in range(2):
            weight[token_id] = embeds[b]
            # the whole batch of 2, keeping row b: row b's inputs and the batch shape are encode_prompt's, so the
            # same float32 operations give its row bit for bit on any CPU (one row alone could round differently)
            expected.append(encoder(input_ids=ids).last_hidden_state[b])
        weight[token_id] = original
        plain = encoder(input_ids=ids).last_hidden_state
    torch.testing.assert_close(hidden, torch.stack(expected), rtol=0, atol=0)
    torch.testing.assert_close(hidden[:, 0], plain[:, 0], rtol=0, atol=0)  # BOS: causal, never sees the token
    assert not torch.allclose(hidden[:, 1], plain[:, 1])
    assert torch.equal(weight[token_id], original)  # the encoder itself is untouched afterwards
    again = encoder(input_ids=ids).last_hidden_state
    assert torch.equal(again, plain)


def test_encode_prompt_acts_as_inputs_embeds_and_passes_gradients(parts) -> None:  # type: ignore[no-untyped-def]
    components, token_id, _ = parts
    encoder = components.text_encoder
    ids = emotion_prompt_ids(components.tokenizer)
    embeds = torch.randn(1, 32, requires_grad=True)
    seen = []
    handle = encoder.embeddings.register_forward_hook(lambda module, args, output: seen.append(output.detach()))
    try:
        hidden = encode_prompt(encoder, ids, token_id, embeds)
    finally:
        handle.remove()
    with torch.no_grad():  # token embeddings with the placeholder's row replaced, then position embeddings added
        tokens = encoder.get_input_embeddings()(ids).clone()
        tokens[0, 1] = embeds[0]
        expected = encoder.embeddings(inputs_embeds=tokens)
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)
    (hidden[0, 1] * torch.linspace(-1, 1, 32)).sum().backward()
    assert embeds.grad is not None and embeds.grad.abs().sum() > 0
    assert encoder.get_input_embeddings().weight.grad is None


def test_two_placeholders_take_two_embeddings(parts) -> None:  # type: ignore[no-untyped-def]
    components, token_id, _ = parts
    ids = emotion_prompt_ids(components.tokenizer, f"{PLACEHOLDER} {PLACEHOLDER}")
    assert ids[0, 1:3].tolist() == [token_id, token_id]
    a, b = torch.randn(1, 32), torch.randn(1, 32)
    pair = encode_prompt(components.text_encoder, ids, token_id, torch.stack([a, b], dim=1))
    swapped = encode_prompt(components.text_encoder, ids, token_id, torch.stack([b, a], dim=1))
    same = encode_prompt(components.text_encoder, ids, token_id, a)
    assert not torch.allclose(pair, swapped) and not torch.allclose(pair, same)
    torch.testing.assert_close(encode_prompt(components.text_encoder, ids, token_id, torch.stack([a, a], dim=1)), same)


def test_pooled_eos_and_released_positions(parts) -> None:  # type: ignore[no-untyped-def]
    components, token_id, _ = parts
    eos = components.tokenizer.eos_token_id
    ids = emotion_prompt_ids(components.tokenizer, [PLACEHOLDER, f"{PLACEHOLDER} bag"])
    hidden = torch.randn(2, 77, 32)
    eos_pooled = pooled_embedding(hidden, ids, eos, "eos")
    released = pooled_embedding(hidden, ids, eos, "released")
    assert torch.equal(eos_pooled, torch.stack([hidden[0, 2], hidden[1, 3]]))  # first EOS after the prompt
    assert torch.equal(released, hidden[:, 1])  # argmax(input_ids) = the added token, as the released code pools
    plain = components.tokenizer(["bag"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    h = torch.randn(1, 77, 32)
    assert torch.equal(pooled_embedding(h, plain, eos, "eos"), pooled_embedding(h, plain, eos, "released"))
    with pytest.raises(UsageError):
        pooled_embedding(hidden, ids, eos, "mean")  # type: ignore[arg-type]


def test_embed_texts_is_eos_pooled_and_projected(parts) -> None:  # type: ignore[no-untyped-def]
    components, _, _ = parts
    texts = ["amusement park", "cemetery", "cup"]
    got = embed_texts(components.tokenizer, components.text_encoder, components.text_projection, texts, batch_size=2)
    with torch.no_grad():
        ids = components.tokenizer(texts, padding="max_length", max_length=77, return_tensors="pt").input_ids
        # in embed_texts' batches of 2: the same float32 operations on the same batches, bit for bit on any CPU
        hidden = torch.cat([components.text_encoder(input_ids=part).last_hidden_state for part in ids.split(2)])
        lengths = (ids != components.tokenizer.eos_token_id).sum(dim=1)  # BOS + words: EOS comes right after
        pooled = hidden[torch.arange(3), lengths]
        expected = torch.cat([part @ components.text_projection.weight.T for part in pooled.split(2)])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
