"""CLIP ViT-L/14 image tower from a local Hugging Face snapshot.

The snapshot of ``openai/clip-vit-large-patch14`` holds the full ``CLIPModel``
(text and vision towers); images only need the vision tower and its projection,
whose output is the 768-d embedding that ``CLIPModel.get_image_features``
returns (Emo-A and Sem-D both read it).  The text-tower keys are expected to be
unused; any other missing, unexpected or mis-shaped key is an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPConfig, CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.utils import logging as hf_logging

from emogen_bench.errors import WeightsError
from emogen_bench.features.clip_pixels import ClipPixelSettings, load_settings
from emogen_bench.models._state_dict import SHOWN_KEYS
from emogen_bench.safe_read import read_json

#: Keys of a full CLIPModel checkpoint that the image tower does not use (regular expressions).
TEXT_TOWER_PATTERNS: tuple[str, ...] = (r"^text_model\.", r"^text_projection\.", r"^logit_scale$")


class _CLIPVisionFromFullModel(CLIPVisionModelWithProjection):
    """The vision tower loaded from a full ``CLIPModel`` checkpoint: text keys are known to be unused."""

    _keys_to_ignore_on_load_unexpected = list(TEXT_TOWER_PATTERNS)


def vision_config_from(config: dict[str, Any]) -> CLIPVisionConfig:
    """The vision config of a snapshot's ``config.json`` (a full CLIP config or a vision-only one).

    A full CLIP config keeps the projection size at the top level; it is copied
    into the vision config, which otherwise falls back to a default size.
    """
    model_type = config.get("model_type")
    if model_type == "clip":
        full = CLIPConfig.from_dict(config)
        vision = full.vision_config
        vision.projection_dim = full.projection_dim
        return vision
    if model_type == "clip_vision_model":
        return CLIPVisionConfig.from_dict(config)
    raise ValueError(f"model_type {model_type!r} is not a CLIP model")


def _snapshot_config(snapshot_dir: Path) -> dict[str, Any]:
    if not snapshot_dir.is_dir():
        raise WeightsError(
            f"{snapshot_dir}: CLIP snapshot folder not found; fetch it with the `emogen-bench weights` command."
        )
    config_path = snapshot_dir / "config.json"
    try:
        return read_json(config_path, "CLIP config", WeightsError)
    except WeightsError as error:
        raise WeightsError(f"{error}; fetch the snapshot again.") from None


def _listed(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f", ... and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def loading_problems(info: dict[str, Any]) -> list[str]:
    """Readable problems in ``from_pretrained``'s loading info (text-tower keys already filtered out)."""
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing keys ({len(info['missing_keys'])}): {_listed(info['missing_keys'])}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected keys ({len(info['unexpected_keys'])}): {_listed(info['unexpected_keys'])}")
    mismatched = info.get("mismatched_keys") or ()
    if mismatched:
        names = [entry[0] if isinstance(entry, tuple) else str(entry) for entry in mismatched]
        problems.append(f"shape mismatches ({len(names)}): {_listed(names)}")
    if info.get("error_msgs"):
        problems.append("; ".join(str(m).splitlines()[0] for m in info["error_msgs"]))
    return problems


def load_clip_vision(snapshot_dir: str | Path) -> CLIPVisionModelWithProjection:
    """The CLIP vision tower + projection (float32, eval, no gradients) from a local snapshot folder."""
    snapshot_dir = Path(snapshot_dir)
    try:
        config = vision_config_from(_snapshot_config(snapshot_dir))
    except ValueError as exc:
        raise WeightsError(
            f"{snapshot_dir / 'config.json'}: {exc}; expected the openai/clip-vit-large-patch14 snapshot."
        ) from exc
    bar_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' own "Loading weights" bar ignores --quiet; restored below
    try:
        model, info = _CLIPVisionFromFullModel.from_pretrained(
            snapshot_dir, config=config, local_files_only=True, output_loading_info=True
        )
    except (OSError, RuntimeError, ValueError) as exc:  # no weight file, damaged file, wrong shapes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{snapshot_dir}: cannot load the CLIP vision weights ({first}); fetch the snapshot again."
        ) from exc
    finally:
        if bar_was_enabled:
            hf_logging.enable_progress_bar()
    problems = loading_problems(info)
    if problems:
        raise WeightsError(
            f"{snapshot_dir}: not a CLIP checkpoint with a complete vision tower: {'; '.join(problems)}. "
            "Fetch the pinned openai/clip-vit-large-patch14 snapshot again."
        )
    model = model.to(torch.float32).eval()
    model.requires_grad_(False)
    return model


def load_clip_pixel_settings(snapshot_dir: str | Path) -> ClipPixelSettings:
    """The pixel settings in the snapshot's own ``preprocessor_config.json``, read as JSON.

    The pipeline itself is :mod:`emogen_bench.features.clip_pixels` (PIL, as in
    transformers 4.x), never the installed transformers' image processor.
    """
    snapshot_dir = Path(snapshot_dir)
    try:
        return load_settings(snapshot_dir)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{snapshot_dir}: cannot read the CLIP image settings ({first}); "
            "the snapshot needs a valid preprocessor_config.json: fetch it again."
        ) from exc


def clip_image_embeddings(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The projected (not normalised) image embeddings, shape ``(N, projection_dim)``.

    Accepts the vision tower returned by :func:`load_clip_vision` or a full
    ``CLIPModel``, whose ``get_image_features`` returns a tensor in transformers
    4.x and an output object with the embedding as ``pooler_output`` in 5.x.
    """
    if isinstance(model, CLIPVisionModelWithProjection):
        return model(pixel_values=pixel_values).image_embeds
    features = model.get_image_features(pixel_values=pixel_values)
    if isinstance(features, torch.Tensor):
        return features
    embeds = getattr(features, "image_embeds", None)
    return embeds if embeds is not None else features.pooler_output
