"""Stable Diffusion components for the reference EmoGen: tiny stand-ins, loading from a folder, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.weights import load_registry
from reference.mapper import MappingNetwork
from reference.sd import (
    DEFAULT_SD_MODEL,
    DEFAULT_SD_REVISION,
    SD_ARTIFACT,
    SUBFOLDERS,
    load_sd_components,
    tiny_sd_components,
)


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    return tiny_sd_components(seed=0)


def test_defaults_repeat_the_registry_pin() -> None:
    hf = load_registry().get(SD_ARTIFACT).hf
    assert (hf.repo_id, hf.revision) == (DEFAULT_SD_MODEL, DEFAULT_SD_REVISION)


def test_tiny_components_are_frozen_deterministic_and_sd_shaped(tiny) -> None:  # type: ignore[no-untyped-def]
    modules = (tiny.text_encoder, tiny.vae, tiny.unet, tiny.text_projection)
    assert all(not p.requires_grad for m in modules for p in m.parameters())
    assert not any(m.training for m in modules)
    assert tiny.hidden_size == 32 and tiny.vae_scale_factor == 8
    assert tiny.text_encoder.config.max_position_embeddings == tiny.tokenizer.model_max_length == 77
    assert tiny.unet.config.cross_attention_dim == 32
    config = tiny.noise_scheduler.config
    assert (config.num_train_timesteps, config.beta_schedule, config.prediction_type) == (
        1000,
        "scaled_linear",
        "epsilon",
    )
    assert (config.beta_start, config.beta_end) == (0.00085, 0.012)
    assert tiny.tokenizer.tokenize("amusement park") == ["amusement</w>", "park</w>"]
    again = tiny_sd_components(seed=0)
    assert torch.equal(again.unet.conv_in.weight, tiny.unet.conv_in.weight)
    assert not torch.equal(tiny_sd_components(seed=1).unet.conv_in.weight, tiny.unet.conv_in.weight)


def _save_diffusers_folder(components, folder: Path) -> None:  # type: ignore[no-untyped-def]
    components.unet.save_pretrained(folder / "unet")
    components.vae.save_pretrained(folder / "vae")
    components.text_encoder.save_pretrained(folder / "text_encoder")
    components.tokenizer.save_pretrained(folder / "tokenizer")
    components.noise_scheduler.save_pretrained(folder / "scheduler")


def test_load_from_a_local_diffusers_folder(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    _save_diffusers_folder(tiny, tmp_path / "sd")
    projection = torch.randn(32, 32)
    save_file({"text_projection.weight": projection}, str(tmp_path / "clip.safetensors"))
    loaded = load_sd_components(str(tmp_path / "sd"), clip_text_projection_from=tmp_path / "clip.safetensors")
    assert loaded.revision is None and loaded.model_id == str((tmp_path / "sd").resolve())
    assert torch.equal(loaded.unet.conv_in.weight, tiny.unet.conv_in.weight)
    assert torch.equal(loaded.vae.encoder.conv_in.weight, tiny.vae.encoder.conv_in.weight)
    assert torch.equal(loaded.text_projection.weight, projection)
    assert loaded.tokenizer("awe").input_ids == tiny.tokenizer("awe").input_ids
    assert all(not p.requires_grad for p in loaded.unet.parameters())
    identity = load_sd_components(str(tmp_path / "sd"), clip_text_projection_from=None)
    assert torch.equal(identity.text_projection.weight, torch.eye(32))


def test_incomplete_folder_names_what_is_missing(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "sd" / "unet").mkdir(parents=True)
    with pytest.raises(WeightsError) as error:
        load_sd_components(str(tmp_path / "sd"), clip_text_projection_from=None)
    assert "vae" in str(error.value) and "diffusers layout" in str(error.value)
    assert set(SUBFOLDERS) == {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}


def test_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        load_sd_components(str(tmp_path / "nowhere" / "sd"), clip_text_projection_from=None)


def test_missing_hub_model_without_downloads_names_model_revision_and_fix() -> None:
    with pytest.raises(WeightsError) as error:
        load_sd_components(DEFAULT_SD_MODEL, DEFAULT_SD_REVISION, clip_text_projection_from=None)
    message = str(error.value)
    assert DEFAULT_SD_MODEL in message and DEFAULT_SD_REVISION in message
    assert "emogen-bench weights fetch sd-1.5" in message and "allow_download" in message


def test_missing_projection_artifact_is_a_weights_error(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _save_diffusers_folder(tiny, tmp_path / "sd")
    with pytest.raises(WeightsError, match="clip-vit-l14"):
        load_sd_components(str(tmp_path / "sd"))


def test_mapper_has_the_paper_shape() -> None:
    mapper = MappingNetwork()
    assert sum(p.numel() for p in mapper.parameters()) == 768 * 1024 + 1024 + 1024 * 768 + 768 == 1_574_656
    assert [type(m).__name__ for m in mapper.net] == ["Linear", "ReLU", "Linear"]
    deep = MappingNetwork(16, 8, 4, depth=3, layernorm=True, dropout=0.1)
    names = [type(m).__name__ for m in deep.net]
    assert names == ["Linear", "LayerNorm", "ReLU", "Dropout", "Linear", "LayerNorm", "ReLU", "Dropout", "Linear"]
    assert [type(m).__name__ for m in MappingNetwork(16, 8, 4, depth=1).net] == ["Linear"]
    rebuilt = MappingNetwork(**deep.config)
    assert rebuilt.config == deep.config and deep(torch.zeros(2, 16)).shape == (2, 4)
