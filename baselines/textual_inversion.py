"""Textual Inversion baseline: one learned token per emotion (``<amusement>``, ..., ``<sadness>``).

The method (Gal et al., 2022) as diffusers' ``examples/textual_inversion/textual_inversion.py`` implements
it, with its README's hyper-parameters: AdamW lr 5e-4 scaled by batch x gradient accumulation x processes
(``scale_lr``), constant schedule, 3000 optimizer steps, batch 1, gradient accumulation 4, resolution 512
(resized to a square, no crop), horizontal flips with p=0.5, the ``"a photo of a {}"`` object templates,
the new token initialised from the emotion word's embedding. Each emotion's token is trained on that
emotion's images of the derived subset (the index's ``train`` split); the eight runs are independent.

Only the new token's embedding row learns. The diffusers script optimises the whole embedding matrix and
copies the old rows back after every step; here the optimiser holds just the new row (AdamW is
element-wise, so that row's trajectory is the same) and the text encoder is a copy whose other weights
are never written, so the caller's components are left unchanged.

Every random draw of a micro-batch (image order, template, flip, VAE sample, noise, timestep) comes from
a generator seeded by (seed, emotion, micro-step, process): a run resumed from a checkpoint takes exactly
the steps the uninterrupted run would have taken.

Checkpoint folder (``train`` returns it; ``generate`` reads it):
``config.json`` (written last: baseline, settings, SD model, tokens, steps), ``<emotion>/learned_embeds.safetensors``
(diffusers' format ``{token: (1, H)}``, read by ``load_textual_inversion``), ``state/<emotion>/checkpoint-<step>/``
(resumable training state), ``loss.jsonl`` and ``run.json`` (the settings the run started with).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from baselines.common import (
    PromptGenerateConfig,
    generate_from_prompts,
    prompt_config,
    read_checkpoint_config,
    settings_dict,
    settings_from_mapping,
    write_checkpoint_config,
)
from emogen_bench.data import IndexRow, load_index
from emogen_bench.errors import DataError, UsageError, WeightsError
from emogen_bench.fileio import write_atomic, write_json_atomic
from emogen_bench.progress import progress
from emogen_bench.task import DEFAULT_SEED, EMOTION_IDS, EMOTION_NAMES
from reference.conditioning import encode_prompt
from reference.sd import SDComponents
from reference.train import step_dirs, step_generator, step_samples

NAME = "textual-inversion"
METHOD = "Textual Inversion (one learned token per emotion)"
#: diffusers' file name for one textual-inversion embedding (``TEXT_INVERSION_NAME_SAFE``).
EMBEDS_FILE = "learned_embeds.safetensors"
STATE_DIR = "state"
STATE_PREFIX = "checkpoint-"
LOSS_LOG = "loss.jsonl"
RUN_FILE = "run.json"
#: Optimizer steps per emotion of the original recipe (diffusers' README / the paper).
DEFAULT_MAX_STEPS = 3000
#: Settings that may change when a run is resumed (they do not change the steps taken).
RESUMABLE_FIELDS = ("max_steps", "show_progress", "checkpoint_every", "keep_checkpoints", "cpu")

#: diffusers' ``imagenet_templates_small`` (learnable_property "object"), from the original TI code.
OBJECT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}", "a photo of my {}",
    "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}", "a cropped photo of a {}",
    "a photo of the {}", "a good photo of the {}", "a photo of one {}", "a close-up photo of the {}",
    "a rendition of the {}", "a photo of the clean {}", "a rendition of a {}", "a photo of a nice {}",
    "a good photo of a {}", "a photo of the nice {}", "a photo of the small {}", "a photo of the weird {}",
    "a photo of the large {}", "a photo of a cool {}", "a photo of a small {}",
)  # fmt: skip
#: diffusers' ``imagenet_style_templates_small`` (learnable_property "style").
STYLE_TEMPLATES: tuple[str, ...] = (
    "a painting in the style of {}", "a rendering in the style of {}", "a cropped painting in the style of {}",
    "the painting in the style of {}", "a clean painting in the style of {}", "a dirty painting in the style of {}",
    "a dark painting in the style of {}", "a picture in the style of {}", "a cool painting in the style of {}",
    "a close-up painting in the style of {}", "a bright painting in the style of {}",
    "a cropped painting in the style of {}", "a good painting in the style of {}",
    "a close-up painting in the style of {}", "a rendition in the style of {}", "a nice painting in the style of {}",
    "a small painting in the style of {}", "a weird painting in the style of {}", "a large painting in the style of {}",
)  # fmt: skip


@dataclass(frozen=True)
class TextualInversionSettings:
    """Training settings; the defaults are the original recipe (see the module docstring).

    ``max_steps`` None means 3000 optimizer steps per emotion; each step accumulates
    ``gradient_accumulation_steps`` micro-batches of ``batch_size`` images. ``emotions`` limits the run
    to some emotions (a submission needs all eight).
    """

    seed: int = DEFAULT_SEED
    max_steps: int | None = None
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    show_progress: bool = True
    learning_rate: float = 5e-4
    scale_lr: bool = True
    batch_size: int = 1
    gradient_accumulation_steps: int = 4
    resolution: int = 512
    center_crop: bool = False
    flip_p: float = 0.5
    learnable_property: Literal["object", "style"] = "object"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    split: str = "train"
    emotions: tuple[str, ...] = EMOTION_NAMES
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    cpu: bool = False

    def __post_init__(self) -> None:
        unknown = [e for e in self.emotions if e not in EMOTION_NAMES]
        if unknown or not self.emotions:
            raise UsageError(f"{NAME} setting emotions: {unknown or 'none given'}; expected some of "
                             f"{', '.join(EMOTION_NAMES)}")
        if self.max_steps is not None and self.max_steps < 0:
            raise UsageError(f"{NAME} setting max_steps must be >= 0, got {self.max_steps}")
        if min(self.batch_size, self.gradient_accumulation_steps, self.checkpoint_every, self.keep_checkpoints) < 1:
            raise UsageError(f"{NAME}: batch_size, gradient_accumulation_steps, checkpoint_every and "
                             "keep_checkpoints must be at least 1")
        if self.resolution < 8 or self.resolution % 8:
            raise UsageError(f"{NAME} setting resolution must be a positive multiple of 8, got {self.resolution}")
        if not 0.0 <= self.flip_p <= 1.0:
            raise UsageError(f"{NAME} setting flip_p must be in [0, 1], got {self.flip_p}")

    @property
    def steps(self) -> int:
        """Optimizer steps per emotion."""
        return DEFAULT_MAX_STEPS if self.max_steps is None else self.max_steps

    def effective_learning_rate(self, processes: int = 1) -> float:
        """The learning rate AdamW uses: scaled by batch x accumulation x processes when ``scale_lr``."""
        scale = self.batch_size * self.gradient_accumulation_steps * processes if self.scale_lr else 1
        return self.learning_rate * scale

    def templates(self) -> tuple[str, ...]:
        """The training prompt templates of ``learnable_property``."""
        return STYLE_TEMPLATES if self.learnable_property == "style" else OBJECT_TEMPLATES


@dataclass(frozen=True)
class TextualInversionGenerateSettings(PromptGenerateConfig):
    """Generation settings: the shared sampler's and the prompt, ``{token}`` being the emotion's learned token."""

    prompt_template: str = "a photo of {token}"

    def __post_init__(self) -> None:
        super().__post_init__()
        if "{token}" not in self.prompt_template:
            raise UsageError(f"{NAME} setting prompt_template must contain {{token}}, got {self.prompt_template!r}")


# ---- pure helpers ------------------------------------------------------------------------------------------


def emotion_token(emotion: str) -> str:
    """The placeholder token learned for ``emotion``: ``<amusement>``."""
    return f"<{emotion}>"


def emotion_rows(rows: Sequence[IndexRow], emotion: str, split: str) -> list[IndexRow]:
    """The rows of one emotion in one split, in index order (that emotion's training images)."""
    return [row for row in rows if row.emotion == emotion and row.split == split]


def sample_position(count: int, sample: int, generator_seed: int) -> int:
    """The row (0..count-1) of global sample number ``sample``: epochs walk seeded permutations of the rows."""
    epoch, offset = divmod(sample, count)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(generator_seed + epoch))
    return int(order[offset])


def micro_generator(seed: int, emotion: str, micro_step: int, process: int) -> torch.Generator:
    """The generator of every random draw of one micro-batch of one emotion's run on one process."""
    return step_generator(seed * 16 + EMOTION_IDS[emotion], micro_step, process)


def ti_pixels(image: Image.Image, resolution: int, center_crop: bool, flip: bool) -> torch.Tensor:
    """The original preprocessing: optional centre square crop, resize to a square (bicubic), flip, to [-1, 1]."""
    image = image.convert("RGB")
    if center_crop:
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    image = image.resize((resolution, resolution), resample=Image.Resampling.BICUBIC)
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    array = np.asarray(image).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def initializer_embedding(tokenizer: Any, text_encoder: torch.nn.Module, word: str) -> torch.Tensor:
    """The token embedding of ``word`` (H,), float32; the mean of its pieces if the tokenizer splits it."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if not ids:
        raise UsageError(f"the initializer word {word!r} gives no tokens")
    weight = text_encoder.get_input_embeddings().weight.detach()
    return weight[torch.tensor(ids, device=weight.device)].float().mean(dim=0).cpu()


def denoising_loss(
    components: SDComponents,
    text_encoder: torch.nn.Module,
    input_ids: torch.Tensor,
    token_id: int,
    token_embed: torch.Tensor,
    pixels: torch.Tensor,
    generator: torch.Generator,
    weight_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The latent-diffusion loss of one batch, the learned token's embedding set to ``token_embed`` (1, H).

    Draws (VAE sample, noise, timesteps) come from ``generator``; MSE in float32 against the noise (or the
    velocity for v-prediction), as in the diffusers script.
    """
    device = components.unet.device
    with torch.no_grad():
        posterior = components.vae.encode(pixels.to(device=device, dtype=weight_dtype)).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=generator).to(device=device, dtype=posterior.mean.dtype)
        latents = (posterior.mean + posterior.std * eps) * components.vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=generator).to(device=device, dtype=latents.dtype)
    scheduler = components.noise_scheduler
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    timesteps = timesteps.to(device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    embeds = token_embed.reshape(1, -1).expand(input_ids.shape[0], -1)
    hidden = encode_prompt(text_encoder, input_ids, token_id, embeds.to(text_encoder.get_input_embeddings().weight))
    prediction = components.unet(noisy, timesteps, hidden.to(weight_dtype)).sample
    target = scheduler.get_velocity(latents, noise, timesteps) if scheduler.config.prediction_type == "v_prediction" \
        else noise
    return F.mse_loss(prediction.float(), target.float(), reduction="mean")


# ---- files -------------------------------------------------------------------------------------------------


def save_learned_embeds(path: Path, token: str, embed: torch.Tensor) -> Path:
    """Write ``{token: (1, H) float32}`` as safetensors (diffusers' textual-inversion format), atomically."""
    from safetensors.torch import save

    data = save({token: embed.detach().float().cpu().reshape(1, -1).contiguous()})
    write_atomic(path, data, overwrite=True)
    return path


def load_learned_embeds(path: Path, token: str) -> torch.Tensor:
    """The (1, H) embedding of ``token`` in a learned_embeds file; WeightsError when unreadable or foreign."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (OSError, ValueError, RuntimeError) as error:
        raise WeightsError(f"{path}: cannot read the learned embedding ({error}); train again or restore it") from None
    if list(state) != [token]:
        raise WeightsError(f"{path}: holds {sorted(state)}, expected the one token {token!r}")
    return state[token]


def state_dirs(folder: Path) -> list[Path]:
    """Complete training checkpoints ``checkpoint-<step>`` under ``folder``, oldest first."""
    return step_dirs(folder, STATE_PREFIX, "state.json")


def _write_state(folder: Path, step: int, token: str, embed: torch.Tensor, optimizer: torch.optim.Optimizer) -> Path:
    """Write ``checkpoint-<step>`` under a temporary name, then rename it into place (never half-written)."""
    final = folder / f"{STATE_PREFIX}{step}"
    temporary = folder / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    temporary.mkdir(parents=True)
    try:
        save_learned_embeds(temporary / EMBEDS_FILE, token, embed)
        torch.save(optimizer.state_dict(), temporary / "optimizer.pt")
        write_json_atomic(temporary / "state.json", {"step": step, "token": token})
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return final


def _rewrite_log(path: Path, emotion: str, up_to_step: int) -> None:
    """Drop this emotion's log lines after ``up_to_step`` (a resumed run writes them again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line:
            record = json.loads(line)
            if record["emotion"] != emotion or record["step"] <= up_to_step:
                kept.append(line)
    write_atomic(path, "".join(line + "\n" for line in kept))


def _check_run(out_dir: Path, settings: TextualInversionSettings, resume: bool) -> bool:
    """Whether ``out_dir`` already holds a finished run of these settings; refuses to mix runs."""
    run_file = out_dir / RUN_FILE
    if not run_file.is_file():
        if out_dir.is_dir() and any(out_dir.iterdir()):
            raise UsageError(f"{out_dir} is not empty and holds no {RUN_FILE}: choose a new or empty folder")
        return False
    if not resume:
        raise UsageError(
            f"{out_dir} already holds a {NAME} run; pass --resume (resume=True) to continue or reuse it, "
            "or choose another folder"
        )
    saved = json.loads(run_file.read_text(encoding="utf-8"))["settings"]
    mine = settings_dict(settings)
    changed = [k for k in mine if k not in RESUMABLE_FIELDS and saved.get(k) != mine[k]]
    if changed:
        raise UsageError(
            f"{run_file}: cannot resume with different settings ({', '.join(changed)}); use the run's settings "
            "(see run.json) or another folder"
        )
    config = out_dir / "config.json"
    if not config.is_file():
        return False
    if json.loads(config.read_text(encoding="utf-8")).get("steps") == settings.steps:
        return True
    config.unlink()  # the run goes on to more steps: until it ends, the folder is no finished checkpoint
    return False


# ---- training ----------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What every step of one emotion's run reads: models, data, the token."""

    components: SDComponents
    text_encoder: torch.nn.Module
    tokenizer: Any
    settings: TextualInversionSettings
    rows: list[IndexRow]
    emoset_root: Path
    weight_dtype: torch.dtype
    process: int
    processes: int


def _micro_batch(run: _Run, emotion: str, micro: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """Pixels, prompt ids and the generator of one micro-batch (everything drawn from its own generator)."""
    settings = run.settings
    generator = micro_generator(settings.seed, emotion, micro, run.process)
    templates = settings.templates()
    pixels, texts = [], []
    for sample in step_samples(micro, settings.batch_size, run.process, run.processes):
        row = run.rows[sample_position(len(run.rows), sample, settings.seed * 16 + EMOTION_IDS[emotion])]
        template = templates[int(torch.randint(len(templates), (1,), generator=generator))]
        flip = bool(torch.rand(1, generator=generator) < settings.flip_p)
        path = run.emoset_root / row.path
        try:
            with Image.open(path) as handle:
                image = handle.convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise DataError(f"{path}: cannot read the training image ({error}); check the EmoSet folder") from None
        pixels.append(ti_pixels(image, settings.resolution, settings.center_crop, flip))
        texts.append(template.format(emotion_token(emotion)))
    tokenizer = run.tokenizer
    ids = tokenizer(texts, padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                    return_tensors="pt").input_ids
    return torch.stack(pixels), ids, generator


def _train_emotion(run: _Run, emotion: str, out_dir: Path, accelerator: Any) -> None:
    """Train (or finish training) one emotion's token; writes its state checkpoints and learned_embeds."""
    settings = run.settings
    token = emotion_token(emotion)
    token_id = int(run.tokenizer.convert_tokens_to_ids(token))
    state_folder = out_dir / STATE_DIR / emotion
    final_file = out_dir / emotion / EMBEDS_FILE
    existing = state_dirs(state_folder)
    start = int(json.loads((existing[-1] / "state.json").read_text())["step"]) if existing else 0
    if start >= settings.steps and final_file.is_file():
        return
    if start > settings.steps:
        raise UsageError(f"{existing[-1]}: already past max_steps={settings.steps}; use a larger max_steps")
    embed = initializer_embedding(run.tokenizer, run.text_encoder, emotion).reshape(1, -1)
    parameter = torch.nn.Parameter(embed.to(accelerator.device))
    optimizer = torch.optim.AdamW(
        [parameter],
        lr=settings.effective_learning_rate(run.processes),
        betas=(settings.adam_beta1, settings.adam_beta2),
        weight_decay=settings.adam_weight_decay,
        eps=settings.adam_epsilon,
    )
    if existing:
        with torch.no_grad():
            parameter.copy_(load_learned_embeds(existing[-1] / EMBEDS_FILE, token).to(parameter))
        optimizer.load_state_dict(torch.load(existing[-1] / "optimizer.pt", map_location=accelerator.device))
        _rewrite_log(out_dir / LOSS_LOG, emotion, start)
    accumulation = settings.gradient_accumulation_steps
    steps = progress(
        range(start, settings.steps),
        desc=f"{NAME} {emotion}",
        total=settings.steps - start,
        enabled=settings.show_progress and accelerator.is_local_main_process,
        unit="step",
    )
    for step in steps:
        total = 0.0
        for k in range(accumulation):
            pixels, ids, generator = _micro_batch(run, emotion, step * accumulation + k)
            with accelerator.autocast():
                loss = denoising_loss(run.components, run.text_encoder, ids, token_id, parameter, pixels, generator,
                                      run.weight_dtype)
            accelerator.backward(loss / accumulation)
            total += float(loss.detach()) / accumulation
        if run.processes > 1:
            parameter.grad = accelerator.reduce(parameter.grad, reduction="mean")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if accelerator.is_main_process:
            record = {"emotion": emotion, "step": done, "loss": total, "lr": optimizer.param_groups[0]["lr"]}
            with open(out_dir / LOSS_LOG, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
            if done % settings.checkpoint_every == 0 or done == settings.steps:
                _write_state(state_folder, done, token, parameter, optimizer)
                for old in state_dirs(state_folder)[: -settings.keep_checkpoints]:
                    shutil.rmtree(old)
    if accelerator.is_main_process:
        final_file.parent.mkdir(parents=True, exist_ok=True)
        save_learned_embeds(final_file, token, parameter)
    accelerator.wait_for_everyone()


def train_textual_inversion(
    settings: TextualInversionSettings,
    components: SDComponents,
    rows: Sequence[IndexRow],
    emoset_root: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = False,
) -> Path:
    """Learn one token per emotion of ``settings.emotions``; returns the checkpoint folder ``out_dir``.

    ``rows``: the index rows (each emotion trains on its rows of ``settings.split``). The caller's
    tokenizer and text encoder are not changed (a copy learns); the VAE and U-Net are moved to the
    training device and, with mixed precision, cast to its dtype, as the diffusers script does.
    With ``resume`` an interrupted run continues from its latest state checkpoints, and a finished
    run returns at once.
    """
    from accelerate import Accelerator

    out_dir = Path(out_dir)
    if _check_run(out_dir, settings, resume):
        return out_dir
    empty = [e for e in settings.emotions if not emotion_rows(rows, e, settings.split)]
    if empty:
        raise DataError(f"no {settings.split!r} images of {', '.join(empty)} in the index: nothing to learn "
                        "those tokens from; check the index or set emotions=... to the others")
    accelerator = Accelerator(mixed_precision=settings.mixed_precision, cpu=settings.cpu)
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[settings.mixed_precision]
    for module in (components.vae, components.unet):
        module.requires_grad_(False)
        module.eval()
        cast = {"dtype": weight_dtype} if next(module.parameters()).dtype != weight_dtype else {}
        module.to(device=accelerator.device, **cast)
    tokenizer = copy.deepcopy(components.tokenizer)
    text_encoder = copy.deepcopy(components.text_encoder).to(device=accelerator.device, dtype=torch.float32)
    text_encoder.requires_grad_(False)
    tokens = [emotion_token(e) for e in settings.emotions]
    clash = [t for t in tokens if t in tokenizer.get_vocab()]
    if clash:
        raise UsageError(f"the tokenizer already holds {', '.join(clash)}; give components without learned tokens")
    tokenizer.add_tokens(tokens)
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process and not (out_dir / RUN_FILE).is_file():
        write_json_atomic(out_dir / RUN_FILE, {"baseline": NAME, "settings": settings_dict(settings),
                                               "sd": components.describe()}, overwrite=False)
    run = _Run(components, text_encoder, tokenizer, settings, list(rows), Path(emoset_root), weight_dtype,
               accelerator.process_index, accelerator.num_processes)
    for emotion in settings.emotions:
        run.rows = emotion_rows(rows, emotion, settings.split)
        _train_emotion(run, emotion, out_dir, accelerator)
    if accelerator.is_main_process:
        write_checkpoint_config(
            out_dir, NAME, settings, components,
            steps=settings.steps,
            tokens={e: emotion_token(e) for e in settings.emotions},
            initializers={e: e for e in settings.emotions},
            learning_rate=settings.effective_learning_rate(accelerator.num_processes),
            processes=accelerator.num_processes,
            images={e: len(emotion_rows(rows, e, settings.split)) for e in settings.emotions},
        )
    accelerator.wait_for_everyone()
    return out_dir


# ---- generation --------------------------------------------------------------------------------------------


def embeddings_digest(checkpoint: Path, emotions: Sequence[str]) -> str:
    """``sha256:<hex>`` over the emotions' learned_embeds files (what a submission records about them)."""
    hasher = hashlib.sha256()
    for emotion in emotions:
        hasher.update(emotion.encode() + b"\0" + (checkpoint / emotion / EMBEDS_FILE).read_bytes())
    return "sha256:" + hasher.hexdigest()


def with_learned_tokens(components: SDComponents, checkpoint: Path, emotions: Sequence[str]) -> SDComponents:
    """Components whose tokenizer and text encoder (copies) hold the learned tokens, loaded by diffusers' loader.

    A ``StableDiffusionPipeline`` is built from the components and ``load_textual_inversion`` reads each
    emotion's ``learned_embeds.safetensors``; the U-Net and VAE are shared, not copied.
    """
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    from reference.generate import make_scheduler

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # the pipeline warns that it has no safety checker: none is wanted
    try:
        pipeline = StableDiffusionPipeline(
            vae=components.vae,
            text_encoder=copy.deepcopy(components.text_encoder),
            tokenizer=copy.deepcopy(components.tokenizer),
            unet=components.unet,
            scheduler=make_scheduler(components),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    finally:
        diffusers_logging.set_verbosity(verbosity)
    from transformers.utils import logging as transformers_logging

    quiet = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # resizing the embeddings draws placeholder rows, then overwritten
    try:
        with torch.random.fork_rng(devices=[]):
            pipeline.load_textual_inversion(
                [str(checkpoint / emotion) for emotion in emotions],
                token=[emotion_token(emotion) for emotion in emotions],
                weight_name=EMBEDS_FILE,
                local_files_only=True,
            )
    except (OSError, ValueError) as error:
        raise WeightsError(f"{checkpoint}: diffusers cannot load the learned embeddings ({error})") from None
    finally:
        transformers_logging.set_verbosity(quiet)
    return dataclasses.replace(components, tokenizer=pipeline.tokenizer, text_encoder=pipeline.text_encoder)


def generate_textual_inversion(
    settings: TextualInversionGenerateSettings, components: SDComponents, checkpoint: str | Path, out_dir: str | Path,
    shard: tuple[int, int] = (0, 1),
) -> Path:
    """Write a submission: each emotion's images from ``prompt_template`` with its learned token."""
    checkpoint = Path(checkpoint)
    config = read_checkpoint_config(checkpoint, NAME)
    tokens = config.get("tokens", {})
    missing = [e for e in EMOTION_NAMES if e not in tokens or not (checkpoint / e / EMBEDS_FILE).is_file()]
    if missing:
        raise UsageError(
            f"{checkpoint}: no learned token for {', '.join(missing)}; a submission needs all eight emotions. "
            "Train them (settings emotions=...) into this checkpoint first"
        )
    loaded = with_learned_tokens(components, checkpoint, EMOTION_NAMES)
    prompts = {e: settings.prompt_template.format(token=emotion_token(e)) for e in EMOTION_NAMES}
    extra = {
        "baseline": NAME,
        "checkpoint_embeddings": embeddings_digest(checkpoint, EMOTION_NAMES),
        "training": {"steps": config.get("steps"), "settings": config.get("settings")},
    }
    return generate_from_prompts(loaded, prompts, prompt_config(settings), out_dir, method=METHOD,
                                 extra_metadata=extra, shard=shard)


class TextualInversion:
    """``textual-inversion``: train one token per emotion, then generate with the tokens."""

    name = NAME
    trains = True

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
        """Train on the index's images of each emotion; returns the checkpoint folder."""
        chosen = settings_from_mapping(TextualInversionSettings, settings, NAME)
        root = Path(emoset_root)
        if not root.is_dir():
            raise UsageError(f"{root}: EmoSet folder not found; pass the folder that `data prepare` read")
        return train_textual_inversion(chosen, components, load_index(index_dir), root, out_dir, resume=resume)

    def generate(
        self, settings: Mapping[str, Any], checkpoint: Path | None, out_dir: Path, *, components: SDComponents,
        shard: tuple[int, int] = (0, 1),
    ) -> Path:
        """Generate from a trained checkpoint (required)."""
        if checkpoint is None:
            raise UsageError(f"{NAME} generate needs --checkpoint: the folder `baseline {NAME} train` wrote")
        chosen = settings_from_mapping(TextualInversionGenerateSettings, settings, NAME)
        return generate_textual_inversion(chosen, components, checkpoint, out_dir, shard=shard)


__all__ = [
    "OBJECT_TEMPLATES",
    "STYLE_TEMPLATES",
    "TextualInversion",
    "TextualInversionGenerateSettings",
    "TextualInversionSettings",
    "denoising_loss",
    "emotion_token",
    "generate_textual_inversion",
    "train_textual_inversion",
    "with_learned_tokens",
]
