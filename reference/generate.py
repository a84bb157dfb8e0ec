"""Generation with a trained EmoGen mapper: benchmark submissions and the paper's three applications.

Every image has its own seed (:func:`image_seed`), and both of its random inputs (the emotion-space
draw, then the initial latent) come from one CPU ``torch.Generator`` seeded with it, so an image's
inputs are fixed by its seed whatever the batch, the device or the order of generation; its pixels
are bitwise reproducible for the same batch size, device and dtype (batches are fixed chunks of each
emotion's images, see :func:`submission_batches`) and agree up to rounding otherwise. A submission
folder records the seeds and the settings in ``submission.json``; a second run into the same folder
with the same settings keeps the images already there and writes only the missing ones.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from emogen_bench import __version__
from emogen_bench.errors import UsageError
from emogen_bench.fileio import atomic_writer, write_atomic, write_json_atomic
from emogen_bench.progress import progress
from emogen_bench.submission import SubmissionMetadata, read_metadata, write_metadata
from emogen_bench.task import DEFAULT_SEED, EMOTION_IDS, EMOTION_NAMES, SUBMISSION
from reference.conditioning import PLACEHOLDER, add_placeholder_token, emotion_prompt_ids, encode_prompt
from reference.mapper import MappingNetwork
from reference.sd import SDComponents
from reference.space import EmotionSpace

METHOD = "EmoGen (emogen-bench reference implementation)"
SAMPLER = "UniPCMultistepScheduler"
SEED_POLICY = (
    "one seed per image: the first 8 bytes of sha256('emogen-reference/<seed>/<emotion id>/<index>'), shifted right "
    "by 1 bit; a CPU torch.Generator seeded with it draws the emotion-space sample, then the initial latent"
)
#: Neutral object prompts of the paper's emotion-transfer figure.
TRANSFER_OBJECTS: tuple[str, ...] = ("bag", "cup", "room", "street")
#: Attributes listed per emotion by emotion decomposition (Figure 6 of the paper).
DECOMPOSITION_TOP_K = 6


@dataclass(frozen=True)
class SamplerConfig:
    """How images are sampled, shared by EmoGen and the prompt baselines; the defaults are the paper's
    (UniPC, 50 steps, guidance 7.5 against the empty prompt, 512x512).

    ``batch_size`` images go through the U-Net at once (twice that with guidance).
    """

    per_emotion: int = SUBMISSION.images_per_emotion
    seed: int = DEFAULT_SEED
    steps: int = 50
    guidance: float = 7.5
    width: int = 512
    height: int = 512
    batch_size: int = 8
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.per_emotion < 1 or self.steps < 1 or self.batch_size < 1:
            raise UsageError(
                f"per_emotion, steps and batch_size must be at least 1 (got {self.per_emotion}, {self.steps}, "
                f"{self.batch_size})"
            )
        if self.seed < 0:
            raise UsageError(f"the seed must be a non-negative integer, got {self.seed}")
        if self.width % 8 or self.height % 8 or self.width < 8 or self.height < 8:
            raise UsageError(f"width and height must be positive multiples of 8, got {self.width}x{self.height}")


@dataclass(frozen=True)
class GenerateConfig(SamplerConfig):
    """EmoGen's sampling: the shared sampler plus the prompt holding the emotion token.

    ``negative_prompt`` is what classifier-free guidance steers away from (the empty prompt).
    """

    prompt: str = PLACEHOLDER
    negative_prompt: str = ""
    method: str = METHOD

    def __post_init__(self) -> None:
        super().__post_init__()
        if PLACEHOLDER not in self.prompt:
            raise UsageError(f"the prompt must contain the emotion token {PLACEHOLDER!r}, got {self.prompt!r}")


@dataclass(frozen=True)
class PlannedImage:
    """One image of a run: its emotion, index within the emotion, relative path and seed."""

    emotion: str
    index: int
    path: str
    seed: int


# --- pure helpers ----------------------------------------------------------------------------------


def image_seed(seed: int, emotion_id: int, index: int) -> int:
    """The seed of image ``index`` of emotion ``emotion_id`` in a run with base ``seed`` (63 bits).

    A hash rather than ``seed + index`` so that runs with neighbouring base seeds share no image.
    """
    digest = hashlib.sha256(f"emogen-reference/{seed}/{emotion_id}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def image_path(emotion: str, index: int) -> str:
    """``<emotion>/<emotion>_<index:04d>.png``, the file of one image inside a submission."""
    return f"{emotion}/{emotion}_{index:04d}.png"


def plan_submission(per_emotion: int, seed: int) -> list[PlannedImage]:
    """Every image of a submission, emotion by emotion, with its path and seed."""
    return [
        PlannedImage(name, index, image_path(name, index), image_seed(seed, EMOTION_IDS[name], index))
        for name in EMOTION_NAMES
        for index in range(per_emotion)
    ]


def batched(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive chunks of ``items`` of at most ``size`` elements."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def submission_batches(plan: Sequence[PlannedImage], size: int) -> list[list[PlannedImage]]:
    """The fixed batches of a run: each emotion's images in consecutive chunks of ``size``.

    A resumed run renders whole batches (writing only the missing images), so an image's pixels never
    depend on which images happened to be on disk: floating-point results can change with batch size.
    """
    by_emotion: dict[str, list[PlannedImage]] = {}
    for image in plan:
        by_emotion.setdefault(image.emotion, []).append(image)
    return [chunk for images in by_emotion.values() for chunk in batched(images, size)]


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """``sha256:<hex>`` of named tensors (names, dtypes, shapes and values), independent of dict order."""
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + hasher.hexdigest()


def space_tensors(space: EmotionSpace) -> dict[str, torch.Tensor]:
    """The emotion space's statistics as named tensors (for :func:`tensors_digest`)."""
    named = {f"mean.{emotion}": tensor for emotion, tensor in space.mean.items()}
    named.update({f"std.{emotion}": tensor for emotion, tensor in space.std.items()})
    return named


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """VAE output in [-1, 1], (B, 3, H, W) -> uint8 (B, H, W, 3), rounded."""
    scaled = ((images.detach().float().cpu() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).numpy()


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG file bytes of an (H, W, 3) uint8 array; Pillow writes no timestamp, so equal pixels give equal bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


# --- the sampler -----------------------------------------------------------------------------------


def _device_dtype(components: SDComponents) -> tuple[torch.device, torch.dtype]:
    parameter = next(components.unet.parameters())
    return parameter.device, parameter.dtype


def latent_shape(components: SDComponents, width: int, height: int) -> tuple[int, int, int]:
    """(channels, height, width) of the U-Net's latents for an image of ``width`` x ``height`` pixels."""
    factor = 2 ** (len(components.vae.config.block_out_channels) - 1)
    if width % factor or height % factor:
        raise UsageError(f"width and height must be multiples of {factor} (the VAE's downsampling factor)")
    return components.unet.config.in_channels, height // factor, width // factor


def initial_draws(
    space: EmotionSpace, emotions: Sequence[str], seeds: Sequence[int], shape: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: an emotion-space sample (768,) then an initial latent ``shape``, both from its own seed."""
    samples, latents = [], []
    for emotion, seed in zip(emotions, seeds):
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        samples.append(space.sample(emotion, 1, generator).reshape(-1).float())
        latents.append(torch.randn((1, *shape), generator=generator, dtype=torch.float32))
    return torch.stack(samples), torch.cat(latents)


def prompt_hidden_states(
    components: SDComponents,
    mapper: MappingNetwork,
    placeholder_id: int,
    prompt: str,
    emotion_samples: torch.Tensor,
) -> torch.Tensor:
    """The text encoder's last hidden state (B, 77, H) for ``prompt`` with the mapped emotion samples in place."""
    device, dtype = _device_dtype(components)
    mapper_parameter = next(mapper.parameters())
    embeds = mapper(emotion_samples.to(mapper_parameter.device, mapper_parameter.dtype))
    ids = emotion_prompt_ids(components.tokenizer, prompt).to(device)
    ids = ids.reshape(1, -1).expand(embeds.shape[0], -1)
    text_dtype = next(components.text_encoder.parameters()).dtype
    hidden = encode_prompt(components.text_encoder, ids, placeholder_id, embeds.to(device, text_dtype))
    return hidden.to(dtype)


def plain_prompt_hidden_states(components: SDComponents, prompt: str, batch: int) -> torch.Tensor:
    """Hidden states of an ordinary prompt (the empty one for guidance), repeated ``batch`` times."""
    device, dtype = _device_dtype(components)
    tokenizer = components.tokenizer
    ids = tokenizer(
        prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)
    hidden = components.text_encoder(input_ids=ids).last_hidden_state
    return hidden.to(dtype).expand(batch, -1, -1)


def make_scheduler(components: SDComponents) -> Any:
    """A UniPC multistep scheduler with the noise schedule of the components' DDPM scheduler."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler.from_config(components.noise_scheduler.config)


@torch.no_grad()
def sample_latents(
    components: SDComponents,
    hidden: torch.Tensor,
    uncond: torch.Tensor,
    latents: torch.Tensor,
    steps: int,
    guidance: float,
) -> torch.Tensor:
    """Denoise ``latents`` (B, C, h, w) in ``steps`` UniPC steps, classifier-free guided against ``uncond``."""
    device, dtype = _device_dtype(components)
    scheduler = make_scheduler(components)
    scheduler.set_timesteps(steps, device=device)
    latents = latents.to(device, dtype) * scheduler.init_noise_sigma
    guided = guidance != 1.0
    context = torch.cat([uncond, hidden]) if guided else hidden
    for timestep in scheduler.timesteps:
        model_input = torch.cat([latents, latents]) if guided else latents
        model_input = scheduler.scale_model_input(model_input, timestep)
        noise = components.unet(model_input, timestep, encoder_hidden_states=context).sample
        if guided:
            noise_uncond, noise_text = noise.chunk(2)
            noise = noise_uncond + guidance * (noise_text - noise_uncond)
        latents = scheduler.step(noise, timestep, latents).prev_sample
    return latents


@torch.no_grad()
def decode_latents(components: SDComponents, latents: torch.Tensor) -> np.ndarray:
    """Latents -> uint8 images (B, H, W, 3) through the VAE decoder."""
    vae = components.vae
    images = vae.decode(latents.to(next(vae.parameters()).dtype) / vae.config.scaling_factor).sample
    return to_uint8(images)


@torch.no_grad()
def render(
    components: SDComponents,
    mapper: MappingNetwork,
    space: EmotionSpace,
    placeholder_id: int,
    config: GenerateConfig,
    emotions: Sequence[str],
    seeds: Sequence[int],
    prompt: str | None = None,
) -> np.ndarray:
    """One batch of images, uint8 (B, H, W, 3): image ``i`` shows ``emotions[i]`` drawn with ``seeds[i]``."""
    shape = latent_shape(components, config.width, config.height)
    samples, latents = initial_draws(space, emotions, seeds, shape)
    hidden = prompt_hidden_states(components, mapper, placeholder_id, prompt or config.prompt, samples)
    uncond = plain_prompt_hidden_states(components, config.negative_prompt, len(seeds))
    latents = sample_latents(components, hidden, uncond, latents, config.steps, config.guidance)
    return decode_latents(components, latents)


def placeholder_for(components: SDComponents) -> int:
    """The id of the emotion token, added to the tokenizer (and the embedding table) if it is not there yet."""
    return add_placeholder_token(components.tokenizer, components.text_encoder)


# --- submissions -----------------------------------------------------------------------------------


def submission_metadata(
    config: GenerateConfig, components: SDComponents, mapper: MappingNetwork, space: EmotionSpace
) -> SubmissionMetadata:
    """``submission.json`` of a run: settings, base model, per-image seeds, and digests of mapper and space."""
    seeds = {image.path: image.seed for image in plan_submission(config.per_emotion, config.seed)}
    base_model = components.model_id + (f"@{components.revision}" if components.revision else "")
    notes = {
        "seed": config.seed,
        "prompt": config.prompt,
        "negative_prompt": config.negative_prompt,
        "mapper": tensors_digest(mapper.state_dict()),
        "emotion_space": tensors_digest(space_tensors(space)),
        "dtype": str(_device_dtype(components)[1]).removeprefix("torch."),
    }
    return SubmissionMetadata(
        method=config.method,
        method_version=f"emogen-bench {__version__}",
        base_model=base_model,
        seed_policy=SEED_POLICY,
        seeds=seeds,
        sampler=SAMPLER,
        steps=config.steps,
        guidance=config.guidance,
        resolution=(config.width, config.height),
        notes="generation settings: " + json.dumps(notes, sort_keys=True),
    )


def _settings(metadata: SubmissionMetadata) -> dict[str, Any]:
    return {key: value for key, value in metadata.to_dict().items() if key != "seeds"}


def check_resume(out_dir: Path, expected: SubmissionMetadata) -> None:
    """Refuse to write into ``out_dir`` unless it is new, empty, or an earlier run with the same settings.

    Empty emotion folders and hidden temporary files count as empty: shards started together (torchrun,
    a Slurm array) make the folders before one of them has moved ``submission.json`` into place.

    An earlier run may have had fewer images per emotion (the folder then grows), never more: a
    file this run would not write makes the submission invalid, so it is named and nothing is written.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file; give a new folder for the submission")
    entries = sorted(entry.name for entry in out_dir.iterdir() if not entry.name.startswith("."))
    if all(name in EMOTION_NAMES and (out_dir / name).is_dir() and not any((out_dir / name).iterdir())
           for name in entries):
        return  # new, or what a shard starting at the same time left: empty emotion folders, a temporary file
    metadata_path = out_dir / SUBMISSION.metadata_file
    if not metadata_path.is_file():
        raise UsageError(
            f"--out {out_dir} is not empty and holds no {SUBMISSION.metadata_file}, so it is not a run of this "
            "generator to resume; give a new or empty folder (nothing was written)"
        )
    existing = read_metadata(metadata_path)
    if _settings(existing) != _settings(expected):
        differing = sorted(
            key for key in set(_settings(existing)) | set(_settings(expected))
            if _settings(existing).get(key) != _settings(expected).get(key)
        )
        raise UsageError(
            f"{metadata_path} was written by a run with other settings ({', '.join(differing)} differ): resuming "
            "would mix two runs in one submission. Use a new folder, or the same checkpoint and options (nothing "
            "was written)"
        )
    planned = expected.seeds or {}
    clashes = [path for path, seed in (existing.seeds or {}).items() if planned.get(path, seed) != seed]
    allowed = {SUBMISSION.metadata_file, *EMOTION_NAMES}
    extra = [name for name in entries if name not in allowed]
    for name in EMOTION_NAMES:
        folder = out_dir / name
        if folder.is_dir():
            extra.extend(f"{name}/{entry.name}" for entry in sorted(folder.iterdir()) if f"{name}/{entry.name}"
                         not in planned and not entry.name.startswith("."))
    if clashes or extra:
        listed = ", ".join((clashes + extra)[:5])
        raise UsageError(
            f"--out {out_dir} holds files this run would not write ({listed}"
            f"{', ...' if len(clashes) + len(extra) > 5 else ''}): an earlier run with more images per emotion? "
            "Use a new folder or the earlier --per-emotion (nothing was written)"
        )


def is_complete_image(path: Path, width: int, height: int) -> bool:
    """Whether ``path`` is a fully decodable RGB PNG of the expected size (a finished image of the run)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.format == "PNG" and image.mode == "RGB" and image.size == (width, height)
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def images_to_render(out_dir: Path, plan: Sequence[PlannedImage], width: int, height: int) -> list[PlannedImage]:
    """The images of ``plan`` not yet in ``out_dir``; a damaged existing file is a UsageError (nothing written)."""
    todo, corrupt = [], []
    for image in plan:
        target = out_dir / image.path
        if not target.exists():
            todo.append(image)
        elif not is_complete_image(target, width, height):
            corrupt.append(image.path)
    if corrupt:
        raise UsageError(
            f"{out_dir}: {len(corrupt)} existing file(s) are not complete {width}x{height} PNGs of this "
            f"run ({', '.join(corrupt[:5])}); delete them and run again to regenerate them (nothing was written)"
        )
    return todo


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate_submission` did: the folder, images written now and images kept from before."""

    out_dir: Path
    written: int
    kept: int
    metadata_path: Path
    paths: tuple[str, ...] = field(default=())


def generate_submission(
    config: GenerateConfig,
    components: SDComponents,
    mapper: MappingNetwork,
    space: EmotionSpace,
    out_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
) -> Path:
    """Write a benchmark submission ``out_dir/<emotion>/<emotion>_<i:04d>.png`` plus ``submission.json``.

    Resumable: images already there from the same run are kept (not re-rendered, not rewritten), the
    rest are rendered in batches. ``shard=(k, n)`` renders only every n-th batch starting at k, so n
    processes (one per GPU) can fill one folder together. Returns ``out_dir``;
    :func:`generate_submission_summary` says more.
    """
    return generate_submission_summary(config, components, mapper, space, out_dir, shard=shard).out_dir


def generate_submission_summary(
    config: GenerateConfig,
    components: SDComponents,
    mapper: MappingNetwork,
    space: EmotionSpace,
    out_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
) -> GenerationSummary:
    """:func:`generate_submission`, returning how many images (of this shard) were written and how many kept."""
    index, count = shard
    if not 0 <= index < count:
        raise UsageError(f"shard {index}/{count}: expected K/N with 0 <= K < N")
    out_dir = Path(out_dir)
    mapper.eval()
    placeholder_id = placeholder_for(components)
    expected = submission_metadata(config, components, mapper, space)
    check_resume(out_dir, expected)
    batches = [b for n, b in enumerate(submission_batches(plan_submission(config.per_emotion, config.seed),
                                                          config.batch_size)) if n % count == index]
    plan = [image for batch in batches for image in batch]
    todo = images_to_render(out_dir, plan, config.width, config.height)
    for name in EMOTION_NAMES:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    metadata_path = out_dir / SUBMISSION.metadata_file
    if not metadata_path.is_file() or read_metadata(metadata_path) != expected:  # a resumed run may add images
        write_metadata(out_dir, expected, overwrite=True)
    missing = {image.path for image in todo}
    chunks = [chunk for chunk in batches if any(i.path in missing for i in chunk)]
    for chunk in progress(chunks, desc="generating", enabled=config.show_progress, unit="batch"):
        pixels = render(
            components, mapper, space, placeholder_id, config, [i.emotion for i in chunk], [i.seed for i in chunk]
        )
        for image, array in zip(chunk, pixels):
            if image.path in missing:
                write_atomic(out_dir / image.path, png_bytes(array), overwrite=False)
    return GenerationSummary(
        out_dir, len(todo), len(plan) - len(todo), metadata_path, tuple(image.path for image in todo)
    )


# --- applications ----------------------------------------------------------------------------------


def _refuse_existing(out_dir: Path, names: Sequence[str]) -> None:
    taken = [name for name in names if (out_dir / name).exists()]
    if taken:
        raise UsageError(
            f"{out_dir} already holds {', '.join(taken[:3])}{', ...' if len(taken) > 3 else ''}; "
            "give a new folder (nothing was overwritten)"
        )


def image_grid(
    tiles: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str], column_labels: Sequence[str]
) -> Image.Image:
    """A labelled grid (rows x columns) of equally sized uint8 tiles, drawn with Pillow's default font."""
    tile_h, tile_w = tiles[0][0].shape[:2]
    left, top, pad = 110, 20, 2
    grid = Image.new(
        "RGB", (left + len(column_labels) * (tile_w + pad), top + len(row_labels) * (tile_h + pad)), "white"
    )
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(column_labels):
        draw.text((left + c * (tile_w + pad) + 2, 4), label, fill="black")
    for r, label in enumerate(row_labels):
        draw.text((4, top + r * (tile_h + pad) + tile_h // 2 - 5), label, fill="black")
        for c, tile in enumerate(tiles[r]):
            grid.paste(Image.fromarray(tile, mode="RGB"), (left + c * (tile_w + pad), top + r * (tile_h + pad)))
    return grid


def _save_png(path: Path, image: Image.Image) -> None:
    with atomic_writer(path, overwrite=False) as handle:
        image.save(handle, format="PNG")


def emotion_transfer(
    config: GenerateConfig,
    components: SDComponents,
    mapper: MappingNetwork,
    space: EmotionSpace,
    out_dir: str | Path,
    *,
    objects: Sequence[str] = TRANSFER_OBJECTS,
    emotions: Sequence[str] = EMOTION_NAMES,
) -> dict[str, Any]:
    """Emotion transfer: the prompt ``"<emotion> <object>"`` for each emotion and neutral object.

    Writes ``<emotion>_<object>.png`` per pair, ``transfer.png`` (emotions x objects) and
    ``transfer.json`` (prompts and seeds); the seed of a pair is :func:`image_seed` of the emotion
    and the object's index, so every object of one emotion starts from the same draws.
    """
    out_dir = Path(out_dir)
    files = [f"{e}_{o}.png" for e in emotions for o in objects]
    _refuse_existing(out_dir, [*files, "transfer.png", "transfer.json"])
    out_dir.mkdir(parents=True, exist_ok=True)
    placeholder_id = placeholder_for(components)
    mapper.eval()
    rows: list[list[np.ndarray]] = []
    records = []
    for emotion in progress(emotions, desc="emotion transfer", enabled=config.show_progress):
        seed = image_seed(config.seed, EMOTION_IDS[emotion], 0)
        row = []
        for obj in objects:
            prompt = f"{PLACEHOLDER} {obj}"
            pixels = render(components, mapper, space, placeholder_id, config, [emotion], [seed], prompt)[0]
            write_atomic(out_dir / f"{emotion}_{obj}.png", png_bytes(pixels), overwrite=False)
            records.append({"emotion": emotion, "object": obj, "prompt": prompt, "seed": seed,
                            "file": f"{emotion}_{obj}.png"})
            row.append(pixels)
        rows.append(row)
    _save_png(out_dir / "transfer.png", image_grid(rows, emotions, objects))
    document = {"application": "emotion transfer", "settings": _application_settings(config), "images": records}
    write_json_atomic(out_dir / "transfer.json", document, overwrite=False)
    return document


def _application_settings(config: GenerateConfig) -> dict[str, Any]:
    return {"sampler": SAMPLER, "steps": config.steps, "guidance": config.guidance,
            "resolution": [config.width, config.height], "seed": config.seed}


def fusion_pairs(emotions: Sequence[str] = EMOTION_NAMES) -> list[tuple[str, str]]:
    """All unordered pairs of distinct emotions (28 for the eight)."""
    return list(itertools.combinations(emotions, 2))


@torch.no_grad()
def fused_hidden_states(
    components: SDComponents,
    mapper: MappingNetwork,
    placeholder_id: int,
    first: torch.Tensor,
    second: torch.Tensor,
) -> torch.Tensor:
    """Hidden states of the prompt ``"<emotion> <emotion>"``: the first token gets ``first``, the second ``second``.

    Both emotion samples (B, 768) go through the mapper; the two placeholder positions of the prompt
    receive the two mapped embeddings, the rest of the prompt is encoded as usual.
    """
    device, dtype = _device_dtype(components)
    mapper_parameter = next(mapper.parameters())
    mapped = mapper(torch.cat([first, second]).to(mapper_parameter.device, mapper_parameter.dtype))
    text_dtype = next(components.text_encoder.parameters()).dtype
    mapped = mapped.to(device, text_dtype)
    batch = first.shape[0]
    ids = emotion_prompt_ids(components.tokenizer, f"{PLACEHOLDER} {PLACEHOLDER}").to(device)
    ids = ids.reshape(1, -1).expand(batch, -1)
    embeds = torch.stack([mapped[:batch], mapped[batch:]], dim=1)
    hidden = encode_prompt(components.text_encoder, ids, placeholder_id, embeds)
    return hidden.to(dtype)


@torch.no_grad()
def emotion_fusion(
    config: GenerateConfig,
    components: SDComponents,
    mapper: MappingNetwork,
    space: EmotionSpace,
    out_dir: str | Path,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Emotion fusion: two emotion embeddings in one prompt, for every pair of emotions (28 by default).

    Writes ``<first>+<second>.png`` per pair, ``fusion.png`` (a grid, first emotion by row) and
    ``fusion.json``. Each emotion's draw uses the same seed in every pair it appears in.
    """
    out_dir = Path(out_dir)
    pairs = list(pairs) if pairs is not None else fusion_pairs()
    files = [f"{a}+{b}.png" for a, b in pairs]
    _refuse_existing(out_dir, [*files, "fusion.png", "fusion.json"])
    out_dir.mkdir(parents=True, exist_ok=True)
    placeholder_id = placeholder_for(components)
    mapper.eval()
    shape = latent_shape(components, config.width, config.height)
    records, pictures = [], {}
    for first, second in progress(pairs, desc="emotion fusion", enabled=config.show_progress):
        seed_a = image_seed(config.seed, EMOTION_IDS[first], 0)
        seed_b = image_seed(config.seed, EMOTION_IDS[second], 0)
        sample_a, latents = initial_draws(space, [first], [seed_a], shape)
        sample_b, _ = initial_draws(space, [second], [seed_b], shape)
        hidden = fused_hidden_states(components, mapper, placeholder_id, sample_a, sample_b)
        uncond = plain_prompt_hidden_states(components, config.negative_prompt, 1)
        latents = sample_latents(components, hidden, uncond, latents, config.steps, config.guidance)
        pixels = decode_latents(components, latents)[0]
        name = f"{first}+{second}.png"
        write_atomic(out_dir / name, png_bytes(pixels), overwrite=False)
        pictures[first, second] = pixels
        records.append({"emotions": [first, second], "seeds": [seed_a, seed_b], "file": name})
    firsts = list(dict.fromkeys(a for a, _ in pairs))
    seconds = list(dict.fromkeys(b for _, b in pairs))
    blank = np.full_like(next(iter(pictures.values())), 255)
    tiles = [[pictures.get((a, b), blank) for b in seconds] for a in firsts]
    _save_png(out_dir / "fusion.png", image_grid(tiles, firsts, seconds))
    document = {"application": "emotion fusion", "prompt": f"{PLACEHOLDER} {PLACEHOLDER}",
                "settings": _application_settings(config), "images": records}
    write_json_atomic(out_dir / "fusion.json", document, overwrite=False)
    return document


@dataclass(frozen=True)
class DecompositionConfig:
    """Emotion decomposition: ``samples`` emotion-space draws per emotion, the ``top_k`` closest attributes."""

    samples: int = 64
    top_k: int = DECOMPOSITION_TOP_K
    seed: int = DEFAULT_SEED
    pooled_mode: str = "eos"


@torch.no_grad()
def mapped_text_embeddings(
    components: SDComponents,
    mapper: MappingNetwork,
    space: EmotionSpace,
    emotion: str,
    config: DecompositionConfig,
) -> torch.Tensor:
    """Pooled, projected text embeddings (samples, H) of the emotion prompt for ``config.samples`` draws.

    The same embedding the attribute loss compares with the attribute vocabulary.
    """
    from reference.conditioning import pooled_embedding

    placeholder_id = placeholder_for(components)
    device = next(components.text_encoder.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(image_seed(config.seed, EMOTION_IDS[emotion], 0))
    draws = space.sample(emotion, config.samples, generator).float()
    mapper_parameter = next(mapper.parameters())
    embeds = mapper(draws.to(mapper_parameter.device, mapper_parameter.dtype))
    text_dtype = next(components.text_encoder.parameters()).dtype
    ids = emotion_prompt_ids(components.tokenizer).to(device).reshape(1, -1).expand(config.samples, -1)
    hidden = encode_prompt(components.text_encoder, ids, placeholder_id, embeds.to(device, text_dtype))
    pooled = pooled_embedding(hidden, ids, components.tokenizer.eos_token_id, mode=config.pooled_mode)
    projection = components.text_projection
    return projection(pooled.to(next(projection.parameters()).dtype)).float().cpu()


def decomposition_table(
    mapped: dict[str, torch.Tensor], attribute_embeds: torch.Tensor, attributes: Sequence[str], top_k: int
) -> dict[str, list[tuple[str, float]]]:
    """Per emotion, the ``top_k`` attributes by mean cosine similarity over that emotion's mapped embeddings."""
    table = {}
    for emotion, embeds in mapped.items():
        similarity = F.normalize(embeds.double(), dim=-1) @ F.normalize(attribute_embeds.double(), dim=-1).T
        mean = similarity.mean(dim=0)
        order = torch.sort(mean, descending=True, stable=True).indices[:top_k].tolist()
        table[emotion] = [(attributes[j], float(mean[j])) for j in order]
    return table


def decomposition_markdown(table: dict[str, list[tuple[str, float]]]) -> str:
    """The decomposition as a Markdown table: one row per emotion, attribute (similarity) per rank."""
    width = max(len(entries) for entries in table.values())
    lines = ["| emotion | " + " | ".join(f"#{rank + 1}" for rank in range(width)) + " |",
             "|---|" + "---|" * width]
    for emotion, entries in table.items():
        lines.append(f"| {emotion} | " + " | ".join(f"{name} ({score:.3f})" for name, score in entries) + " |")
    return "\n".join(lines) + "\n"


def decomposition_figure(table: dict[str, list[tuple[str, float]]]) -> Image.Image:
    """The decomposition as a picture: one row per emotion, its attributes as bars scaled by similarity."""
    width = max(len(entries) for entries in table.values())
    cell_w, cell_h, left = 150, 28, 110
    figure = Image.new("RGB", (left + width * cell_w, 24 + len(table) * cell_h), "white")
    draw = ImageDraw.Draw(figure)
    draw.text((4, 4), "emotion decomposition: attributes closest to each emotion's mapped embedding", fill="black")
    for r, (emotion, entries) in enumerate(table.items()):
        y = 24 + r * cell_h
        draw.text((4, y + 8), emotion, fill="black")
        for c, (name, score) in enumerate(entries):
            x = left + c * cell_w
            bar = int((cell_w - 8) * max(0.0, min(1.0, (score + 1) / 2)))
            draw.rectangle((x, y + 2, x + bar, y + cell_h - 4), fill=(200, 220, 255))
            draw.text((x + 3, y + 8), f"{name[:16]} {score:.2f}", fill="black")
    return figure


def emotion_decomposition(
    config: DecompositionConfig,
    components: SDComponents,
    mapper: MappingNetwork,
    space: EmotionSpace,
    attribute_embeds: torch.Tensor,
    attributes: Sequence[str],
    out_dir: str | Path,
    *,
    emotions: Sequence[str] = EMOTION_NAMES,
) -> dict[str, list[tuple[str, float]]]:
    """Emotion decomposition: writes ``decomposition.{json,md,png}`` and returns the table.

    ``attribute_embeds`` (N, H) are the attribute vocabulary's CLIP text embeddings, as the attribute
    loss uses them (pooled and projected), in the order of ``attributes``.
    """
    out_dir = Path(out_dir)
    names = ["decomposition.json", "decomposition.md", "decomposition.png"]
    _refuse_existing(out_dir, names)
    out_dir.mkdir(parents=True, exist_ok=True)
    mapper.eval()
    mapped = {emotion: mapped_text_embeddings(components, mapper, space, emotion, config) for emotion in emotions}
    table = decomposition_table(mapped, attribute_embeds.float().cpu(), list(attributes), config.top_k)
    document = {
        "application": "emotion decomposition",
        "samples_per_emotion": config.samples,
        "seed": config.seed,
        "pooled": config.pooled_mode,
        "attributes": len(attributes),
        "table": {emotion: [{"attribute": name, "cosine": score} for name, score in entries]
                  for emotion, entries in table.items()},
    }
    write_json_atomic(out_dir / "decomposition.json", document, overwrite=False)
    write_atomic(out_dir / "decomposition.md", decomposition_markdown(table), overwrite=False)
    _save_png(out_dir / "decomposition.png", decomposition_figure(table))
    return table


__all__ = [
    "GenerateConfig",
    "DecompositionConfig",
    "GenerationSummary",
    "PlannedImage",
    "decomposition_table",
    "emotion_decomposition",
    "emotion_fusion",
    "emotion_transfer",
    "fusion_pairs",
    "generate_submission",
    "generate_submission_summary",
    "image_seed",
    "plan_submission",
]
