"""Stable Diffusion 1.5 components for EmoGen: loading them pinned and offline, and tiny stand-ins for tests.

The frozen parts of the method (PROTOCOL.md section 5) are the VAE, the U-Net, the CLIP ViT-L/14 text
encoder and its tokenizer from SD-1.5, plus CLIP's ``text_projection`` (768 -> 768, no bias), which SD-1.5
does not ship: the attribute loss compares the pooled, projected embedding of the placeholder prompt with
CLIP text embeddings, so the projection comes from ``openai/clip-vit-large-patch14`` (the same text tower
SD-1.5 was trained with; weights artifact ``clip-vit-l14``).

Nothing is downloaded at import or by default: a Hub id is read from the local Hugging Face cache (or the
benchmark's weight store) unless the caller allows downloads.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emogen_bench.errors import UsageError, WeightsError

#: Registry entry of Stable Diffusion 1.5 (``emogen_bench/weights/registry.toml``); the two values below
#: repeat that entry's Hub id and revision (a test checks that they agree).
SD_ARTIFACT = "sd-1.5"
DEFAULT_SD_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_SD_REVISION: str | None = "451f4fe16113bff5a5d2269ed5ad43b0592e9a14"
#: Where CLIP's text projection comes from by default: the weights artifact of CLIP ViT-L/14.
CLIP_PROJECTION_ARTIFACT = "clip-vit-l14"
#: The safetensors key of the projection in a ``CLIPModel`` / ``CLIPTextModelWithProjection`` file.
PROJECTION_KEYS = ("text_projection.weight",)
#: Sub-folders of the diffusers layout that EmoGen needs.
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
#: Context length of the CLIP text encoder.
MAX_LENGTH = 77

#: The SD-1.5 training noise schedule (used for the tiny components; a loaded model keeps its own config).
SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "steps_offset": 1,
}

#: Whole-word tokens of the tiny tokenizer: the emotions, the synthetic EmoSet's attributes and the
#: object prompts of emotion transfer (any other word still tokenises, letter by letter).
TINY_WORDS: tuple[str, ...] = (
    "amusement",
    "awe",
    "contentment",
    "excitement",
    "anger",
    "disgust",
    "fear",
    "sadness",
    "park",
    "mountain",
    "meadow",
    "stadium",
    "street",
    "garbage",
    "dump",
    "forest",
    "path",
    "cemetery",
    "person",
    "bag",
    "cup",
    "room",
    "a",
    "photo",
    "of",
    "and",
)
TINY_HIDDEN = 32


@dataclass
class SDComponents:
    """The frozen Stable Diffusion parts EmoGen trains against and generates with.

    ``noise_scheduler`` is the DDPM training schedule; samplers for generation are built from its config
    (``UniPCMultistepScheduler.from_config(components.noise_scheduler.config)``).  ``model_id`` and
    ``revision`` say which weights these are (a local folder has ``revision`` None).
    """

    tokenizer: Any
    text_encoder: nn.Module
    vae: nn.Module
    unet: nn.Module
    noise_scheduler: Any
    text_projection: nn.Linear
    model_id: str
    revision: str | None

    @property
    def hidden_size(self) -> int:
        """Width of the text encoder's token embeddings (768 for SD-1.5): the mapper's output size."""
        return int(self.text_encoder.config.hidden_size)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent pixel (8 for SD-1.5 and for the tiny VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SDComponents:
        """Move (and cast) every module in place; returns ``self``."""
        for module in (self.text_encoder, self.vae, self.unet, self.text_projection):
            # diffusers warns whenever .to() is given a dtype, even an unchanged one: pass it only to change it
            cast = {"dtype": dtype} if dtype is not None and dtype != next(module.parameters()).dtype else {}
            module.to(device=device, **cast)
        return self

    def describe(self) -> dict[str, Any]:
        """What a checkpoint or a submission records about these weights."""
        return {"model_id": self.model_id, "revision": self.revision, "hidden_size": self.hidden_size}


def freeze(components: SDComponents) -> SDComponents:
    """Turn off gradients and put every module in eval mode: in EmoGen only the mapper learns."""
    for module in (components.text_encoder, components.vae, components.unet, components.text_projection):
        module.requires_grad_(False)
        module.eval()
    return components


# ---- loading ---------------------------------------------------------------------------------------


def _looks_like_path(model: str) -> bool:
    """True for strings that can only be a folder (a Hub id is ``name`` or ``owner/name``)."""
    return model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1


def _store_snapshot(model: str, revision: str | None) -> Path | None:
    """The weight store's checked copy of SD-1.5 when ``model``/``revision`` are the registry pin and it is there."""
    if model != DEFAULT_SD_MODEL or revision != DEFAULT_SD_REVISION:
        return None
    from emogen_bench.weights import open_store

    store = open_store()
    if not store.is_present(SD_ARTIFACT):
        return None
    return store.path(SD_ARTIFACT)


def _check_folder(folder: Path) -> None:
    missing = [name for name in SUBFOLDERS if not (folder / name).is_dir()]
    if missing:
        raise WeightsError(
            f"{folder}: not a Stable Diffusion folder in the diffusers layout, missing sub-folder(s) "
            f"{', '.join(missing)} (expected {', '.join(SUBFOLDERS)}). Point to the folder that holds "
            "model_index.json, e.g. one written by StableDiffusionPipeline.save_pretrained."
        )


def _not_available(model: str, revision: str | None, error: Exception) -> WeightsError:
    pinned = model == DEFAULT_SD_MODEL and revision == DEFAULT_SD_REVISION
    fetch = f"run `emogen-bench weights fetch {SD_ARTIFACT}` (~4.3 GB), " if pinned else ""
    return WeightsError(
        f"Stable Diffusion {model!r} at revision {revision or 'main'} is not available locally and downloads are "
        f"not allowed ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). To fix: {fetch}"
        "allow downloads (allow_download=True, --allow-download), or pass a local folder in the diffusers layout "
        "(unet/, vae/, text_encoder/, tokenizer/, scheduler/)."
    )


def load_projection(source: str | Path | None, hidden_size: int, *, allow_download: bool = False) -> nn.Linear:
    """CLIP's text projection as a bias-free ``nn.Linear(hidden, hidden)``.

    ``source``: a weights artifact id (default ``clip-vit-l14``, resolved through the benchmark's store),
    a ``.safetensors`` file, or a folder holding ``model.safetensors`` with a ``text_projection.weight``.
    ``None`` gives the identity (for experiments without CLIP; the attribute loss then compares the raw
    pooled text features).
    """
    projection = nn.Linear(hidden_size, hidden_size, bias=False)
    with torch.no_grad():
        if source is None:
            projection.weight.copy_(torch.eye(hidden_size))
            return projection
        path = Path(source).expanduser()
        if not path.exists() and not _looks_like_path(str(source)):
            from emogen_bench.weights import open_store

            store = open_store()
            resolved = store.fetch([str(source)])[0] if allow_download else store.resolve(str(source))
            path = resolved.path
        file = path / "model.safetensors" if path.is_dir() else path
        if not file.is_file():
            raise WeightsError(
                f"{file}: no CLIP weights file for the text projection; give a model.safetensors of "
                f"openai/clip-vit-large-patch14 (or run `emogen-bench weights fetch {CLIP_PROJECTION_ARTIFACT}`)."
            )
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            key = next((k for k in PROJECTION_KEYS if k in handle.keys()), None)
            if key is None:
                raise WeightsError(f"{file}: has no {PROJECTION_KEYS[0]!r}; it is not a CLIP model with projection.")
            weight = handle.get_tensor(key)
        if tuple(weight.shape) != (hidden_size, hidden_size):
            raise WeightsError(
                f"{file}: text projection of shape {tuple(weight.shape)}, expected ({hidden_size}, {hidden_size}) "
                "for this text encoder; use the CLIP model whose text tower Stable Diffusion uses."
            )
        projection.weight.copy_(weight)
    return projection


def load_sd_components(
    model: str = DEFAULT_SD_MODEL,
    revision: str | None = DEFAULT_SD_REVISION,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    allow_download: bool = False,
    clip_text_projection_from: str | Path | None = CLIP_PROJECTION_ARTIFACT,
) -> SDComponents:
    """Load SD-1.5 (a Hub id at ``revision``, or a local diffusers folder) and CLIP's text projection.

    Local first: a folder is read as it is; the pinned default is taken from the weight store when
    ``emogen-bench weights fetch sd-1.5`` put it there, else from the Hugging Face cache
    (``local_files_only`` unless ``allow_download``).  Raises :class:`WeightsError` naming the model,
    the revision and the fix when the weights are not there.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(model).expanduser()
    if folder.is_dir():
        _check_folder(folder)
        source, kwargs, model_id, revision = str(folder), {}, str(folder.resolve()), None
    elif _looks_like_path(model):
        raise UsageError(
            f"{model}: no such folder; give a Stable Diffusion folder in the diffusers layout or a Hub id."
        )
    else:
        snapshot = _store_snapshot(model, revision)
        if snapshot is not None:
            source, kwargs = str(snapshot), {}
        else:
            source, kwargs = model, {"revision": revision, "local_files_only": not allow_download}
        model_id = model
    try:
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype, **kwargs)
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype, **kwargs)
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, **kwargs)
        scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler", **kwargs)
    except (OSError, ValueError) as error:
        if source == model:
            raise _not_available(model, revision, error) from None
        raise WeightsError(
            f"{source}: cannot load Stable Diffusion from this folder ({error}); check its files."
        ) from None
    tokenizer.model_max_length = MAX_LENGTH
    projection = load_projection(
        clip_text_projection_from, int(text_encoder.config.hidden_size), allow_download=allow_download
    )
    components = SDComponents(tokenizer, text_encoder, vae, unet, scheduler, projection, model_id, revision)
    return freeze(components.to(device=device, dtype=dtype))


# ---- tiny components for tests and the smoke run ---------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters (the base alphabet of the BPE)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def tiny_vocabulary(words: tuple[str, ...] = TINY_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A small CLIP BPE vocabulary and merge list: every byte, ``words`` as whole tokens, then BOS and EOS.

    EOS gets the highest id, as in CLIP, so an added token is the only id above it.
    """
    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in alphabet + [c + "</w>" for c in alphabet]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            if (current, piece) not in merges:
                merges.append((current, piece))
            current += piece
            vocab.setdefault(current, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def tiny_tokenizer(words: tuple[str, ...] = TINY_WORDS) -> Any:
    """A ``CLIPTokenizer`` over :func:`tiny_vocabulary`, 77 positions, padded with EOS like SD-1.5's.

    transformers 5 ignores vocab/merges given to the constructor, so the files are written to a
    temporary folder and read back with ``from_pretrained``.
    """
    from transformers import CLIPTokenizer

    vocab, merges = tiny_vocabulary(words)
    with tempfile.TemporaryDirectory(prefix="emogen-tiny-tokenizer-") as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
        (Path(folder) / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_LENGTH, pad_token="<|endoftext|>")


def tiny_sd_components(seed: int = 0) -> SDComponents:
    """Tiny, deterministic SD-shaped components built in code (hidden 32, latent factor 8, 77 positions).

    The weights are random (seeded; the caller's RNG state is left alone), frozen and in eval mode.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TINY_HIDDEN,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            projection_dim=TINY_HIDDEN,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        text_encoder = CLIPTextModel(text_config)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=64,
        )
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=TINY_HIDDEN,
            attention_head_dim=4,
            norm_num_groups=8,
        )
        projection = nn.Linear(TINY_HIDDEN, TINY_HIDDEN, bias=False)
    scheduler = DDPMScheduler(**SD15_SCHEDULER_CONFIG)
    return freeze(SDComponents(tokenizer, text_encoder, vae, unet, scheduler, projection, "tiny-sd", None))
