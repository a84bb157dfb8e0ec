"""DreamBooth baseline: one concept per emotion, a fine-tuned U-Net per emotion, and the supplement's variants.

Each emotion becomes a DreamBooth concept with the instance prompt ``"a photo of sks <emotion>"``; SD-1.5's
U-Net is fine-tuned on that emotion's images (the text encoder stays frozen unless ``train_text_encoder``),
starting from the base weights every time, so a run holds eight U-Nets. The hyper-parameters are those of
diffusers' DreamBooth example (``examples/dreambooth/train_dreambooth.py``): its README's SD command
(``--learning_rate=5e-6 --train_batch_size=1 --gradient_accumulation_steps=1 --lr_scheduler=constant
--lr_warmup_steps=0 --max_train_steps=400 --resolution=512``, no prior preservation) and the script's defaults
for the rest (AdamW betas 0.9/0.999, weight decay 1e-2, epsilon 1e-8, gradient clipping at norm 1.0, images
resized with the shorter side to the resolution then randomly cropped, no flip, MSE on the predicted noise).
The paper keeps "the same training steps and learning rate [as] their original settings" (supplement 2.1).

Variants of the supplement (Table 1): ``images`` = 5, 5000 or ``"all"`` images per emotion, and ``sampling`` =
``"uniform"`` (a seeded shuffle of the emotion's images) or ``"attribute-balanced"`` (a seeded round robin over
the index's attribute labels of that emotion, so every attribute is as frequent as the data allows). With
``"all"`` both samplings use every image, but the 400-step stream differs: uniform shuffles, balanced cycles
through the attributes.

Checkpoint (the folder ``train`` returns): ``config.json`` (baseline, settings, SD model, per-emotion
selection counts), ``selection.json`` (the row ids chosen per emotion, in stream order) and one folder per
emotion holding ``unet/`` (a diffusers ``UNet2DConditionModel`` folder, float32 safetensors: 3.44 GB for
SD-1.5's 859.5M parameters, so 27.5 GB for the eight emotions), ``text_encoder/`` when it is trained
(0.49 GB each), and ``loss.jsonl``. ``checkpoint_every`` adds resumable ``checkpoint-<step>/`` folders inside
an emotion (weights plus AdamW state: about 10 GB at SD-1.5 size, removed when the emotion finishes); without
them an interrupted emotion restarts, the finished ones are kept.

The fine-tuning loop (:func:`finetune`) is shared with the caption-finetuned SD baseline.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image

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
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES
from reference.data import open_rgb
from reference.sd import SDComponents
from reference.train import step_dirs, step_generator, step_samples

NAME = "dreambooth"
METHOD = "DreamBooth (emogen-bench baseline)"
#: The identifier token of the DreamBooth paper and the diffusers example ("a photo of sks dog").
IDENTIFIER = "sks"
INSTANCE_PROMPT = "a photo of {identifier} {emotion}"
LOSS_LOG = "loss.jsonl"
CHECKPOINT_PREFIX = "checkpoint-"
SPLITS = ("train", "val", "test", "all")


# ---- settings ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DreamBoothSettings:
    """Training settings; defaults are diffusers' DreamBooth example (see the module docstring for each source).

    ``max_steps`` (None: ``steps``) caps the steps per emotion, for smoke runs. ``images``: 5, 5000 or ``"all"``
    per emotion (fewer when the emotion has fewer); ``sampling``: ``uniform`` or ``attribute-balanced``.
    ``split``: the index split the images come from (``all`` for every split). ``emotions``: the concepts to
    train (all eight for a submission).
    """

    seed: int = 0
    max_steps: int | None = None
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    show_progress: bool = True
    steps: int = 400
    learning_rate: float = 5e-6
    batch_size: int = 1
    gradient_accumulation: int = 1
    resolution: int = 512
    center_crop: bool = False
    random_flip: bool = False
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    identifier: str = IDENTIFIER
    instance_prompt: str = INSTANCE_PROMPT
    images: int | Literal["all"] = "all"
    sampling: Literal["uniform", "attribute-balanced"] = "uniform"
    split: str = "train"
    train_text_encoder: bool = False
    emotions: tuple[str, ...] = EMOTION_NAMES
    checkpoint_every: int | None = None
    cpu: bool = False

    def __post_init__(self) -> None:
        check_finetune_numbers(self, NAME)
        if self.images != "all" and (isinstance(self.images, bool) or int(self.images) < 1):
            raise UsageError(f"dreambooth setting images={self.images!r}: expected a positive integer or 'all'")
        if "{emotion}" not in self.instance_prompt:
            raise UsageError(f"dreambooth setting instance_prompt={self.instance_prompt!r} must contain {{emotion}}")
        unknown = [e for e in self.emotions if e not in EMOTION_IDS]
        if unknown or not self.emotions:
            raise UsageError(f"dreambooth setting emotions: unknown {unknown}; choose among {', '.join(EMOTION_NAMES)}")

    def prompt(self, emotion: str) -> str:
        """The instance prompt of ``emotion`` (also the generation prompt)."""
        return self.instance_prompt.format(identifier=self.identifier, emotion=emotion)


@dataclass(frozen=True)
class GenerateSettings(PromptGenerateConfig):
    """Generation settings of the fine-tuned baselines (the paper's sampler; ``prompt`` None: the method's own)."""

    prompt: str | None = None

    def config(self) -> PromptGenerateConfig:
        """The shared sampler's config."""
        return prompt_config(self)


def check_finetune_numbers(settings: Any, baseline: str) -> None:
    """Refuse impossible numbers in a fine-tuning settings dataclass (shared with caption-SD)."""
    if settings.steps < 1 or settings.batch_size < 1 or settings.gradient_accumulation < 1:
        raise UsageError(f"{baseline}: steps, batch_size and gradient_accumulation must be at least 1")
    if settings.max_steps is not None and settings.max_steps < 1:
        raise UsageError(f"{baseline} setting max_steps={settings.max_steps}: expected at least 1 (or none)")
    if settings.checkpoint_every is not None and settings.checkpoint_every < 1:
        raise UsageError(f"{baseline} setting checkpoint_every={settings.checkpoint_every}: expected >= 1 or none")
    if settings.resolution < 8 or settings.resolution % 8:
        raise UsageError(f"{baseline} setting resolution={settings.resolution}: expected a positive multiple of 8")
    if settings.learning_rate <= 0:
        raise UsageError(f"{baseline} setting learning_rate={settings.learning_rate}: expected a positive number")
    if settings.split not in SPLITS:
        raise UsageError(f"{baseline} setting split={settings.split!r}: expected one of {', '.join(SPLITS)}")


# ---- image selection (pure) ----------------------------------------------------------------------------------


def concept_order(rows: Sequence[IndexRow], sampling: str, rng: random.Random) -> list[int]:
    """Positions into ``rows`` in stream order: a shuffle (``uniform``) or an attribute round robin.

    ``attribute-balanced``: each attribute's rows are shuffled, the attributes are put in a shuffled order,
    then rows are taken one per attribute per round (attributes that run out drop out), so any prefix has
    as equal attribute counts as the data allow.
    """
    if sampling == "uniform":
        order = list(range(len(rows)))
        rng.shuffle(order)
        return order
    if sampling != "attribute-balanced":
        raise UsageError(f"sampling {sampling!r}: expected uniform or attribute-balanced")
    groups: dict[str, list[int]] = {}
    for position, row in enumerate(rows):
        groups.setdefault(row.attribute, []).append(position)
    names = sorted(groups)
    rng.shuffle(names)
    for name in names:
        rng.shuffle(groups[name])
    longest = max((len(g) for g in groups.values()), default=0)
    return [groups[name][r] for r in range(longest) for name in names if r < len(groups[name])]


def split_rows(rows: Sequence[IndexRow], split: str) -> list[IndexRow]:
    """The rows of ``split`` (``all``: every row), in index order."""
    return [row for row in rows if split == "all" or row.split == split]


def select_concept_images(
    rows: Sequence[IndexRow], emotion: str, images: int | str, sampling: str, seed: int, split: str = "train"
) -> list[IndexRow]:
    """The training images of one emotion's concept, in stream order (seeded; at most ``images`` of them)."""
    candidates = [row for row in split_rows(rows, split) if row.emotion == emotion]
    order = concept_order(candidates, sampling, random.Random(f"dreambooth/{seed}/{emotion}/select"))
    count = len(order) if images == "all" else min(int(images), len(order))
    return [candidates[i] for i in order[:count]]


class ConceptStream:
    """Global sample number -> training row: epoch ``e`` walks :func:`concept_order` of the selection anew."""

    def __init__(self, selected: Sequence[IndexRow], sampling: str, seed: int, emotion: str) -> None:
        if not selected:
            raise DataError(f"no images of {emotion!r} in the index for this split: nothing to train the concept on")
        self.selected, self.sampling, self.key = list(selected), sampling, f"dreambooth/{seed}/{emotion}"
        self._orders: dict[int, list[int]] = {}

    def __call__(self, sample: int) -> IndexRow:
        epoch, offset = divmod(sample, len(self.selected))
        if epoch not in self._orders:
            self._orders = {epoch: concept_order(self.selected, self.sampling, random.Random(f"{self.key}/{epoch}"))}
        return self.selected[self._orders[epoch][offset]]


# ---- the fine-tuning loop (shared with caption-SD) -----------------------------------------------------------


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run of the U-Net (and optionally the text encoder) with a constant learning rate.

    ``ema_decay`` (None: no EMA) keeps diffusers' ``EMAModel`` average (decay ``min(ema_decay, (1+s)/(10+s))``
    at update ``s``) and saves it as the final weights, as ``train_text_to_image.py --use_ema`` does.
    """

    steps: int
    learning_rate: float
    batch_size: int
    gradient_accumulation: int
    resolution: int
    center_crop: bool
    random_flip: bool
    adam_beta1: float
    adam_beta2: float
    adam_weight_decay: float
    adam_epsilon: float
    max_grad_norm: float
    seed: int
    train_text_encoder: bool = False
    ema_decay: float | None = None
    checkpoint_every: int | None = None
    show_progress: bool = True
    desc: str = "fine-tuning"
    #: Recompute activations in the backward pass instead of keeping them (diffusers' recipes'
    #: ``--gradient_checkpointing``): less memory for about a third more time; the same weights.
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class Example:
    """One training image and its caption."""

    row: IndexRow
    prompt: str


def training_pixels(
    image: Image.Image, resolution: int, center_crop: bool, random_flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """(3, R, R) in [-1, 1]: shorter side resized to R (bilinear), a centre or random crop, an optional flip."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    image = TF.resize(image, resolution, interpolation=InterpolationMode.BILINEAR)
    width, height = image.size
    if center_crop:
        image = TF.center_crop(image, [resolution, resolution])
    else:
        top = int(torch.randint(0, height - resolution + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - resolution + 1, (1,), generator=generator))
        image = TF.crop(image, top, left, resolution, resolution)
    if random_flip and float(torch.rand(1, generator=generator)) < 0.5:
        image = TF.hflip(image)
    return TF.normalize(TF.to_tensor(image), [0.5], [0.5])


def tokenize(components: SDComponents, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids (B, 77) of ``prompts``, padded and truncated to the text encoder's context."""
    tokenizer = components.tokenizer
    return tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids


def denoising_loss(
    components: SDComponents, pixels: torch.Tensor, input_ids: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """The latent-diffusion loss of diffusers' fine-tuning scripts: MSE of the U-Net's noise (or v) prediction.

    Every draw (VAE sample, noise, timesteps) comes from ``generator``, in that order.
    """
    unet, vae, scheduler = components.unet, components.vae, components.noise_scheduler
    device = next(unet.parameters()).device
    with torch.no_grad():
        posterior = vae.encode(pixels.to(device, next(vae.parameters()).dtype)).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=generator).to(device, posterior.mean.dtype)
        latents = (posterior.mean + posterior.std * eps) * vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    timesteps = timesteps.to(device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    hidden = components.text_encoder(input_ids=input_ids.to(device))[0]
    prediction = unet(noisy, timesteps, encoder_hidden_states=hidden).sample
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(prediction.float(), target.float(), reduction="mean")


def ema_decay_at(update: int, max_decay: float) -> float:
    """diffusers ``EMAModel`` decay at its ``update``-th step (1-based, no warmup): 0, then (1+s)/(10+s), capped."""
    s = update - 1
    return 0.0 if s <= 0 else min(max_decay, (1 + s) / (10 + s))


@torch.no_grad()
def ema_update(average: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor], decay: float) -> None:
    """``average <- decay * average + (1 - decay) * current``, in place, for every name."""
    for name, value in average.items():
        value.mul_(decay).add_(current[name].detach().to(value.dtype), alpha=1 - decay)


def trainable_modules(components: SDComponents, train_text_encoder: bool) -> dict[str, torch.nn.Module]:
    """The modules a fine-tuning run changes: the U-Net, plus the text encoder when it is trained."""
    modules = {"unet": components.unet}
    if train_text_encoder:
        modules["text_encoder"] = components.text_encoder
    return modules


def named_trainable(modules: Mapping[str, torch.nn.Module]) -> dict[str, torch.nn.Parameter]:
    """``"<module>.<parameter>"`` -> parameter, for every trained module."""
    return {f"{key}.{name}": p for key, module in modules.items() for name, p in module.named_parameters()}


@contextmanager
def restored(components: SDComponents, train_text_encoder: bool) -> Iterator[Callable[[], None]]:
    """Keep a CPU copy of the trained modules' weights; yield a function that puts them back; put back at exit.

    Each concept starts from the base weights, and the caller's components are unchanged afterwards.
    """
    modules = trainable_modules(components, train_text_encoder)
    saved = {key: {k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()} for key, m in modules.items()}

    def reset() -> None:
        for key, module in modules.items():
            module.load_state_dict(saved[key])
            module.requires_grad_(False)
            module.eval()

    try:
        yield reset
    finally:
        reset()


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete resumable checkpoints of one run, oldest first."""
    return step_dirs(run_dir, CHECKPOINT_PREFIX, "state.json")


def _replace_dir(temporary: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)


def _temporary_dir(final: Path) -> Path:
    temporary = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    temporary.mkdir(parents=True)
    return temporary


def _save_state(
    run_dir: Path,
    step: int,
    parameters: Mapping[str, torch.Tensor],
    ema: Mapping[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
) -> Path:
    """Write ``checkpoint-<step>`` (trained weights, EMA, AdamW state) under a temporary name, then rename it."""
    from safetensors.torch import save_file

    final = run_dir / f"{CHECKPOINT_PREFIX}{step}"
    temporary = _temporary_dir(final)
    try:
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in parameters.items()}
        tensors.update({f"ema::{k}": v.detach().float().cpu().contiguous() for k, v in (ema or {}).items()})
        save_file(tensors, str(temporary / "weights.safetensors"))
        torch.save(optimizer.state_dict(), temporary / "optimizer.pt")
        write_json_atomic(temporary / "state.json", {"step": step})
        _replace_dir(temporary, final)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    for old in checkpoint_dirs(run_dir)[:-1]:
        shutil.rmtree(old)
    return final


def _save_final(run_dir: Path, modules: Mapping[str, torch.nn.Module]) -> None:
    """Each trained module as a diffusers/transformers folder (``unet/``, ``text_encoder/``), written atomically."""
    for key, module in modules.items():
        final = run_dir / key
        temporary = _temporary_dir(final)
        try:
            module.save_pretrained(str(temporary), safe_serialization=True)
            _replace_dir(temporary, final)
        finally:
            if temporary.exists():
                shutil.rmtree(temporary)


def is_finished(run_dir: Path, train_text_encoder: bool = False) -> bool:
    """True when ``run_dir`` holds the final weights of a fine-tuning run."""
    keys = ["unet", "text_encoder"] if train_text_encoder else ["unet"]
    return all((Path(run_dir) / key / "config.json").is_file() for key in keys)


def _rewrite_log(path: Path, up_to_step: int) -> None:
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line and json.loads(line)["step"] <= up_to_step]
    write_atomic(path, "".join(line + "\n" for line in kept))


def finetune(
    components: SDComponents,
    examples: Callable[[int], Example],
    config: FinetuneConfig,
    run_dir: Path,
    accelerator: Any,
    emoset_root: Path,
) -> Path:
    """Fine-tune ``components`` in place for ``config.steps`` optimiser steps; final weights go to ``run_dir``.

    ``examples(n)`` is the ``n``-th training sample of the run's stream (step ``s`` of process ``p`` takes
    :func:`reference.train.step_samples` of micro-batch ``s * accumulation + m``). Every draw of step ``s``
    (crops, flips, VAE sample, noise, timesteps) comes from ``step_generator(seed, s, p)``, so a run resumed
    from ``checkpoint-<k>`` takes the steps the uninterrupted run would have taken. A finished run is left as
    it is. The caller restores the components' weights afterwards (:func:`restored`).
    """
    from safetensors.torch import load_file

    run_dir.mkdir(parents=True, exist_ok=True)
    if is_finished(run_dir, config.train_text_encoder):
        return run_dir
    modules = trainable_modules(components, config.train_text_encoder)
    for module in modules.values():
        module.requires_grad_(True)
        module.train()
    parameters = named_trainable(modules)
    optimizer = torch.optim.AdamW(
        list(parameters.values()), lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay, eps=config.adam_epsilon,
    )  # fmt: skip
    ema = {k: v.detach().float().clone() for k, v in parameters.items()} if config.ema_decay is not None else None
    start = 0
    existing = checkpoint_dirs(run_dir)
    if existing:
        state = load_file(str(existing[-1] / "weights.safetensors"))
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(state[name])
            for name, value in (ema or {}).items():
                value.copy_(state[f"ema::{name}"])
        optimizer.load_state_dict(torch.load(existing[-1] / "optimizer.pt", map_location="cpu"))
        start = int(json.loads((existing[-1] / "state.json").read_text(encoding="utf-8"))["step"])
        if accelerator.is_main_process:
            _rewrite_log(run_dir / LOSS_LOG, start)
    elif accelerator.is_main_process and (run_dir / LOSS_LOG).exists():
        (run_dir / LOSS_LOG).unlink()
    accelerator.wait_for_everyone()  # the log is settled before any rank writes to it
    if config.gradient_checkpointing:
        for module in modules.values():
            _set_gradient_checkpointing(module, True)
    prepared = accelerator.prepare(*modules.values(), optimizer)
    optimizer = prepared[-1]
    process, processes = accelerator.process_index, accelerator.num_processes
    device = accelerator.device
    try:
        steps = progress(
            range(start, config.steps), desc=config.desc, total=config.steps - start,
            enabled=config.show_progress and accelerator.is_local_main_process, unit="step",
        )  # fmt: skip
        for step in steps:
            generator = step_generator(config.seed, step, process)
            total = 0.0
            for micro in range(config.gradient_accumulation):
                micro_step = step * config.gradient_accumulation + micro
                batch = [examples(n) for n in step_samples(micro_step, config.batch_size, process, processes)]
                pixels = torch.stack([
                    training_pixels(
                        open_rgb(emoset_root / ex.row.path, ex.row), config.resolution, config.center_crop,
                        config.random_flip, generator,
                    )
                    for ex in batch
                ]).to(device)  # fmt: skip
                input_ids = tokenize(components, [ex.prompt for ex in batch])
                with accelerator.autocast():
                    loss = denoising_loss(components, pixels, input_ids, generator)
                accelerator.backward(loss / config.gradient_accumulation)
                total += float(loss.detach()) / config.gradient_accumulation
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(list(parameters.values()), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema_update(ema, parameters, ema_decay_at(step + 1, float(config.ema_decay)))
            loss_mean = float(accelerator.gather(torch.tensor([total], device=device)).mean())
            done = step + 1
            if accelerator.is_main_process:
                with open(run_dir / LOSS_LOG, "a", encoding="utf-8") as log:
                    log.write(json.dumps({"step": done, "loss": loss_mean, "lr": config.learning_rate}) + "\n")
                if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
                    _save_state(run_dir, done, parameters, ema, optimizer)
        accelerator.wait_for_everyone()
        if ema is not None:
            with torch.no_grad():
                for name, parameter in parameters.items():
                    parameter.copy_(ema[name])
        if accelerator.is_main_process:
            _save_final(run_dir, {k: accelerator.unwrap_model(m) for k, m in modules.items()})
            for old in checkpoint_dirs(run_dir):
                shutil.rmtree(old)
        accelerator.wait_for_everyone()  # every rank returns with the run folder complete
    finally:
        for key, module in zip(modules, prepared[:-1]):
            accelerator.unwrap_model(module, keep_fp32_wrapper=False)
        for module in modules.values():
            _set_gradient_checkpointing(module, False)
        accelerator.free_memory()
    return run_dir


def _set_gradient_checkpointing(module: torch.nn.Module, on: bool) -> None:
    """diffusers' and transformers' switch for activation recomputation, whichever the module has."""
    if hasattr(module, "enable_gradient_checkpointing"):  # diffusers (the U-Net)
        module.enable_gradient_checkpointing() if on else module.disable_gradient_checkpointing()
    elif hasattr(module, "gradient_checkpointing_enable"):  # transformers (the text encoder)
        module.gradient_checkpointing_enable() if on else module.gradient_checkpointing_disable()


def make_accelerator(mixed_precision: str, cpu: bool) -> Any:
    """An ``accelerate.Accelerator`` for a fine-tuning run (fp16/bf16 autocast over float32 master weights)."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


def finetune_config(settings: Any, seed: int, desc: str, ema_decay: float | None = None) -> FinetuneConfig:
    """The :class:`FinetuneConfig` of a baseline's settings (``max_steps`` caps ``steps``)."""
    steps = settings.steps if settings.max_steps is None else min(settings.steps, settings.max_steps)
    names = {f.name for f in fields(FinetuneConfig)} - {"steps", "seed", "desc", "ema_decay"}
    values = {name: getattr(settings, name) for name in names if hasattr(settings, name)}
    return FinetuneConfig(steps=steps, seed=seed, desc=desc, ema_decay=ema_decay, **values)


def concept_seed(seed: int, emotion: str) -> int:
    """The training seed of one emotion's concept (a hash, so concepts of one run share no draws)."""
    return int.from_bytes(hashlib.sha256(f"dreambooth/{seed}/{emotion}".encode()).digest()[:3], "big")


# ---- loading fine-tuned weights ------------------------------------------------------------------------------


def load_weights_into(module: torch.nn.Module, folder: Path) -> None:
    """Copy the weights of a saved diffusers/transformers folder into ``module`` (same architecture)."""
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise WeightsError(f"{folder}: no .safetensors weights; train again (this run was not finished)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError(
            f"{folder}: the weights do not fit the loaded Stable Diffusion ({str(error).splitlines()[0]}); "
            "generate with the model the checkpoint was trained from (see its config.json)"
        ) from None


def weights_digest(folder: Path) -> str:
    """``sha256:<hex>`` over the safetensors files of a saved folder (recorded in ``submission.json``)."""
    hasher = hashlib.sha256()
    for file in sorted(Path(folder).glob("*.safetensors")):
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
    return "sha256:" + hasher.hexdigest()


def check_sd_matches(config: Mapping[str, Any], components: SDComponents, checkpoint: Path) -> None:
    """Refuse to generate with another base model than the one the checkpoint was fine-tuned from."""
    trained = config.get("sd", {})
    if trained.get("model_id") != components.model_id or trained.get("revision") != components.revision:
        raise UsageError(
            f"{checkpoint}: fine-tuned from {trained.get('model_id')}@{trained.get('revision')}, but the loaded "
            f"Stable Diffusion is {components.model_id}@{components.revision}; load the same model to generate"
        )


def _concept_examples(stream: ConceptStream, prompt: str) -> Callable[[int], Example]:
    return lambda sample: Example(stream(sample), prompt)


# ---- the baseline --------------------------------------------------------------------------------------------


#: Settings that may change when a run is resumed (they do not change the weights trained).
RESUMABLE_SETTINGS = frozenset(
    {"show_progress", "max_steps", "checkpoint_every", "captioner_device", "caption_batch_size", "allow_download",
     "cpu", "gradient_checkpointing"}
)


def prepare_run(out_dir: Path, settings: Any, resume: bool, baseline: str) -> None:
    """Refuse to mix runs: a folder with a config needs ``resume`` and the same settings (see RESUMABLE_SETTINGS)."""
    config_path = out_dir / "config.json"
    if not config_path.is_file():
        if out_dir.exists() and any(out_dir.iterdir()) and not resume:
            raise UsageError(f"{out_dir} is not empty and holds no {baseline} run; choose a new folder")
        return
    if not resume:
        raise UsageError(
            f"{out_dir} already holds a {baseline} run; pass resume=True (--resume) to continue it, or choose "
            "another folder"
        )
    saved = read_checkpoint_config(out_dir, baseline)["settings"]
    mine = settings_dict(settings)
    changed = [k for k in mine if k not in RESUMABLE_SETTINGS and saved.get(k) != mine[k]]
    if changed:
        raise UsageError(
            f"{config_path}: cannot resume with different settings ({', '.join(changed)}); use the run's settings "
            "or another folder"
        )


class DreamBooth:
    """The ``dreambooth`` baseline: a fine-tuned U-Net per emotion, generation with each emotion's own U-Net."""

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
        """Fine-tune one concept per emotion into ``out_dir``; finished emotions are kept on resume."""
        chosen = settings_from_mapping(DreamBoothSettings, settings, NAME)
        out_dir, emoset_root = Path(out_dir), Path(emoset_root)
        accelerator = make_accelerator(chosen.mixed_precision, chosen.cpu)
        prepare_run(out_dir, chosen, resume, NAME)  # every rank checks the folder before any rank writes to it
        accelerator.wait_for_everyone()
        rows = load_index(index_dir)
        selection = {
            e: select_concept_images(rows, e, chosen.images, chosen.sampling, chosen.seed, chosen.split)
            for e in chosen.emotions
        }
        empty = [e for e, selected in selection.items() if not selected]
        if empty:
            raise DataError(f"{index_dir}: no {chosen.split!r} images of {', '.join(empty)}; check the index and split")
        counts = {e: len(s) for e, s in selection.items()}
        if accelerator.is_main_process:  # one writer; the others wait until the run folder is complete
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out_dir / "selection.json", {e: [r.id for r in s] for e, s in selection.items()})
            write_checkpoint_config(
                out_dir, NAME, chosen, components, emotions=list(chosen.emotions), images=counts,
                processes=accelerator.num_processes,
            )  # fmt: skip
        accelerator.wait_for_everyone()
        components.to(accelerator.device)
        with restored(components, chosen.train_text_encoder) as reset:
            for emotion in chosen.emotions:
                stream = ConceptStream(selection[emotion], chosen.sampling, chosen.seed, emotion)
                prompt = chosen.prompt(emotion)
                config = finetune_config(
                    chosen, concept_seed(chosen.seed, emotion), f"dreambooth {emotion}"
                )
                examples = _concept_examples(stream, prompt)
                finetune(components, examples, config, out_dir / emotion, accelerator, emoset_root)
                reset()
        return out_dir

    def generate(
        self, settings: Mapping[str, Any], checkpoint: Path | None, out_dir: Path, *, components: SDComponents,
        shard: tuple[int, int] = (0, 1),
    ) -> Path:
        """A submission with each emotion's fine-tuned U-Net and its instance prompt (or ``prompt``)."""
        chosen = settings_from_mapping(GenerateSettings, settings, NAME)
        if checkpoint is None:
            raise UsageError("dreambooth generate needs the checkpoint folder that `train` wrote (--checkpoint)")
        checkpoint = Path(checkpoint)
        document = read_checkpoint_config(checkpoint, NAME)
        check_sd_matches(document, components, checkpoint)
        trained = settings_from_mapping(DreamBoothSettings, document["settings"], NAME)
        missing = [e for e in EMOTION_NAMES if not is_finished(checkpoint / e, trained.train_text_encoder)]
        if missing:
            raise UsageError(
                f"{checkpoint}: no fine-tuned weights for {', '.join(missing)}; finish training "
                "(`train` with --resume, with every emotion) before generating"
            )
        template = chosen.prompt or trained.instance_prompt
        prompts = {e: template.format(identifier=trained.identifier, emotion=e) for e in EMOTION_NAMES}
        digests = {e: weights_digest(checkpoint / e / "unet") for e in EMOTION_NAMES}
        extra = {"checkpoint": {"baseline": NAME, "settings": document["settings"], "unet": digests}}
        modules = trainable_modules(components, trained.train_text_encoder)

        def load_emotion(emotion: str) -> None:
            for key, module in modules.items():
                load_weights_into(module, checkpoint / emotion / key)

        with restored(components, trained.train_text_encoder):
            return generate_from_prompts(
                components, prompts, chosen.config(), Path(out_dir), method=METHOD, extra_metadata=extra,
                before_emotion=load_emotion, shard=shard,
            )


__all__ = [
    "ConceptStream",
    "DreamBooth",
    "DreamBoothSettings",
    "Example",
    "FinetuneConfig",
    "GenerateSettings",
    "concept_order",
    "denoising_loss",
    "finetune",
    "select_concept_images",
    "training_pixels",
]
