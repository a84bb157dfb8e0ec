"""DreamBooth baseline on tiny components: the supplement's image selections, what training changes, exact resume,
and per-emotion generation into a valid submission."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")

from baselines.common import PromptGenerateConfig, render_prompts  # noqa: E402
from baselines.dreambooth import (  # noqa: E402
    ConceptStream,
    DreamBooth,
    DreamBoothSettings,
    concept_order,
    denoising_loss,
    ema_decay_at,
    ema_update,
    load_weights_into,
    select_concept_images,
    tokenize,
)
from emogen_bench.data import IndexRow, prepare_emoset  # noqa: E402
from emogen_bench.errors import UsageError  # noqa: E402
from emogen_bench.submission import read_metadata, validate_submission  # noqa: E402
from emogen_bench.task import EMOTION_NAMES  # noqa: E402
from reference.generate import plan_submission  # noqa: E402
from reference.sd import tiny_sd_components  # noqa: E402

TRAIN = {"resolution": 32, "learning_rate": 1e-3, "show_progress": False, "cpu": True}
GENERATE = {"per_emotion": 2, "steps": 1, "guidance": 1.0, "width": 256, "height": 256, "batch_size": 8,
            "show_progress": False}  # fmt: skip


def _row(number: int, emotion: str, attribute: str, split: str = "train") -> IndexRow:
    return IndexRow(f"{emotion}_{number}", emotion, EMOTION_NAMES.index(emotion), split, attribute, "scene",
                    attribute, f"image/{emotion}/{emotion}_{number}.jpg")  # fmt: skip


#: 15 amusement training images with skewed attributes, one validation image, and other emotions' images.
ATTRIBUTES = ["park"] * 10 + ["cup"] * 2 + ["forest", "meadow", "street"]
ROWS = (
    [_row(i, "amusement", a) for i, a in enumerate(ATTRIBUTES)]
    + [_row(99, "amusement", "park", "val")]
    + [_row(i, "sadness", "cemetery") for i in range(4)]
)


def test_uniform_selection_is_a_seeded_shuffle_of_the_emotions_images() -> None:
    chosen = select_concept_images(ROWS, "amusement", 5, "uniform", seed=3)
    order = list(range(15))
    random.Random("dreambooth/3/amusement/select").shuffle(order)
    assert [row.id for row in chosen] == [f"amusement_{i}" for i in order[:5]]
    assert chosen == select_concept_images(ROWS, "amusement", 5, "uniform", seed=3)
    assert chosen != select_concept_images(ROWS, "amusement", 5, "uniform", seed=4)
    assert len(select_concept_images(ROWS, "amusement", 5000, "uniform", seed=3)) == 15  # fewer than asked
    everything = select_concept_images(ROWS, "amusement", "all", "uniform", seed=3)
    assert sorted(r.id for r in everything) == sorted(f"amusement_{i}" for i in range(15))
    assert len(select_concept_images(ROWS, "amusement", "all", "uniform", seed=3, split="all")) == 16


def test_attribute_balanced_selection_spreads_over_the_attributes() -> None:
    five = select_concept_images(ROWS, "amusement", 5, "attribute-balanced", seed=0)
    assert sorted(r.attribute for r in five) == ["cup", "forest", "meadow", "park", "street"]
    uniform_hits = [
        len({r.attribute for r in select_concept_images(ROWS, "amusement", 5, "uniform", seed=s)}) for s in range(20)
    ]
    assert min(uniform_hits) < 5  # a plain shuffle usually repeats "park"; the balanced pick never does
    seven = Counter(r.attribute for r in select_concept_images(ROWS, "amusement", 7, "attribute-balanced", seed=0))
    assert seven == Counter({"park": 2, "cup": 2, "forest": 1, "meadow": 1, "street": 1})
    whole = concept_order(ROWS[:15], "attribute-balanced", random.Random(1))
    assert sorted(whole) == list(range(15))
    assert all(ROWS[i].attribute == "park" for i in whole[7:])  # the other attributes are used up first
    assert select_concept_images(ROWS, "amusement", 5, "attribute-balanced", seed=0) == five


def test_concept_stream_walks_every_image_once_per_epoch() -> None:
    selected = select_concept_images(ROWS, "amusement", 5, "attribute-balanced", seed=0)
    stream = ConceptStream(selected, "attribute-balanced", seed=0, emotion="amusement")
    first, second = [stream(n) for n in range(5)], [stream(n) for n in range(5, 10)]
    assert sorted(r.id for r in first) == sorted(r.id for r in second) == sorted(r.id for r in selected)
    assert [stream(n) for n in range(5)] == first


def test_settings_are_the_diffusers_example_and_checked() -> None:
    settings = DreamBoothSettings()
    assert (settings.learning_rate, settings.batch_size, settings.steps, settings.resolution) == (5e-6, 1, 400, 512)
    assert not settings.train_text_encoder and settings.prompt("awe") == "a photo of sks awe"
    with pytest.raises(UsageError, match="images"):
        DreamBoothSettings(images=0)
    with pytest.raises(UsageError, match="unknown dreambooth setting"):
        DreamBooth().train({"lr": 1}, Path("x"), Path("y"), Path("z"), components=None)  # type: ignore[arg-type]


def test_ema_matches_diffusers_ema_model() -> None:
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    parameters = [torch.nn.Parameter(torch.randn(3, 2))]
    reference = EMAModel(parameters, decay=0.9999)
    ours = {"p": parameters[0].detach().clone()}
    for update in range(1, 6):
        with torch.no_grad():
            parameters[0].add_(torch.randn(3, 2))
        reference.step(parameters)
        ema_update(ours, {"p": parameters[0]}, ema_decay_at(update, 0.9999))
    torch.testing.assert_close(ours["p"], reference.shadow_params[0])


@pytest.fixture(scope="module")
def emoset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from fake_emoset import make_fake_emoset

    base = tmp_path_factory.mktemp("dreambooth-emoset")
    make_fake_emoset(base / "emoset", per_split={"train": 2, "val": 0, "test": 0}, edge_cases=False, image_size=16)
    prepare_emoset(base / "emoset", base / "index", show_progress=False)
    return base / "index", base / "emoset"


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_steps_on_a_fixed_batch_lower_the_loss_and_only_the_unet_gets_gradients() -> None:
    parts = tiny_sd_components(0)
    parts.unet.requires_grad_(True)
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ids = tokenize(parts, ["a photo of sks awe", "a photo of sks fear"])
    optimizer = torch.optim.AdamW(parts.unet.parameters(), lr=1e-3)
    losses = []
    for step in range(6):
        loss = denoising_loss(parts, pixels, ids, torch.Generator().manual_seed(0))  # the same draws each step
        loss.backward()
        if step == 0:
            assert all(p.grad is None for m in (parts.vae, parts.text_encoder) for p in m.parameters())
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in parts.unet.parameters())
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_training_changes_only_the_unet_and_generation_uses_each_emotions_unet(emoset, tmp_path: Path) -> None:
    index_dir, root = emoset
    parts = tiny_sd_components(0)
    before = {name: _state(getattr(parts, name)) for name in ("unet", "vae", "text_encoder")}
    run = DreamBooth().train({**TRAIN, "max_steps": 2}, index_dir, root, tmp_path / "run", components=parts)
    for name in ("unet", "vae", "text_encoder"):  # the caller's components are left as they were
        assert _equal(_state(getattr(parts, name)), before[name]), name
    assert not any(p.requires_grad for p in parts.unet.parameters())
    config = json.loads((run / "config.json").read_text())
    assert config["baseline"] == "dreambooth" and config["images"] == {e: 2 for e in EMOTION_NAMES}
    selection = json.loads((run / "selection.json").read_text())
    assert all(len(selection[e]) == 2 for e in EMOTION_NAMES)
    unets = {}
    for emotion in EMOTION_NAMES:
        assert [json.loads(line)["step"] for line in (run / emotion / "loss.jsonl").read_text().splitlines()] == [1, 2]
        assert not (run / emotion / "text_encoder").exists() and not list((run / emotion).glob("checkpoint-*"))
        fresh = tiny_sd_components(0)
        load_weights_into(fresh.unet, run / emotion / "unet")
        unets[emotion] = _state(fresh.unet)
        assert not _equal(unets[emotion], before["unet"])
    assert not _equal(unets["awe"], unets["fear"])

    out = DreamBooth().generate(GENERATE, run, tmp_path / "submission", components=parts)
    report = validate_submission(out, per_emotion=2)
    assert report.valid, report.errors
    notes = json.loads(read_metadata(out / "submission.json").notes.removeprefix("generation settings: "))
    assert notes["prompts"]["awe"] == "a photo of sks awe" and set(notes["checkpoint"]["unet"]) == set(EMOTION_NAMES)
    assert _equal(_state(parts.unet), before["unet"])

    # small images from here on: an independent render of two fear images with the fear U-Net
    small = {**GENERATE, "steps": 2, "guidance": 7.5, "width": 64, "height": 64}
    out = DreamBooth().generate(small, run, tmp_path / "small", components=parts)
    fear = [i for i in plan_submission(2, 0) if i.emotion == "fear"]
    fresh = tiny_sd_components(0)
    load_weights_into(fresh.unet, run / "fear" / "unet")
    config = PromptGenerateConfig(per_emotion=2, steps=2, width=64, height=64, batch_size=2)
    pixels = render_prompts(fresh, ["a photo of sks fear"] * 2, [i.seed for i in fear], config)
    for image, array in zip(fear, pixels):
        np.testing.assert_array_equal(np.asarray(Image.open(out / image.path)), array)

    # resume: deleted images come back bitwise equal (one seed per image), the others are kept
    kept = (out / "awe" / "awe_0001.png").stat().st_mtime_ns
    originals = {p: (out / p).read_bytes() for p in ("awe/awe_0000.png", "sadness/sadness_0001.png")}
    for path in originals:
        (out / path).unlink()
    DreamBooth().generate(small, run, out, components=parts)
    assert all((out / p).read_bytes() == data for p, data in originals.items())
    assert (out / "awe" / "awe_0001.png").stat().st_mtime_ns == kept


class Interrupted(Exception):
    """Stands for a crash (Ctrl-C, a lost machine) in the middle of training."""


def test_resume_after_interruption_trains_the_same_weights(emoset, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    index_dir, root = emoset
    settings = {**TRAIN, "max_steps": 3, "checkpoint_every": 1, "emotions": "awe,fear", "images": 2,
                "sampling": "attribute-balanced"}  # fmt: skip
    whole = DreamBooth().train(settings, index_dir, root, tmp_path / "whole", components=tiny_sd_components(0))

    calls = []
    real_call = ConceptStream.__call__

    def crashing(self, sample):  # type: ignore[no-untyped-def]
        calls.append(self.key)
        if len(calls) == 5:  # awe took samples for steps 1-3; fear crashes in its step 2 (after checkpoint-1)
            raise Interrupted
        return real_call(self, sample)

    monkeypatch.setattr(ConceptStream, "__call__", crashing)
    with pytest.raises(Interrupted):
        DreamBooth().train(settings, index_dir, root, tmp_path / "split", components=tiny_sd_components(0))
    split = tmp_path / "split"
    assert (split / "awe" / "unet").is_dir() and [p.name for p in (split / "fear").glob("checkpoint-*")] == [
        "checkpoint-1"
    ]
    with pytest.raises(UsageError, match="resume"):
        DreamBooth().train(settings, index_dir, root, split, components=tiny_sd_components(0))
    with pytest.raises(UsageError, match="different settings"):
        DreamBooth().train({**settings, "learning_rate": 0.5}, index_dir, root, split, components=tiny_sd_components(0),
                           resume=True)  # fmt: skip
    monkeypatch.setattr(ConceptStream, "__call__", real_call)
    counting = []

    def counted(self, sample):  # type: ignore[no-untyped-def]
        counting.append((self.key, sample))
        return real_call(self, sample)

    monkeypatch.setattr(ConceptStream, "__call__", counted)
    DreamBooth().train(settings, index_dir, root, split, components=tiny_sd_components(0), resume=True)
    assert counting == [("dreambooth/0/fear", 1), ("dreambooth/0/fear", 2)]  # awe kept; fear from step 2 on
    for emotion in ("awe", "fear"):
        assert (whole / emotion / "loss.jsonl").read_text() == (split / emotion / "loss.jsonl").read_text()
        a, b = tiny_sd_components(0), tiny_sd_components(0)
        load_weights_into(a.unet, whole / emotion / "unet")
        load_weights_into(b.unet, split / emotion / "unet")
        assert _equal(_state(a.unet), _state(b.unet)), emotion
        assert not list((split / emotion).glob("checkpoint-*"))
    with pytest.raises(UsageError, match="no fine-tuned weights"):
        DreamBooth().generate(GENERATE, whole, tmp_path / "sub", components=tiny_sd_components(0))


def test_gradient_checkpointing_trains_the_same_weights_and_is_switched_off_after(emoset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index_dir, root = emoset
    runs = {}
    for flag in (False, True):
        parts = tiny_sd_components(0)
        settings = {**TRAIN, "max_steps": 2, "emotions": ["awe"], "gradient_checkpointing": flag}
        runs[flag] = DreamBooth().train(settings, index_dir, root, tmp_path / f"run-{flag}", components=parts)
        assert not parts.unet.is_gradient_checkpointing  # the caller's U-Net is left as it was
    trained = {}
    for flag, run in runs.items():
        fresh = tiny_sd_components(0)
        load_weights_into(fresh.unet, run / "awe" / "unet")
        trained[flag] = _state(fresh.unet)
    # recomputing the activations in the backward pass repeats the same float operations
    assert all(torch.equal(trained[False][k], trained[True][k]) for k in trained[False])
