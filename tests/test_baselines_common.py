"""The baseline interface: registry, settings parsing, checkpoint configs and the shared prompt sampler."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")

from baselines.common import (  # noqa: E402
    BASELINES,
    Baseline,
    PromptGenerateConfig,
    generate_from_prompts,
    get_baseline,
    image_prompt,
    initial_latents,
    load_components,
    parse_set_options,
    read_checkpoint_config,
    settings_from_mapping,
    write_checkpoint_config,
)
from emogen_bench.errors import UsageError, WeightsError  # noqa: E402
from emogen_bench.submission import read_metadata, validate_submission  # noqa: E402
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES  # noqa: E402
from reference.sd import tiny_sd_components  # noqa: E402

PROMPTS = {emotion: f"a photo of {emotion}" for emotion in EMOTION_NAMES}


def _config(**changes: object) -> PromptGenerateConfig:
    values = dict(per_emotion=2, steps=2, width=256, height=256, batch_size=8, show_progress=False)
    values.update(changes)
    return PromptGenerateConfig(**values)  # type: ignore[arg-type]


def _expected_seed(seed: int, emotion: str, index: int) -> int:
    """The documented seed rule, computed here from its words."""
    digest = hashlib.sha256(f"emogen-reference/{seed}/{EMOTION_IDS[emotion]}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class _Example:
    count: int = 1
    rate: float = 0.5
    flag: bool = False
    name: str = "x"
    limit: int | None = None
    mode: Literal["a", "b"] = "a"
    words: tuple[str, ...] = ("one",)


def test_registry_names_and_lazy_lookup() -> None:
    assert list(BASELINES) == ["sd", "textual-inversion", "dreambooth", "caption-sd"]
    sd = get_baseline("sd")
    assert isinstance(sd, Baseline) and sd.name == "sd" and sd.trains is False
    ti = get_baseline("textual-inversion")
    assert ti.name == "textual-inversion" and ti.trains is True
    with pytest.raises(UsageError, match="unknown baseline 'nope'.*sd, textual-inversion, dreambooth, caption-sd"):
        get_baseline("nope")


def test_settings_from_strings_and_values() -> None:
    parsed = settings_from_mapping(
        _Example,
        {"count": "7", "rate": "1e-3", "flag": "true", "name": "y", "limit": "none", "mode": "b", "words": "p|q"},
        "demo",
    )
    assert parsed == _Example(7, 1e-3, True, "y", None, "b", ("p", "q"))
    assert settings_from_mapping(_Example, {"limit": 5, "words": ["a", "b"]}, "demo") == _Example(
        limit=5, words=("a", "b")
    )
    assert settings_from_mapping(_Example, {"words": "a,b"}, "demo").words == ("a", "b")
    assert settings_from_mapping(_Example, None, "demo") == _Example()
    with pytest.raises(UsageError, match="unknown demo setting.*bogus.*the settings are: count, flag"):
        settings_from_mapping(_Example, {"bogus": 1}, "demo")
    with pytest.raises(UsageError, match="count='many': expected an integer"):
        settings_from_mapping(_Example, {"count": "many"}, "demo")
    with pytest.raises(UsageError, match="mode='c': expected one of a, b"):
        settings_from_mapping(_Example, {"mode": "c"}, "demo")
    with pytest.raises(UsageError, match="expected true or false"):
        settings_from_mapping(_Example, {"flag": "maybe"}, "demo")


def test_parse_set_options() -> None:
    assert parse_set_options(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_set_options(["novalue"])


def test_prompt_config_checks_its_values() -> None:
    with pytest.raises(UsageError, match="multiples of 8"):
        PromptGenerateConfig(width=250)
    with pytest.raises(UsageError, match="at least 1"):
        PromptGenerateConfig(per_emotion=0)


def test_image_prompt_takes_templates_in_turn() -> None:
    prompts = {"awe": ["one", "two", "three"], "fear": "only"}
    assert [image_prompt(prompts, "awe", i) for i in range(5)] == ["one", "two", "three", "one", "two"]
    assert image_prompt(prompts, "fear", 9) == "only"


def test_initial_latents_come_from_each_images_own_seed() -> None:
    latents = initial_latents([5, 11], (4, 3, 2))
    for row, seed in zip(latents, [5, 11]):
        assert torch.equal(row, torch.randn((1, 4, 3, 2), generator=torch.Generator().manual_seed(seed))[0])


def test_checkpoint_config_round_trip(tmp_path: Path) -> None:
    components = tiny_sd_components()
    write_checkpoint_config(tmp_path, "sd", _Example(count=3), components, steps=4)
    document = read_checkpoint_config(tmp_path, "sd")
    assert document["settings"]["count"] == 3 and document["settings"]["words"] == ["one"]
    assert document["sd"]["model_id"] == "tiny-sd" and document["steps"] == 4
    with pytest.raises(UsageError, match="checkpoint of baseline 'sd', not 'dreambooth'"):
        read_checkpoint_config(tmp_path, "dreambooth")
    with pytest.raises(UsageError, match="no config.json"):
        read_checkpoint_config(tmp_path / "missing", "sd")
    (tmp_path / "config.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(WeightsError, match="not written by an emogen-bench baseline"):
        read_checkpoint_config(tmp_path, "sd")


def test_load_components_tiny_and_checks() -> None:
    components = load_components(tiny=True, device="cpu")
    assert components.model_id == "tiny-sd" and components.hidden_size == 32
    with pytest.raises(UsageError, match="dtype 'fp8'"):
        load_components(tiny=True, device="cpu", dtype="fp8")


@pytest.fixture(scope="module")
def submission(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prompts") / "submission"
    generate_from_prompts(tiny_sd_components(), PROMPTS, _config(), out, method="test baseline",
                          extra_metadata={"baseline": "test"})
    return out


def test_prompt_submission_is_valid_and_records_the_run(submission: Path) -> None:
    report = validate_submission(submission, per_emotion=2, show_progress=False)
    assert report.valid, report.errors
    metadata = read_metadata(submission / "submission.json")
    assert metadata.method == "test baseline" and metadata.base_model == "tiny-sd"
    assert metadata.sampler == "UniPCMultistepScheduler" and metadata.steps == 2 and metadata.guidance == 7.5
    assert metadata.resolution == (256, 256)
    assert metadata.seeds == {
        f"{e}/{e}_{i:04d}.png": _expected_seed(0, e, i) for e in EMOTION_NAMES for i in range(2)
    }
    notes = json.loads(metadata.notes.removeprefix("generation settings: "))
    assert notes["prompts"] == PROMPTS and notes["baseline"] == "test" and notes["negative_prompt"] == ""
    with Image.open(submission / "awe" / "awe_0001.png") as image:
        assert image.size == (256, 256) and image.mode == "RGB"


def test_pixels_match_diffusers_pipeline(submission: Path) -> None:
    """Independent check: diffusers' StableDiffusionPipeline with the same latent, sampler and guidance."""
    from diffusers import StableDiffusionPipeline, UniPCMultistepScheduler

    parts = tiny_sd_components()
    pipeline = StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=UniPCMultistepScheduler.from_config(parts.noise_scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    latent = torch.randn((1, 4, 32, 32), generator=torch.Generator().manual_seed(_expected_seed(0, "fear", 1)))
    image = pipeline(PROMPTS["fear"], height=256, width=256, num_inference_steps=2, guidance_scale=7.5,
                     latents=latent, output_type="np").images[0]
    ours = np.asarray(Image.open(submission / "fear" / "fear_0001.png")).astype(np.float64)
    assert np.abs(ours - image * 255).max() <= 0.51


def test_resume_keeps_existing_images_and_refuses_other_settings(submission: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(submission, copy)
    kept = (copy / "awe" / "awe_0000.png").stat().st_mtime_ns
    original = (copy / "sadness" / "sadness_0001.png").read_bytes()
    (copy / "sadness" / "sadness_0001.png").unlink()
    generate_from_prompts(tiny_sd_components(), PROMPTS, _config(), copy, method="test baseline",
                          extra_metadata={"baseline": "test"})
    assert (copy / "sadness" / "sadness_0001.png").read_bytes() == original
    assert (copy / "awe" / "awe_0000.png").stat().st_mtime_ns == kept
    with pytest.raises(UsageError, match="guidance differ"):
        generate_from_prompts(tiny_sd_components(), PROMPTS, _config(guidance=3.0), copy, method="test baseline",
                              extra_metadata={"baseline": "test"})
    (copy / "fear" / "fear_0000.png").write_bytes(b"broken")
    with pytest.raises(UsageError, match="not complete 256x256 PNGs"):
        generate_from_prompts(tiny_sd_components(), PROMPTS, _config(), copy, method="test baseline",
                              extra_metadata={"baseline": "test"})
    with pytest.raises(UsageError, match="missing \\['sadness'\\]"):
        generate_from_prompts(tiny_sd_components(), {e: p for e, p in PROMPTS.items() if e != "sadness"}, _config(),
                              tmp_path / "other", method="x")
