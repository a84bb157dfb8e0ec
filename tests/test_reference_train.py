"""Stage 2 of the reference EmoGen: losses against a direct computation, only the mapper learns, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tolerances import EPS64, U32, gamma

from emogen_bench.data import IndexRow
from emogen_bench.errors import UsageError
from reference.losses import (
    RELEASED_ATTR_SCALE,
    attribute_logits,
    attribute_loss,
    attribute_targets,
    combine_losses,
    emotion_confidence,
)
from reference.sd import tiny_sd_components
from reference.train import Stage2Config, load_checkpoint, train_stage2

TABLE = {
    "park": np.array([0.9, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01, 0.01]),
    "cemetery": np.array([0.01, 0.01, 0.01, 0.01, 0.02, 0.02, 0.02, 0.9]),
}
VOCABULARY = ["park", "cemetery", "cup"]


class TinySpace:
    """Stand-in emotion space: a fixed Gaussian per emotion in 768 dimensions."""

    def sample(self, emotion: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        offset = float(len(emotion))
        return offset + torch.randn(n, 768, generator=generator)


def test_attribute_loss_is_cross_entropy_over_cosines() -> None:
    g = torch.Generator().manual_seed(0)
    pooled, attrs = torch.randn(3, 8, generator=g), torch.randn(5, 8, generator=g)
    logits = attribute_logits(pooled, attrs)
    direct = torch.tensor([[F.cosine_similarity(p, a, dim=0).item() for a in attrs] for p in pooled])
    # each float32 cosine of d-vectors is within gamma_{3d+6}(u32) of exact (norms gamma_{d+1}, the d quotients
    # one more u, the dot product gamma_d of sum |a_i b_i| <= 1): both routes within twice that
    cosine_tol = 2 * gamma(3 * pooled.shape[1] + 6, U32)
    torch.testing.assert_close(logits, direct, rtol=0, atol=cosine_tol)
    targets = attribute_targets(["b", "zzz", "a"], {"a": 0, "b": 4})
    assert targets.tolist() == [4, -1, 0]
    loss = attribute_loss(logits, targets)
    rows = direct.tolist()
    by_hand = [
        -math.log(math.exp(rows[i][t]) / sum(math.exp(x) for x in rows[i])) if t >= 0 else 0.0
        for i, t in enumerate(targets.tolist())
    ]
    # cross-entropy is 2-Lipschitz in the logits (max norm); its float32 evaluation over K classes (shift, exp,
    # sum, log, subtract) is within gamma_{K+8}(u32) of (4 + |loss|) here (|logits| <= 1), float64 by hand likewise
    classes = logits.shape[1]
    loss_tol = 2 * cosine_tol + (gamma(classes + 8, U32) + gamma(classes + 8, EPS64)) * (4 + max(map(abs, by_hand)))
    torch.testing.assert_close(loss, torch.tensor(by_hand), rtol=0, atol=loss_tol)
    scaled_tol = 100 * (cosine_tol + gamma(2, U32))  # the cosine bound, scaled, plus each side's product by 100
    scaled = attribute_logits(pooled, attrs, logit_scale=100.0)
    torch.testing.assert_close(scaled, 100 * direct, rtol=0, atol=scaled_tol)


def test_emotion_confidence_and_threshold() -> None:
    a = emotion_confidence(TABLE, ["park", "park", "cemetery", "unknown"], [0, 7, 7, 0])
    torch.testing.assert_close(a, torch.tensor([0.9, 0.01, 0.9, 0.0]))
    filtered = emotion_confidence(TABLE, ["park", "park", "cemetery"], [0, 7, 7], threshold=0.05)
    torch.testing.assert_close(filtered, torch.tensor([0.9, 0.0, 0.9]))


def test_combine_losses_modes_and_ablations() -> None:
    l_ldm, l_attr, a = torch.tensor([0.2, 0.4, 0.6]), torch.tensor([3.0, 2.0, 0.0]), torch.tensor([0.9, 0.1, 0.0])
    present = torch.tensor([True, True, False])
    expect = [(1 - a[i]) * l_ldm[i] + a[i] * l_attr[i] for i in range(3)]
    torch.testing.assert_close(combine_losses(l_ldm, l_attr, a), torch.stack(expect))
    released = [(1 - a[i]) * l_ldm[i] + 0.01 * a[i] * l_attr[i] for i in range(3)]
    assert RELEASED_ATTR_SCALE == 0.01
    torch.testing.assert_close(combine_losses(l_ldm, l_attr, a, "released"), torch.stack(released))
    torch.testing.assert_close(combine_losses(l_ldm, l_attr, a, ablation="ldm-only"), l_ldm)
    torch.testing.assert_close(combine_losses(l_ldm, l_attr, a, ablation="no-attr-loss"), (1 - a) * l_ldm)
    fixed = combine_losses(l_ldm, l_attr, a, ablation="no-confidence", has_attribute=present, fixed_weight=0.5)
    torch.testing.assert_close(fixed, torch.tensor([0.5 * 0.2 + 0.5 * 3.0, 0.5 * 0.4 + 0.5 * 2.0, 0.6]))
    with pytest.raises(UsageError):
        combine_losses(l_ldm, l_attr, a, ablation="none")  # type: ignore[arg-type]


def emoset_rows(root: Path) -> list[IndexRow]:
    """The index rows of the four training images (written by :func:`write_emoset`)."""
    rows = []
    for number, (emotion, emotion_id, attribute) in enumerate(
        [("amusement", 0, "park"), ("amusement", 0, "cup"), ("sadness", 7, "cemetery"), ("sadness", 7, "other")]
    ):
        path = f"image/{emotion}/{emotion}_{number:05d}.jpg"
        rows.append(IndexRow(f"{number}", emotion, emotion_id, "train", attribute, "scene", attribute, path))
    return rows


def write_emoset(root: Path) -> list[IndexRow]:
    """Four seeded 80x72 JPEGs under ``root``, and their rows."""
    rows = emoset_rows(root)
    for number, row in enumerate(rows):
        (root / row.path).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(number).integers(0, 256, (80, 72, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / row.path)
    return rows


@pytest.fixture(scope="module")
def emoset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[IndexRow]]:
    root = tmp_path_factory.mktemp("emoset")
    return root, write_emoset(root)


def _config(**changes: object) -> Stage2Config:
    base = dict(
        max_steps=3,
        batch_size=2,
        resolution=64,
        mapper_input="space",
        mapper_hidden=16,
        checkpoint_every=2,
        show_progress=False,
        cpu=True,
        keep_checkpoints=5,
    )
    base.update(changes)
    return Stage2Config(**base)  # type: ignore[arg-type]


def _train(emoset, out: Path, **changes: object):  # type: ignore[no-untyped-def]
    root, rows = emoset
    return train_stage2(_config(**changes), tiny_sd_components(0), TinySpace(), TABLE, VOCABULARY, rows, root, out)


def test_only_the_mapper_gets_gradients_and_fixed_batch_loss_falls(emoset) -> None:  # type: ignore[no-untyped-def]
    from reference.conditioning import add_placeholder_token, embed_texts, emotion_prompt_ids
    from reference.mapper import MappingNetwork
    from reference.train import Stage2Images, _StepContext, stage2_losses, step_generator

    root, rows = emoset
    parts = tiny_sd_components(0)
    token_id = add_placeholder_token(parts.tokenizer, parts.text_encoder)
    config = _config(learning_rate=1e-2)
    context = _StepContext(
        parts,
        token_id,
        emotion_prompt_ids(parts.tokenizer),
        embed_texts(parts.tokenizer, parts.text_encoder, parts.text_projection, VOCABULARY),
        {v: i for i, v in enumerate(VOCABULARY)},
        TABLE,
        TinySpace(),
        None,
        torch.float32,
    )
    dataset = Stage2Images(rows, root, resolution=64, split="train", seed=0)
    items = [dataset[i] for i in range(4)]
    batch = tuple(torch.stack([torch.as_tensor(item[k]) for item in items]) for k in range(3))
    mapper = MappingNetwork(hidden=16, out_dim=32)
    optimizer = torch.optim.AdamW(mapper.parameters(), lr=1e-2)
    losses = []
    for step in range(6):
        result = stage2_losses(config, context, mapper, batch, rows, step_generator(0, 0, 0))  # same draws each step
        result["loss"].backward()
        if step == 0:
            frozen = [parts.text_encoder, parts.vae, parts.unet, parts.text_projection]
            assert all(p.grad is None and not p.requires_grad for m in frozen for p in m.parameters())
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mapper.parameters())
            assert 0 < float(result["a"]) < 1 and float(result["attr"]) > 0
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(result["loss"].detach()))
    assert losses[-1] < losses[0]


def test_checkpoint_resume_gives_the_same_next_step(emoset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    whole = _train(emoset, tmp_path / "whole")
    assert whole.steps == 3 and [p.name for p in sorted((tmp_path / "whole").glob("checkpoint-*"))] == [
        "checkpoint-2",
        "checkpoint-3",
    ]
    _train(emoset, tmp_path / "split", max_steps=2)
    with pytest.raises(UsageError, match="resume"):
        _train(emoset, tmp_path / "split")
    with pytest.raises(UsageError, match="different settings"):
        _train(emoset, tmp_path / "split", resume=True, learning_rate=0.5)
    resumed = _train(emoset, tmp_path / "split", resume=True)
    log = [json.loads(line) for line in (tmp_path / "whole" / "loss.jsonl").read_text().splitlines()]
    log_split = [json.loads(line) for line in (tmp_path / "split" / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [r["step"] for r in log_split] == [1, 2, 3]
    assert log == log_split  # same losses, bitwise (JSON floats round-trip exactly)
    mapper_a, config_a = load_checkpoint(whole.checkpoint)
    mapper_b, config_b = load_checkpoint(tmp_path / "split")  # a run folder: its latest checkpoint
    assert resumed.checkpoint.name == "checkpoint-3" and config_b["step"] == 3
    for (name, a), (_, b) in zip(mapper_a.state_dict().items(), mapper_b.state_dict().items()):
        assert torch.equal(a, b), name
    assert config_a["placeholder_token"] == "<emotion>" and config_a["pooled_mode"] == "eos"
    assert config_a["mapper"] == {
        "in_dim": 768,
        "hidden": 16,
        "out_dim": 32,
        "depth": 2,
        "layernorm": False,
        "dropout": 0.0,
    }
    assert config_a["sd"]["model_id"] == "tiny-sd" and config_a["stage2"]["max_steps"] == 3
    first, _ = load_checkpoint(tmp_path / "whole" / "checkpoint-2")
    assert not torch.equal(first.net[0].weight, mapper_a.net[0].weight)


def test_encoder_input_needs_an_encoder(emoset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="encoder"):
        _train(emoset, tmp_path / "run", mapper_input="encoder")


def test_encoder_input_feeds_the_mapper_each_images_feature(emoset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    encoder_module = pytest.importorskip("reference.encoder")
    root, rows = emoset
    torch.manual_seed(0)
    encoder = encoder_module.EmotionClassifier(encoder_module.TinyTrunk())
    config = _config(mapper_input="encoder", max_steps=1)
    result = train_stage2(config, tiny_sd_components(0), None, TABLE, VOCABULARY, rows, root, tmp_path / "run",
                          encoder=encoder)  # fmt: skip
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())
    mapper, saved = load_checkpoint(result.checkpoint)
    assert saved["stage2"]["mapper_input"] == "encoder" and saved["step"] == 1
    assert math.isfinite(result.last_loss or float("nan"))


def test_resume_before_the_first_checkpoint_logs_each_step_once(emoset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A run killed before its first checkpoint, resumed, starts over: its loss.jsonl must not list steps twice."""
    out = tmp_path / "run"
    out.mkdir()
    stale = [{"step": 1, "loss": 9.0}, {"step": 2, "loss": 8.0}]
    (out / "loss.jsonl").write_text("".join(json.dumps(line) + "\n" for line in stale), encoding="utf-8")
    _train(emoset, out, max_steps=1, resume=True)
    steps = [json.loads(line)["step"] for line in (out / "loss.jsonl").read_text(encoding="utf-8").splitlines()]
    assert steps == [1]
