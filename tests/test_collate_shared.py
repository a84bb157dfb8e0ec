"""Extractors that share one preprocessing (Sem-C and EmoSet) share one stacked tensor in a loader batch."""

from __future__ import annotations

import torch

from emogen_bench.pipeline import _collate


def test_names_holding_the_same_tensors_get_one_stacked_tensor_and_others_their_own() -> None:
    samples = []
    for position in range(3):
        shared = torch.full((3, 4, 4), position, dtype=torch.uint8)
        samples.append((position, {"semantic": shared, "emoset": shared, "lpips": shared.clone()}))
    batch = _collate(samples)
    (sem_positions, semantic), (emo_positions, emoset) = batch.inputs["semantic"], batch.inputs["emoset"]
    assert semantic is emoset and sem_positions == emo_positions == [0, 1, 2]
    assert batch.inputs["lpips"][1] is not semantic
    expected = torch.stack([torch.full((3, 4, 4), p, dtype=torch.uint8) for p in range(3)])
    assert torch.equal(semantic, expected) and torch.equal(batch.inputs["lpips"][1], expected)
