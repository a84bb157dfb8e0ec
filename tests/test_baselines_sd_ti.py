"""The Stable Diffusion and Textual Inversion baselines on tiny components built in code and a synthetic EmoSet."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

import baselines.textual_inversion as ti_module  # noqa: E402
from baselines.common import PromptGenerateConfig, render_prompts, settings_from_mapping  # noqa: E402
from baselines.sd_prompt import PROMPT_TEMPLATES, SDPromptSettings, StableDiffusionBaseline, emotion_prompts  # noqa: E402
from baselines.textual_inversion import (  # noqa: E402
    OBJECT_TEMPLATES,
    TextualInversion,
    TextualInversionSettings,
    denoising_loss,
    emotion_token,
    initializer_embedding,
    ti_pixels,
)
from emogen_bench.data import load_index, prepare_emoset  # noqa: E402
from emogen_bench.demo import write_synthetic_emoset  # noqa: E402
from emogen_bench.errors import UsageError  # noqa: E402
from emogen_bench.submission import read_metadata, validate_submission  # noqa: E402
from emogen_bench.task import EMOTION_NAMES  # noqa: E402
from reference.sd import SDComponents, tiny_sd_components  # noqa: E402

GENERATE = {"per_emotion": 2, "steps": 2, "width": 256, "height": 256, "batch_size": 8, "show_progress": False}
TRAIN = {
    "emotions": "amusement|awe",
    "max_steps": 3,
    "gradient_accumulation_steps": 2,
    "resolution": 64,
    "checkpoint_every": 1,
    "keep_checkpoints": 5,
    "show_progress": False,
    "cpu": True,
}


@pytest.fixture(scope="module")
def emoset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("emoset")
    root = write_synthetic_emoset(work / "emoset")
    prepare_emoset(root, work / "index", show_progress=False)
    return root, work / "index"


@pytest.fixture(scope="module")
def shared() -> SDComponents:
    """Tiny components for calls that leave them as they are (the baselines copy what they change)."""
    return tiny_sd_components()


def _regenerated_equal(baseline: object, settings: dict, checkpoint: Path | None, folder: Path, image: str) -> bool:
    """Delete one image and let a fresh run (new components) complete the folder: the same bytes come back."""
    before = (folder / image).read_bytes()
    (folder / image).unlink()
    baseline.generate(settings, checkpoint, folder, components=tiny_sd_components())  # type: ignore[attr-defined]
    return (folder / image).read_bytes() == before


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# ---- Stable Diffusion ----------------------------------------------------------------------------------------


def test_sd_prompts_come_from_documented_templates() -> None:
    assert emotion_prompts(PROMPT_TEMPLATES["photo"])["awe"] == ("a photo of awe",)
    settings = settings_from_mapping(SDPromptSettings, {"templates": "{emotion}|a picture of {emotion}"}, "sd")
    assert emotion_prompts(settings.chosen_templates())["fear"] == ("fear", "a picture of fear")
    assert SDPromptSettings(template_set="varied").chosen_templates() == PROMPT_TEMPLATES["varied"]
    with pytest.raises(UsageError, match="template_set='poem'"):
        SDPromptSettings(template_set="poem")
    with pytest.raises(UsageError, match="must contain \\{emotion\\}"):
        SDPromptSettings(templates=("a photo",))


def test_sd_generation_is_deterministic_and_valid(tmp_path: Path, shared: SDComponents) -> None:
    sd = StableDiffusionBaseline()
    first = sd.generate({**GENERATE, "seed": 3}, None, tmp_path / "a", components=shared)
    report = validate_submission(first, per_emotion=2, show_progress=False)
    assert report.valid, report.errors
    assert _regenerated_equal(sd, {**GENERATE, "seed": 3}, None, first, "awe/awe_0001.png")
    notes = json.loads(read_metadata(first / "submission.json").notes.removeprefix("generation settings: "))
    assert notes["prompts"]["contentment"] == ["a photo of contentment"] and notes["baseline"] == "sd"
    config = PromptGenerateConfig(per_emotion=1, steps=2, width=64, height=64, show_progress=False)
    pictures = [render_prompts(shared, ["a photo of awe"], [seed], config) for seed in (3, 3, 4)]
    assert np.array_equal(pictures[0], pictures[1]) and not np.array_equal(pictures[0], pictures[2])
    with pytest.raises(UsageError, match="nothing to train"):
        sd.train({}, tmp_path, tmp_path, tmp_path / "x", components=shared)
    with pytest.raises(UsageError, match="takes no --checkpoint"):
        sd.generate(GENERATE, tmp_path, tmp_path / "e", components=shared)
    with pytest.raises(UsageError, match="unknown sd setting.*learning_rate"):
        sd.generate({"learning_rate": 1}, None, tmp_path / "f", components=shared)


# ---- Textual Inversion: training ---------------------------------------------------------------------------


def test_ti_defaults_are_the_original_recipe() -> None:
    settings = TextualInversionSettings()
    assert settings.steps == 3000 and settings.batch_size == 1 and settings.gradient_accumulation_steps == 4
    assert settings.resolution == 512 and settings.learning_rate == 5e-4 and settings.scale_lr
    assert settings.effective_learning_rate(1) == pytest.approx(2e-3)
    assert settings.templates()[0] == "a photo of a {}" and len(OBJECT_TEMPLATES) == 27
    assert settings.emotions == EMOTION_NAMES and emotion_token("fear") == "<fear>"


def test_ti_fixed_batch_loss_falls_and_only_the_token_gets_gradients(emoset: tuple[Path, Path]) -> None:
    from PIL import Image

    root, index = emoset
    rows = [r for r in load_index(index) if r.emotion == "amusement" and r.split == "train"]
    parts = tiny_sd_components()
    tokenizer, text_encoder = copy.deepcopy(parts.tokenizer), copy.deepcopy(parts.text_encoder)
    tokenizer.add_tokens(["<amusement>"])
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    token_id = tokenizer.convert_tokens_to_ids("<amusement>")
    start = initializer_embedding(tokenizer, text_encoder, "amusement")
    assert torch.equal(start, text_encoder.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids(
        "amusement</w>")].detach())
    pixels = torch.stack([ti_pixels(Image.open(root / r.path), 64, False, False) for r in rows])
    ids = tokenizer(["a photo of a <amusement>"] * len(rows), padding="max_length", max_length=77,
                    return_tensors="pt").input_ids
    parameter = torch.nn.Parameter(start.reshape(1, -1).clone())
    optimizer = torch.optim.AdamW([parameter], lr=5e-2)
    losses = []
    for step in range(6):
        loss = denoising_loss(parts, text_encoder, ids, token_id, parameter, pixels, torch.Generator().manual_seed(0))
        loss.backward()
        if step == 0:
            frozen = [text_encoder, parts.unet, parts.vae]
            assert all(p.grad is None for m in frozen for p in m.parameters())
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


@pytest.fixture(scope="module")
def trained(emoset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A two-emotion run (3 steps of 2 micro-batches each) and the components it was given."""
    root, index = emoset
    out = tmp_path_factory.mktemp("ti") / "run"
    parts = tiny_sd_components()
    checkpoint = TextualInversion().train(TRAIN, index, root, out, components=parts)
    assert _same_weights(parts.text_encoder, tiny_sd_components().text_encoder)
    assert len(parts.tokenizer) == len(tiny_sd_components().tokenizer)  # the caller's tokenizer is untouched
    return checkpoint, out


def test_ti_learns_only_the_new_rows_and_diffusers_loads_them(trained: tuple[Path, Path]) -> None:
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    checkpoint, out = trained
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["baseline"] == "textual-inversion" and config["steps"] == 3
    assert config["tokens"] == {"amusement": "<amusement>", "awe": "<awe>"}
    assert config["learning_rate"] == pytest.approx(5e-4 * 2)
    log = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [(r["emotion"], r["step"]) for r in log] == [("amusement", 1), ("amusement", 2), ("amusement", 3),
                                                        ("awe", 1), ("awe", 2), ("awe", 3)]
    parts = tiny_sd_components()
    original = copy.deepcopy(parts.text_encoder)
    pipeline = StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=parts.noise_scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipeline.load_textual_inversion([str(checkpoint / "amusement"), str(checkpoint / "awe")])
    before = original.get_input_embeddings().weight
    after = pipeline.text_encoder.get_input_embeddings().weight
    rows = before.shape[0]
    assert after.shape[0] == rows + 2 and torch.equal(after[:rows], before)
    for emotion in ("amusement", "awe"):
        saved = load_file(str(checkpoint / emotion / "learned_embeds.safetensors"))
        assert list(saved) == [f"<{emotion}>"] and saved[f"<{emotion}>"].shape == (1, 32)
        row = after[pipeline.tokenizer.convert_tokens_to_ids(f"<{emotion}>")]
        assert torch.equal(row, saved[f"<{emotion}>"][0])
        assert not torch.equal(row, initializer_embedding(parts.tokenizer, original, emotion))  # it learned
    others = {k: v for k, v in pipeline.text_encoder.state_dict().items() if "token_embedding" not in k}
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in others.items())


def test_ti_resume_after_interruption_takes_the_same_steps(
    emoset: tuple[Path, Path],
    trained: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shared: SDComponents,
) -> None:
    root, index = emoset
    _, whole = trained
    calls = {"n": 0}
    real = ti_module.denoising_loss

    def interrupted(*args: object, **kwargs: object) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 6 + 3:  # amusement finished (3 steps x 2), awe in the middle of its step 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ti_module, "denoising_loss", interrupted)
    split = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt):
        TextualInversion().train(TRAIN, index, root, split, components=shared)
    monkeypatch.setattr(ti_module, "denoising_loss", real)
    assert not (split / "config.json").exists() and (split / "state" / "awe" / "checkpoint-1").is_dir()
    with pytest.raises(UsageError, match="--resume"):
        TextualInversion().train(TRAIN, index, root, split, components=shared)
    with pytest.raises(UsageError, match="different settings \\(learning_rate\\)"):
        TextualInversion().train({**TRAIN, "learning_rate": 0.1}, index, root, split, components=shared,
                                 resume=True)
    TextualInversion().train(TRAIN, index, root, split, components=shared, resume=True)
    for name in ("amusement/learned_embeds.safetensors", "awe/learned_embeds.safetensors", "loss.jsonl",
                 "state/awe/checkpoint-2/learned_embeds.safetensors"):
        assert (split / name).read_bytes() == (whole / name).read_bytes(), name
    finished = (split / "config.json").stat().st_mtime_ns
    TextualInversion().train(TRAIN, index, root, split, components=shared, resume=True)
    assert (split / "config.json").stat().st_mtime_ns == finished  # a finished run is not trained again


# ---- Textual Inversion: generation -------------------------------------------------------------------------


def test_ti_generation_is_deterministic_valid_and_uses_the_tokens(
    emoset: tuple[Path, Path], trained: tuple[Path, Path], tmp_path: Path, shared: SDComponents
) -> None:
    root, index = emoset
    settings = {**TRAIN, "emotions": "|".join(EMOTION_NAMES), "max_steps": 1, "gradient_accumulation_steps": 1}
    checkpoint = TextualInversion().train(settings, index, root, tmp_path / "all", components=shared)
    first = TextualInversion().generate(GENERATE, checkpoint, tmp_path / "a", components=shared)
    assert _regenerated_equal(TextualInversion(), GENERATE, checkpoint, first, "sadness/sadness_0000.png")
    report = validate_submission(first, per_emotion=2, show_progress=False)
    assert report.valid, report.errors
    metadata = read_metadata(first / "submission.json")
    notes = json.loads(metadata.notes.removeprefix("generation settings: "))
    assert notes["prompts"]["sadness"] == "a photo of <sadness>" and metadata.method.startswith("Textual Inversion")
    assert notes["checkpoint_embeddings"].startswith("sha256:")
    with pytest.raises(UsageError, match="no learned token for contentment"):
        TextualInversion().generate(GENERATE, trained[0], tmp_path / "c", components=shared)
    with pytest.raises(UsageError, match="needs --checkpoint"):
        TextualInversion().generate(GENERATE, None, tmp_path / "d", components=shared)
