"""The interface every baseline implements, its registry, and the shared pieces of text-prompt baselines.

A baseline is reached by name (:data:`BASELINES`, :func:`get_baseline`); it validates plain ``settings``
mappings (from the CLI's ``--set KEY=VALUE`` or a plan file's TOML table) into its own frozen dataclass
(:func:`settings_from_mapping`), trains into a checkpoint folder (``config.json`` + its weights,
:func:`write_checkpoint_config` / :func:`read_checkpoint_config`) and generates a benchmark submission.

Generation from text prompts (:func:`generate_from_prompts`) is the one sampling loop of the prompt
baselines: the reference implementation's per-image seeds, its UniPC sampler and its resumable writing
rules, so that every baseline's images are made the same way as EmoGen's and differ only by the prompt
and the weights.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from emogen_bench import __version__
from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.fileio import write_atomic, write_json_atomic
from emogen_bench.progress import progress
from emogen_bench.submission import SubmissionMetadata, read_metadata, write_metadata
from emogen_bench.task import EMOTION_NAMES, SUBMISSION
from reference.generate import (
    SAMPLER,
    SamplerConfig,
    check_resume,
    decode_latents,
    images_to_render,
    latent_shape,
    plain_prompt_hidden_states,
    plan_submission,
    png_bytes,
    sample_latents,
    submission_batches,
)
from reference.sd import SDComponents

#: Name -> ``"module:Class"``; the module is imported only when the baseline is asked for.
BASELINES: dict[str, str] = {
    "sd": "baselines.sd_prompt:StableDiffusionBaseline",
    "textual-inversion": "baselines.textual_inversion:TextualInversion",
    "dreambooth": "baselines.dreambooth:DreamBooth",
    "caption-sd": "baselines.caption_sd:CaptionSD",
}

CHECKPOINT_FORMAT = "emogen-bench.baselines.checkpoint"
CHECKPOINT_VERSION = 1
#: The seed rule of every baseline's submission (the reference implementation's, without the emotion-space draw).
SEED_POLICY = (
    "one seed per image: reference.generate.image_seed(seed, emotion id, index) = the first 8 bytes of "
    "sha256('emogen-reference/<seed>/<emotion id>/<index>'), shifted right by 1 bit; a CPU torch.Generator "
    "seeded with it draws the initial latent"
)

SettingsT = TypeVar("SettingsT")


@dataclass(frozen=True)
class TrainSettings:
    """The knobs every training baseline shares; each baseline's own settings dataclass repeats these names.

    ``max_steps`` None means the method's own number of steps; ``mixed_precision`` is accelerate's
    (``no``, ``fp16``, ``bf16``).
    """

    seed: int = 0
    max_steps: int | None = None
    mixed_precision: str = "no"
    show_progress: bool = True


@dataclass(frozen=True)
class PromptGenerateConfig(SamplerConfig):
    """How a prompt baseline samples: the reference implementation's sampler settings and defaults."""


@runtime_checkable
class Baseline(Protocol):
    """What ``emogen-bench baseline`` and the table plans call; ``trains`` False means ``train`` is refused."""

    name: str
    trains: bool

    def train(
        self,
        settings: Mapping[str, Any],
        index_dir: Path,
        emoset_root: Path,
        out_dir: Path,
        *,
        components: SDComponents,
        resume: bool = False,
    ) -> Path:
        """Train on the index's images; returns the checkpoint folder."""
        ...

    def generate(
        self, settings: Mapping[str, Any], checkpoint: Path | None, out_dir: Path, *, components: SDComponents,
        shard: tuple[int, int] = (0, 1),
    ) -> Path:
        """Write a submission (images + ``submission.json``) into ``out_dir``; returns ``out_dir``.

        ``shard=(k, n)``: only the k-th of n processes' share of the batches (see :func:`generate_from_prompts`).
        """
        ...


def get_baseline(name: str) -> Baseline:
    """The baseline registered as ``name`` (its module is imported now); UsageError listing the names otherwise."""
    target = BASELINES.get(name)
    if target is None:
        raise UsageError(f"unknown baseline {name!r}; the baselines are: {', '.join(BASELINES)}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise UsageError(f"baseline {name!r} is registered but its module {module_name} is not installed") from None
    return getattr(module, class_name)()


# ---- settings ----------------------------------------------------------------------------------------------


def _coerce(value: Any, hint: Any, key: str, baseline: str) -> Any:
    """``value`` as type ``hint`` (strings from ``--set`` are parsed; other values are checked)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in typing.get_args(hint):
                return None
        errors = []
        for option in options:
            try:
                return _coerce(value, option, key, baseline)
            except UsageError as error:
                errors.append(str(error))
        raise UsageError(errors[0])
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise UsageError(
            f"{baseline} setting {key}={value!r}: expected one of {', '.join(str(c) for c in choices)}"
        )
    if origin is tuple:
        items = value.split("|" if "|" in value else ",") if isinstance(value, str) else value
        if not isinstance(items, Sequence):
            raise UsageError(f"{baseline} setting {key}={value!r}: expected a list (comma-separated)")
        args = typing.get_args(hint)
        kinds = [args[0]] * len(items) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(items):
            raise UsageError(f"{baseline} setting {key}={value!r}: expected {len(kinds)} comma-separated values")
        return tuple(_coerce(item, kind, key, baseline) for item, kind in zip(items, kinds))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise UsageError(f"{baseline} setting {key}={value!r}: expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            raise UsageError(f"{baseline} setting {key}={value!r}: expected an integer") from None
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            raise UsageError(f"{baseline} setting {key}={value!r}: expected a number") from None
    if hint is str:
        if isinstance(value, str):
            return value
        raise UsageError(f"{baseline} setting {key}={value!r}: expected a string")
    return value


def settings_from_mapping(cls: type[SettingsT], settings: Mapping[str, Any] | None, baseline: str) -> SettingsT:
    """Build the settings dataclass ``cls`` from a plain mapping; unknown keys and bad values are UsageErrors.

    Values may be strings (``--set lr=1e-4``) and are converted to each field's declared type (a tuple
    from ``a|b|c``, or ``a,b,c`` when there is no ``|``); ``-`` in keys reads as ``_``.
    """
    if isinstance(settings, cls):
        return settings
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {str(key).replace("-", "_"): value for key, value in (settings or {}).items()}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UsageError(
            f"unknown {baseline} setting(s) {', '.join(unknown)}; the settings are: {', '.join(sorted(names))}"
        )
    converted = {key: _coerce(value, hints[key], key, baseline) for key, value in values.items()}
    return cls(**converted)


def prompt_config(settings: Any) -> PromptGenerateConfig:
    """The :class:`PromptGenerateConfig` fields of a baseline's generate-settings dataclass (same field names)."""
    names = [f.name for f in dataclasses.fields(PromptGenerateConfig)]
    return PromptGenerateConfig(**{name: getattr(settings, name) for name in names if hasattr(settings, name)})


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def parse_set_options(pairs: Sequence[str]) -> dict[str, str]:
    """``["lr=1e-4", "steps=10"]`` -> ``{"lr": "1e-4", "steps": "10"}``; a pair without ``=`` is a UsageError."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set learning_rate=5e-4")
        parsed[key.strip()] = value.strip()
    return parsed


# ---- checkpoints -------------------------------------------------------------------------------------------


def base_model_name(components: SDComponents) -> str:
    """``model_id@revision`` (or just the id / folder) of the weights, as ``submission.json`` records it."""
    return components.model_id + (f"@{components.revision}" if components.revision else "")


def write_checkpoint_config(
    folder: Path, baseline: str, settings: Any, components: SDComponents, **extra: Any
) -> Path:
    """Write ``folder/config.json``: format, baseline name, settings, SD model id/revision, plus ``extra``."""
    document = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "baseline": baseline,
        "settings": settings_dict(settings) if dataclasses.is_dataclass(settings) else dict(settings),
        "sd": components.describe(),
        **extra,
    }
    path = Path(folder) / "config.json"
    write_json_atomic(path, document, overwrite=True)
    return path


def read_checkpoint_config(folder: Path, baseline: str) -> dict[str, Any]:
    """The ``config.json`` of a baseline checkpoint, checked to be this baseline's (else WeightsError/UsageError)."""
    folder = Path(folder)
    path = folder / "config.json"
    if not path.is_file():
        raise UsageError(f"{folder}: not a {baseline} checkpoint (no config.json); pass the folder `train` returned")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path}: cannot read the checkpoint config ({error}); it is damaged") from None
    if document.get("format") != CHECKPOINT_FORMAT or document.get("version") != CHECKPOINT_VERSION:
        raise WeightsError(
            f"{path}: format {document.get('format')!r} v{document.get('version')}, expected {CHECKPOINT_FORMAT!r} "
            f"v{CHECKPOINT_VERSION}; it was not written by an emogen-bench baseline"
        )
    if document.get("baseline") != baseline:
        raise UsageError(
            f"{path}: a checkpoint of baseline {document.get('baseline')!r}, not {baseline!r}; "
            f"use `emogen-bench baseline {document.get('baseline')} generate` or another checkpoint"
        )
    return document


TINY_MODEL_ID = "tiny-sd"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_components(
    sd_model: str | None = None,
    sd_revision: str | None = None,
    *,
    tiny: bool = False,
    device: str = "auto",
    dtype: str = "fp32",
    allow_download: bool = False,
    checkpoint: Path | None = None,
) -> SDComponents:
    """The SD components a baseline runs on: tiny ones built in code, a checkpoint's, or SD-1.5 (pinned).

    ``sd_model`` None means the model a checkpoint's ``config.json`` records, else the pinned SD-1.5
    (its revision too, unless ``sd_revision`` says otherwise). ``dtype``: ``fp32``, ``fp16``, ``bf16`` or
    ``auto`` (fp16 on CUDA, fp32 on CPU). No CLIP text projection is loaded: baselines do not use it.
    """
    from emogen_bench.pipeline import resolve_device
    from reference.sd import DEFAULT_SD_MODEL, DEFAULT_SD_REVISION, load_sd_components, tiny_sd_components

    resolved = resolve_device(device)
    if dtype != "auto" and dtype not in DTYPES:
        raise UsageError(f"dtype {dtype!r}: expected auto, {', '.join(DTYPES)}")
    chosen = DTYPES["fp16" if resolved.type == "cuda" else "fp32"] if dtype == "auto" else DTYPES[dtype]
    recorded: dict[str, Any] = {}
    if sd_model is None and checkpoint is not None and (Path(checkpoint) / "config.json").is_file():
        try:
            recorded = json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8")).get("sd", {})
        except (OSError, ValueError):
            recorded = {}
    model = sd_model or recorded.get("model_id") or DEFAULT_SD_MODEL
    if tiny or model == TINY_MODEL_ID:
        return tiny_sd_components().to(device=resolved, dtype=chosen)
    if sd_revision is not None:
        revision: str | None = sd_revision
    elif sd_model is None and recorded:
        revision = recorded.get("revision")
    else:
        revision = DEFAULT_SD_REVISION if model == DEFAULT_SD_MODEL else None
    return load_sd_components(
        model, revision, dtype=chosen, device=resolved, allow_download=allow_download, clip_text_projection_from=None
    )


# ---- generation from prompts -------------------------------------------------------------------------------


def image_prompt(prompts: Mapping[str, str | Sequence[str]], emotion: str, index: int) -> str:
    """The prompt of image ``index`` of ``emotion``: the emotion's prompt, or its templates taken in turn."""
    chosen = prompts[emotion]
    if isinstance(chosen, str):
        return chosen
    return chosen[index % len(chosen)]


def check_prompts(prompts: Mapping[str, str | Sequence[str]]) -> None:
    """Every emotion has a non-empty prompt (or non-empty list of prompts); UsageError naming the gaps."""
    missing = [e for e in EMOTION_NAMES if e not in prompts or not prompts[e]]
    unknown = sorted(set(prompts) - set(EMOTION_NAMES))
    if missing or unknown:
        raise UsageError(
            f"prompts must give one prompt (or a list) for each of the 8 emotions: missing {missing or 'none'}, "
            f"unknown {unknown or 'none'}"
        )


def initial_latents(seeds: Sequence[int], shape: tuple[int, int, int]) -> torch.Tensor:
    """One initial latent per image, each drawn from a CPU generator seeded with the image's seed."""
    draws = [
        torch.randn((1, *shape), generator=torch.Generator(device="cpu").manual_seed(int(s)), dtype=torch.float32)
        for s in seeds
    ]
    return torch.cat(draws)


@torch.no_grad()
def prompts_hidden_states(components: SDComponents, prompts: Sequence[str]) -> torch.Tensor:
    """The text encoder's last hidden state (B, 77, H) of each prompt (padded to the context length)."""
    parameter = next(components.unet.parameters())
    tokenizer = components.tokenizer
    ids = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids.to(next(components.text_encoder.parameters()).device)
    return components.text_encoder(input_ids=ids).last_hidden_state.to(parameter.device, parameter.dtype)


@torch.no_grad()
def render_prompts(
    components: SDComponents, prompts: Sequence[str], seeds: Sequence[int], config: PromptGenerateConfig
) -> np.ndarray:
    """One batch of images, uint8 (B, H, W, 3): image ``i`` from ``prompts[i]`` and ``seeds[i]``."""
    latents = initial_latents(seeds, latent_shape(components, config.width, config.height))
    hidden = prompts_hidden_states(components, prompts)
    uncond = plain_prompt_hidden_states(components, "", len(seeds))
    latents = sample_latents(components, hidden, uncond, latents, config.steps, config.guidance)
    return decode_latents(components, latents)


def prompt_submission_metadata(
    components: SDComponents,
    prompts: Mapping[str, str | Sequence[str]],
    config: PromptGenerateConfig,
    *,
    method: str,
    extra_metadata: Mapping[str, Any] | None = None,
) -> SubmissionMetadata:
    """``submission.json`` of a prompt baseline's run: settings, base model, per-image seeds, prompts in ``notes``."""
    plan = plan_submission(config.per_emotion, config.seed)
    notes = {
        "seed": config.seed,
        "prompts": {e: prompts[e] if isinstance(prompts[e], str) else list(prompts[e]) for e in EMOTION_NAMES},
        "negative_prompt": "",
        "dtype": str(next(components.unet.parameters()).dtype).removeprefix("torch."),
        **dict(extra_metadata or {}),
    }
    return SubmissionMetadata(
        method=method,
        method_version=f"emogen-bench {__version__}",
        base_model=base_model_name(components),
        seed_policy=SEED_POLICY,
        seeds={image.path: image.seed for image in plan},
        sampler=SAMPLER,
        steps=config.steps,
        guidance=config.guidance,
        resolution=(config.width, config.height),
        notes="generation settings: " + json.dumps(notes, sort_keys=True),
    )


def generate_from_prompts(
    components: SDComponents,
    prompts: Mapping[str, str | Sequence[str]],
    config: PromptGenerateConfig,
    out_dir: str | Path,
    *,
    method: str,
    extra_metadata: Mapping[str, Any] | None = None,
    before_emotion: Callable[[str], None] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Path:
    """Write a submission ``out_dir/<emotion>/<emotion>_<i:04d>.png`` + ``submission.json`` from text prompts.

    ``prompts[emotion]`` is one prompt, or a list taken in turn (image ``i`` uses ``list[i % len]``).
    Seeds, sampler and batching are the reference implementation's; resumable: a second run with the
    same settings keeps the images already there and renders only the batches that miss some.
    ``extra_metadata`` goes into ``submission.json``'s notes (checkpoint digest, settings).
    ``before_emotion(e)`` runs before the first batch of emotion ``e`` is rendered (per-emotion weights).
    ``shard=(k, n)`` renders only every n-th batch starting at k (the batches of one process), so n processes
    fill one folder together, byte for byte the folder of one process (per-image seeds, the same batches).
    """
    index, count = shard
    if not 0 <= index < count:
        raise UsageError(f"shard {index}/{count}: expected K/N with 0 <= K < N")
    check_prompts(prompts)
    out_dir = Path(out_dir)
    expected = prompt_submission_metadata(components, prompts, config, method=method, extra_metadata=extra_metadata)
    check_resume(out_dir, expected)
    batches = [b for n, b in enumerate(submission_batches(plan_submission(config.per_emotion, config.seed),
                                                          config.batch_size)) if n % count == index]  # fmt: skip
    plan = [image for batch in batches for image in batch]
    todo = images_to_render(out_dir, plan, config.width, config.height)
    for name in EMOTION_NAMES:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    metadata_path = out_dir / SUBMISSION.metadata_file
    if not metadata_path.is_file() or read_metadata(metadata_path) != expected:
        write_metadata(out_dir, expected, overwrite=True)
    missing = {image.path for image in todo}
    chunks = [chunk for chunk in batches if any(i.path in missing for i in chunk)]
    current = None
    for chunk in progress(chunks, desc=f"generating ({method})", enabled=config.show_progress, unit="batch"):
        if before_emotion is not None and chunk[0].emotion != current:  # a batch holds one emotion's images
            before_emotion(chunk[0].emotion)
            current = chunk[0].emotion
        texts = [image_prompt(prompts, image.emotion, image.index) for image in chunk]
        pixels = render_prompts(components, texts, [image.seed for image in chunk], config)
        for image, array in zip(chunk, pixels):
            if image.path in missing:
                write_atomic(out_dir / image.path, png_bytes(array), overwrite=False)
    return out_dir


__all__ = [
    "BASELINES",
    "Baseline",
    "CHECKPOINT_FORMAT",
    "PromptGenerateConfig",
    "SEED_POLICY",
    "TrainSettings",
    "base_model_name",
    "generate_from_prompts",
    "get_baseline",
    "image_prompt",
    "load_components",
    "parse_set_options",
    "prompt_config",
    "read_checkpoint_config",
    "render_prompts",
    "settings_dict",
    "settings_from_mapping",
    "write_checkpoint_config",
]
