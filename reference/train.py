"""EmoGen stage 2: train the mapping network against frozen Stable Diffusion (PROTOCOL.md section 5).

Loss per image ``(1 - a) L_LDM + a L_attr`` (see :mod:`reference.losses`); only the mapper has
trainable parameters, so no gradient is ever stored for the VAE, U-Net, text encoder or projection
(gradients flow *through* the U-Net and text encoder into the mapper, as they must).  ``accelerate``
runs it on one or many GPUs with fp16/bf16 mixed precision (``accelerate launch -m ...`` or the CLI).

Every random draw of step ``s`` (image order, flips, VAE sample, noise, timesteps, emotion-space draws)
comes from generators seeded by ``(seed, s, process)``, so a run resumed from a checkpoint takes exactly
the steps the uninterrupted run would have taken.

Checkpoint format (a folder ``checkpoint-<step>``; ``load_checkpoint`` reads it):
``mapper.safetensors`` (the mapper's float32 weights), ``optimizer.pt`` (AdamW state), ``rng.pt``
(torch CPU/CUDA RNG states, for dropout) and ``config.json`` (format, step, the Stage2Config, the
mapper config, the SD model id/revision/hidden size, the placeholder token, the pooled mode and the
emotion-space source given by the caller).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn
from torch.utils.data import DataLoader, Dataset

from emogen_bench.data import IndexRow, balanced_order
from emogen_bench.errors import DataError, UsageError, WeightsError
from emogen_bench.fileio import write_atomic, write_json_atomic
from emogen_bench.progress import progress
from emogen_bench.task import DEFAULT_SEED, EMOTION_NAMES
from reference.conditioning import (
    PLACEHOLDER,
    add_placeholder_token,
    attribute_text,
    embed_texts,
    emotion_prompt_ids,
    encode_prompt,
    pooled_embedding,
)
from reference.losses import (
    NO_ATTRIBUTE,
    attribute_logits,
    attribute_loss,
    attribute_targets,
    combine_losses,
    emotion_confidence,
    ldm_loss,
)
from reference.mapper import MappingNetwork
from reference.sd import SDComponents, freeze

CHECKPOINT_FORMAT = "emogen-bench.reference.stage2-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_PREFIX = "checkpoint-"
LOSS_LOG = "loss.jsonl"
#: Config fields that may differ when a run is resumed (they do not change the steps taken).
RESUMABLE_FIELDS = ("max_steps", "checkpoint_every", "keep_checkpoints", "show_progress", "num_workers", "resume")


class EmotionSpaceLike(Protocol):
    """What stage 2 needs of an emotion space (``reference.space.EmotionSpace``)."""

    def sample(self, emotion: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...


@dataclass
class Stage2Config:
    """Settings of stage 2; the defaults are the paper's (batch 1, AdamW lr 1e-3) where it gives them.

    ``mapper_input``: ``"encoder"`` feeds the mapper the emotion encoder's feature of the training image
    (released code; needs ``encoder=``), ``"space"`` a draw from the image emotion's Gaussian.
    ``pooled_mode``: ``"eos"`` (CLIP's pooling) or ``"released"`` (argmax of the ids = the placeholder).
    ``loss_mode``: ``"paper"`` or ``"released"`` (attribute term x 0.01).  ``ablation``: ``full``,
    ``ldm-only``, ``no-attr-loss``, ``no-confidence`` (``no_confidence_weight`` replaces a).
    """

    max_steps: int = 10_000
    batch_size: int = 1
    learning_rate: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    resolution: int = 512
    random_flip: bool = True
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    cpu: bool = False
    seed: int = DEFAULT_SEED
    split: str = "train"
    mapper_input: Literal["encoder", "space"] = "encoder"
    mapper_hidden: int = 1024
    mapper_depth: int = 2
    mapper_layernorm: bool = False
    mapper_dropout: float = 0.0
    pooled_mode: Literal["eos", "released"] = "eos"
    loss_mode: Literal["paper", "released"] = "paper"
    ablation: Literal["full", "ldm-only", "no-attr-loss", "no-confidence"] = "full"
    no_confidence_weight: float = 0.5
    threshold: float = 0.0
    attribute_logit_scale: float = 1.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    num_workers: int = 0
    show_progress: bool = True
    resume: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists)."""
        document = asdict(self)
        document["adam_betas"] = list(self.adam_betas)
        return document

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Stage2Config:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(document) - names)
        if unknown:
            raise UsageError(f"unknown Stage2Config field(s): {', '.join(unknown)}")
        values = dict(document)
        if "adam_betas" in values:
            values["adam_betas"] = tuple(values["adam_betas"])
        return cls(**values)


@dataclass(frozen=True)
class Stage2Result:
    """Where stage 2 left its outputs, and how far it got."""

    out_dir: Path
    checkpoint: Path
    steps: int
    last_loss: float | None
    loss_log: Path


# ---- data ------------------------------------------------------------------------------------------


def sd_transform(resolution: int) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the shorter side to ``resolution``, center-crop a square, scale to [-1, 1] (SD's input)."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(resolution),
            transforms.ToTensor(),
            transforms.Normalize([0.5], [0.5]),
        ]
    )


class Stage2Images(Dataset):
    """Training samples by global sample number: epoch ``e`` walks ``balanced_order(seed=seed + e)``.

    Item: ``(pixels (3, R, R) in [-1, 1], encoder input or an empty tensor, row position)``.
    """

    def __init__(
        self,
        rows: Sequence[IndexRow],
        emoset_root: Path,
        *,
        resolution: int,
        split: str,
        seed: int,
        encoder_transform: Callable[[Image.Image], torch.Tensor] | None = None,
    ) -> None:
        self.rows, self.root, self.split, self.seed = rows, Path(emoset_root), split, seed
        self.transform = sd_transform(resolution)
        self.encoder_transform = encoder_transform
        self._orders: dict[int, list[int]] = {}
        self._length = len(self.order(0))  # the same for every epoch: only the shuffle changes
        if not self._length:
            raise DataError(f"no {split!r} rows in the index: nothing to train on; check the index and the split")

    def order(self, epoch: int) -> list[int]:
        """Row positions of one epoch (oversampled to balance the emotions, shuffled by the seed)."""
        if epoch not in self._orders:
            self._orders = {epoch: balanced_order(self.rows, split=self.split, seed=self.seed + epoch)}
        return self._orders[epoch]

    def position(self, sample: int) -> int:
        """The row position of global sample number ``sample``."""
        return self.order(sample // self._length)[sample % self._length]

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, sample: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        position = self.position(sample)
        path = self.root / self.rows[position].path
        try:
            with Image.open(path) as handle:
                image = handle.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{path}: cannot read the training image ({exc}); check the EmoSet folder") from None
        encoded = self.encoder_transform(image) if self.encoder_transform is not None else torch.empty(0)
        return self.transform(image), encoded, position


def step_samples(step: int, batch_size: int, process: int, processes: int) -> list[int]:
    """Global sample numbers of one process's batch at ``step`` (processes take consecutive slices)."""
    start = (step * processes + process) * batch_size
    return list(range(start, start + batch_size))


def step_generator(seed: int, step: int, process: int) -> torch.Generator:
    """The CPU generator of every random draw of one step on one process."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + process)


# ---- checkpoints -----------------------------------------------------------------------------------


def step_dirs(folder: Path, prefix: str, marker: str) -> list[Path]:
    """Folders ``<prefix><step>`` under ``folder`` that hold ``marker`` (written last: complete), by step."""
    found = []
    for path in Path(folder).glob(f"{prefix}*"):
        suffix = path.name[len(prefix) :]
        if path.is_dir() and suffix.isdigit() and (path / marker).is_file():
            found.append((int(suffix), path))
    return [path for _, path in sorted(found)]


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """Complete checkpoints under ``out_dir``, oldest first."""
    return step_dirs(out_dir, CHECKPOINT_PREFIX, "config.json")


def _write_checkpoint(
    out_dir: Path, step: int, mapper: nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]
) -> Path:
    """Write ``checkpoint-<step>`` under a temporary name, then rename it into place (never half-written)."""
    from safetensors.torch import save_file

    final = out_dir / f"{CHECKPOINT_PREFIX}{step}"
    temporary = out_dir / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    temporary.mkdir()
    try:
        state = {k: v.detach().float().cpu().contiguous() for k, v in mapper.state_dict().items()}
        save_file(state, str(temporary / "mapper.safetensors"))
        torch.save(optimizer.state_dict(), temporary / "optimizer.pt")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        torch.save(rng, temporary / "rng.pt")
        write_json_atomic(temporary / "config.json", {**meta, "step": step})
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return final


def _resolve_checkpoint(path: Path) -> Path:
    path = Path(path)
    if (path / "config.json").is_file() and (path / "mapper.safetensors").is_file():
        return path
    found = checkpoint_dirs(path) if path.is_dir() else []
    if not found:
        raise UsageError(f"{path}: no stage-2 checkpoint here (expected {CHECKPOINT_PREFIX}<step>/ with config.json)")
    return found[-1]


def load_checkpoint(path: str | Path) -> tuple[MappingNetwork, dict[str, Any]]:
    """The mapper (float32, eval mode) and the config of a checkpoint folder, or of a run's latest one."""
    from safetensors.torch import load_file

    folder = _resolve_checkpoint(Path(path))
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        state = load_file(str(folder / "mapper.safetensors"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{folder}: cannot read the stage-2 checkpoint ({exc}); it is damaged") from None
    if config.get("format") != CHECKPOINT_FORMAT or config.get("version") != CHECKPOINT_VERSION:
        raise WeightsError(
            f"{folder}/config.json: format {config.get('format')!r} v{config.get('version')}, expected "
            f"{CHECKPOINT_FORMAT!r} v{CHECKPOINT_VERSION}; it was not written by this stage 2"
        )
    mapper = MappingNetwork(**config["mapper"])
    try:
        mapper.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{folder}/mapper.safetensors does not fit the mapper in config.json: {exc}") from None
    return mapper.eval(), config


# ---- training --------------------------------------------------------------------------------------


def _weight_dtype(mixed_precision: str) -> torch.dtype:
    return {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]


def _check_config(config: Stage2Config, encoder: nn.Module | None) -> None:
    if config.mixed_precision not in ("no", "fp16", "bf16"):
        raise UsageError(f"mixed_precision {config.mixed_precision!r}: expected no, fp16 or bf16")
    if config.mapper_input == "encoder" and encoder is None:
        raise UsageError(
            "mapper_input='encoder' (the released code: the mapper sees the emotion encoder's feature of each "
            "training image) needs the stage-1 encoder: pass encoder=..., or set mapper_input='space'"
        )
    if config.mapper_input not in ("encoder", "space"):
        raise UsageError(f"mapper_input {config.mapper_input!r}: expected encoder or space")
    if config.max_steps < 0 or config.batch_size < 1 or config.checkpoint_every < 1:
        raise UsageError("max_steps must be >= 0, batch_size and checkpoint_every >= 1")


def _prepare_out_dir(out_dir: Path, config: Stage2Config) -> Path | None:
    """The checkpoint to resume from (None for a fresh run); refuses to mix runs in one folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = checkpoint_dirs(out_dir)
    if not existing:
        if (out_dir / LOSS_LOG).exists() and not config.resume:
            raise UsageError(f"{out_dir} holds a stage-2 log but no checkpoint; choose an empty folder")
        return None
    if not config.resume:
        raise UsageError(
            f"{out_dir} already holds stage-2 checkpoints (latest {existing[-1].name}); pass resume=True "
            "(--resume) to continue that run, or choose another folder"
        )
    saved = json.loads((existing[-1] / "config.json").read_text(encoding="utf-8"))["stage2"]
    mine = config.to_dict()
    changed = [k for k in mine if k not in RESUMABLE_FIELDS and saved.get(k) != mine[k]]
    if changed:
        raise UsageError(
            f"{existing[-1]}: cannot resume with different settings ({', '.join(changed)}); use the run's settings "
            "(see its config.json) or another folder"
        )
    return existing[-1]


def _rewrite_log(path: Path, up_to_step: int) -> None:
    """Keep the log lines of steps <= ``up_to_step`` (a resumed run rewrites what came after)."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line and json.loads(line)["step"] <= up_to_step
    ]
    write_atomic(path, "".join(line + "\n" for line in kept))


def train_stage2(
    config: Stage2Config,
    components: SDComponents,
    space: EmotionSpaceLike | None,
    confidence_table: Mapping[str, Any],
    vocabulary: Sequence[str],
    rows: Sequence[IndexRow],
    emoset_root: str | Path,
    out_dir: str | Path,
    *,
    encoder: nn.Module | None = None,
    space_source: Mapping[str, Any] | None = None,
) -> Stage2Result:
    """Train the mapper for ``config.max_steps`` steps; checkpoints and ``loss.jsonl`` go to ``out_dir``.

    ``confidence_table``: attribute -> 8 emotion probabilities; ``vocabulary``: the attribute class list
    of the attribute loss; ``rows``: the index rows (``config.split`` is used, balanced by emotion);
    ``encoder``: the stage-1 encoder (``encode(x) -> (B, 768)``) when ``mapper_input='encoder'``;
    ``space_source``: what to record about the emotion space (path, digest).
    """
    from accelerate import Accelerator

    _check_config(config, encoder)
    if config.mapper_input == "space" and space is None:
        raise UsageError("mapper_input='space' needs the emotion space")
    out_dir = Path(out_dir)
    resume_from = _prepare_out_dir(out_dir, config)
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu)
    device, weight_dtype = accelerator.device, _weight_dtype(config.mixed_precision)

    freeze(components).to(device=device, dtype=weight_dtype)
    placeholder_id = add_placeholder_token(components.tokenizer, components.text_encoder)
    components.text_encoder.requires_grad_(False)
    prompt_ids = emotion_prompt_ids(components.tokenizer).to(device)
    vocab_index = {name: i for i, name in enumerate(vocabulary)}
    vocab_embeds = embed_texts(
        components.tokenizer,
        components.text_encoder,
        components.text_projection,
        [attribute_text(v) for v in vocabulary],
    ).to(device)
    encoder_transform = None
    if config.mapper_input == "encoder":
        from reference.data import encoder_transform as make_encoder_transform

        encoder_transform = make_encoder_transform(train=False)
        encoder.requires_grad_(False)
        encoder.eval().to(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        mapper = MappingNetwork(
            hidden=config.mapper_hidden,
            out_dim=components.hidden_size,
            depth=config.mapper_depth,
            layernorm=config.mapper_layernorm,
            dropout=config.mapper_dropout,
        )
    optimizer = torch.optim.AdamW(
        mapper.parameters(),
        lr=config.learning_rate,
        betas=config.adam_betas,
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    start = 0
    if resume_from is not None:
        restored, saved = load_checkpoint(resume_from)
        mapper.load_state_dict(restored.state_dict())
        optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", map_location="cpu"))
        rng = torch.load(resume_from / "rng.pt")
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(rng["cuda"]))
        start = int(saved["step"])
    if config.resume and accelerator.is_main_process:  # steps after the checkpoint are taken again
        _rewrite_log(out_dir / LOSS_LOG, start)
    accelerator.wait_for_everyone()
    mapper, optimizer = accelerator.prepare(mapper, optimizer)

    dataset = Stage2Images(
        rows,
        Path(emoset_root),
        resolution=config.resolution,
        split=config.split,
        seed=config.seed,
        encoder_transform=encoder_transform,
    )
    process, processes = accelerator.process_index, accelerator.num_processes
    samples = [
        n for step in range(start, config.max_steps) for n in step_samples(step, config.batch_size, process, processes)
    ]
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=samples, num_workers=config.num_workers)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "stage2": config.to_dict(),
        "mapper": accelerator.unwrap_model(mapper).config,
        "sd": components.describe(),
        "placeholder_token": PLACEHOLDER,
        "pooled_mode": config.pooled_mode,
        "space": dict(space_source or {}),
        "vocabulary_size": len(vocabulary),
        "processes": processes,  # data parallelism changes the results: recorded with what it implies
        "effective_batch_size": config.batch_size * processes,
        "learning_rate_used": config.learning_rate,  # not scaled with the process count
    }
    context = _StepContext(
        components,
        placeholder_id,
        prompt_ids,
        vocab_embeds,
        vocab_index,
        confidence_table,
        space,
        encoder,
        weight_dtype,
    )
    last_loss, checkpoint = None, resume_from
    steps = progress(
        zip(range(start, config.max_steps), loader),
        desc="stage 2",
        total=config.max_steps - start,
        enabled=config.show_progress and accelerator.is_local_main_process,
        unit="step",
    )
    mapper.train()
    for step, batch in steps:
        generator = step_generator(config.seed, step, process)
        with accelerator.autocast():
            losses = stage2_losses(config, context, mapper, batch, dataset.rows, generator)
        accelerator.backward(losses["loss"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        record = {k: float(accelerator.gather(v.detach().reshape(1)).mean()) for k, v in losses.items()}
        last_loss = record["loss"]
        if accelerator.is_main_process:
            with open(out_dir / LOSS_LOG, "a", encoding="utf-8") as log:
                log.write(json.dumps({"step": step + 1, **record, "lr": config.learning_rate}) + "\n")
        done = step + 1
        if done % config.checkpoint_every == 0 or done == config.max_steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:  # one process writes; every process knows where it is
                _write_checkpoint(out_dir, done, accelerator.unwrap_model(mapper), optimizer, meta)
                for old in checkpoint_dirs(out_dir)[: -config.keep_checkpoints]:
                    shutil.rmtree(old)
            checkpoint = out_dir / f"{CHECKPOINT_PREFIX}{done}"
    accelerator.wait_for_everyone()
    if checkpoint is None:
        raise UsageError(f"max_steps={config.max_steps}: no training step was taken and no checkpoint exists")
    return Stage2Result(out_dir, checkpoint, max(start, config.max_steps), last_loss, out_dir / LOSS_LOG)


@dataclass
class _StepContext:
    """What every step reads and nothing changes: frozen models, prompt, vocabulary, tables."""

    components: SDComponents
    placeholder_id: int
    prompt_ids: torch.Tensor
    vocab_embeds: torch.Tensor
    vocab_index: dict[str, int]
    confidence_table: Mapping[str, Any]
    space: EmotionSpaceLike | None
    encoder: nn.Module | None
    weight_dtype: torch.dtype


def _mapper_inputs(
    config: Stage2Config,
    context: _StepContext,
    encoded: torch.Tensor,
    emotions: list[int],
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    if config.mapper_input == "encoder":
        with torch.no_grad():
            return context.encoder.encode(encoded.to(device)).float()
    draws = [context.space.sample(EMOTION_NAMES[e], 1, generator=generator) for e in emotions]
    return torch.cat(draws).float().to(device)


def stage2_losses(
    config: Stage2Config,
    context: _StepContext,
    mapper: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    rows: Sequence[IndexRow],
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """One step's losses (``loss`` the batch mean to minimise; ``ldm``, ``attr``, ``a`` batch means, for the log)."""
    parts = context.components
    pixels, encoded, positions = batch
    device = parts.unet.device
    batch_rows = [rows[int(p)] for p in positions]
    emotions = [r.emotion_id for r in batch_rows]
    if config.random_flip:
        flips = torch.rand(len(batch_rows), generator=generator) < 0.5
        pixels = torch.where(flips[:, None, None, None], pixels.flip(-1), pixels)
    with torch.no_grad():
        posterior = parts.vae.encode(pixels.to(device=device, dtype=context.weight_dtype)).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=generator).to(device=device, dtype=posterior.mean.dtype)
        latents = (posterior.mean + posterior.std * eps) * parts.vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=generator).to(device=device, dtype=latents.dtype)
    timesteps = torch.randint(
        0, parts.noise_scheduler.config.num_train_timesteps, (len(batch_rows),), generator=generator
    )
    timesteps = timesteps.to(device)
    noisy = parts.noise_scheduler.add_noise(latents, noise, timesteps)

    emotion_vectors = _mapper_inputs(config, context, encoded, emotions, generator, device)
    token_embeds = mapper(emotion_vectors)
    ids = context.prompt_ids.expand(len(batch_rows), -1)
    hidden = encode_prompt(parts.text_encoder, ids, context.placeholder_id, token_embeds)
    pooled = pooled_embedding(hidden, ids, parts.tokenizer.eos_token_id, config.pooled_mode)
    projected = parts.text_projection(pooled.to(parts.text_projection.weight.dtype))
    logits = attribute_logits(projected, context.vocab_embeds, config.attribute_logit_scale)
    targets = attribute_targets([r.attribute for r in batch_rows], context.vocab_index).to(device)
    l_attr = attribute_loss(logits, targets)

    model_pred = parts.unet(noisy, timesteps, hidden.to(context.weight_dtype)).sample
    if parts.noise_scheduler.config.prediction_type == "v_prediction":
        target = parts.noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    l_ldm = ldm_loss(model_pred, target)
    a = emotion_confidence(context.confidence_table, [r.attribute for r in batch_rows], emotions, config.threshold)
    a = torch.where(targets.cpu() == NO_ATTRIBUTE, torch.zeros_like(a), a).to(device)
    per_sample = combine_losses(
        l_ldm,
        l_attr,
        a,
        config.loss_mode,
        ablation=config.ablation,
        has_attribute=targets != NO_ATTRIBUTE,
        fixed_weight=config.no_confidence_weight,
    )
    return {"loss": per_sample.mean(), "ldm": l_ldm.mean().detach(), "attr": l_attr.mean().detach(), "a": a.mean()}
