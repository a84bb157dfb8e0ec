"""Write stand-ins of the benchmark's weight files, in the REAL layouts, into a folder.

Each ``write_*`` function writes one artifact under its real file name (or
folder layout) with random, seeded weights and returns the path a loader takes.
The key layouts are written out here independently of the loaders, from the
published descriptions (PROTOCOL.md sections 3-5), so a loader that drifts from
the real layout fails against these files.  Other tests use them to populate a
fake weights cache; only the values are fake.

Real-size files: AlexNet ~244 MB, ResNet-50 ~100 MB each; the rest are tiny.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

EMOTIONS: tuple[str, ...] = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")

#: Real file names, by artifact id.
FILE_NAMES: dict[str, str] = {
    "inception-fid": "inception-2015-12-05.pt",
    "alexnet-lpips-trunk": "alexnet-owt-7be5be79.pth",
    "lpips-alex-v0.1": "alex.pth",
    "emo-head-clip": "time_2023-11-12_03-29-best.pth",
    "resnet50-imagenet-v1": "resnet50-0676ba61.pth",
    "resnet50-places365": "resnet50_places365.pth.tar",
    "emo-resnet50-emoset": "2023-08-22-best.pth",
}

#: The ResNet-50 children that EmoGen's encoder stores again as ``backbone.0`` .. ``backbone.7``.
_BACKBONE = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def random_state_dict(template: Mapping[str, torch.Tensor], seed: int, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """Seeded random tensors with the keys, shapes and dtypes of ``template`` (may live on the meta device).

    BatchNorm running variances are positive, counters are integers, everything
    else is N(0, scale^2): finite outputs through a deep network.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, tensor in template.items():
        if not tensor.is_floating_point():
            state[key] = torch.zeros(tensor.shape, dtype=tensor.dtype)
        elif key.endswith("running_var"):
            state[key] = torch.rand(tensor.shape, generator=generator) + 0.5
        elif key.endswith(".weight") and tensor.dim() == 1:  # norm scales
            state[key] = 1.0 + scale * torch.randn(tensor.shape, generator=generator)
        else:
            state[key] = scale * torch.randn(tensor.shape, generator=generator)
    return state


def _meta_state(build) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    with torch.device("meta"):
        return build().state_dict()


def _save(obj: object, folder: Path, name: str, **kwargs) -> Path:  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(obj, path, **kwargs)
    return path


# ---- inception-fid -------------------------------------------------------------------------------


class _FakeInceptionLayers(nn.Module):
    """Stand-in for the NVlabs ``layers`` submodule: normalised image -> (N, feature_dim, 1, 1)."""

    def __init__(self, feature_dim: int = 2048) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=3, stride=4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.expand = nn.Conv2d(8, feature_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(torch.relu(self.pool(self.conv(x))))


class FakeInception(nn.Module):
    """Same call interface as NVlabs' ``inception-2015-12-05.pt``, tiny weights.

    ``model(images, return_features=True)`` takes float images in [0, 255] of
    any size, resizes them to 299x299 and returns (N, 2048) features; without
    ``return_features`` it returns (N, 1008) logits.  ``model.layers`` takes
    already resized images scaled to [-1, 1] (clean-fid calls it that way).
    ``feature_dim`` other than 2048 makes a smaller stand-in (the extractor reads
    the size from the model), for tests where FID's d x d algebra would dominate.
    """

    def __init__(self, feature_dim: int = 2048) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.layers = _FakeInceptionLayers(feature_dim)
        self.output = nn.Linear(feature_dim, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = nn.functional.interpolate(img.float(), size=(299, 299), mode="bilinear", align_corners=False)
        features = self.layers((x - 128.0) / 128.0).reshape(-1, self.feature_dim)
        if return_features:
            return features
        return self.output(features)


def write_inception_fid(
    folder: Path, seed: int = 0, name: str = FILE_NAMES["inception-fid"], *, feature_dim: int = 2048
) -> Path:
    """A TorchScript archive with the NVlabs Inception's interface (see :class:`FakeInception`)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated; the real file is TorchScript
        torch.manual_seed(seed)
        torch.jit.save(torch.jit.script(FakeInception(feature_dim).eval()), str(path))
    return path


# ---- LPIPS (AlexNet trunk + linear layers) ---------------------------------------------------------


def alexnet_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision AlexNet layout (``alexnet-owt-7be5be79.pth``): ``features.{0,3,6,8,10}``, ``classifier.{1,4,6}``."""
    from torchvision.models import alexnet

    return random_state_dict(_meta_state(alexnet), seed)


def write_alexnet_trunk(folder: Path, seed: int = 0, name: str = FILE_NAMES["alexnet-lpips-trunk"]) -> Path:
    """A real-size (~244 MB) torchvision AlexNet state dict with random weights."""
    return _save(alexnet_state_dict(seed), folder, name)


def lpips_linear_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """``alex.pth`` layout: ``lin0..lin4.model.1.weight`` of shape (1, C, 1, 1), non-negative as in LPIPS."""
    generator = torch.Generator().manual_seed(seed)
    channels = (64, 192, 384, 256, 256)
    return {f"lin{i}.model.1.weight": torch.rand((1, c, 1, 1), generator=generator) for i, c in enumerate(channels)}


def write_lpips_linear(folder: Path, seed: int = 0, name: str = FILE_NAMES["lpips-alex-v0.1"]) -> Path:
    return _save(lpips_linear_state_dict(seed), folder, name)


# ---- CLIP ------------------------------------------------------------------------------------------

#: A tiny CLIP: the real architecture, toy sizes (ViT-L/14 is 1024 wide, 24 layers, 224 px, projection 768).
TINY_CLIP = {
    "text": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                 vocab_size=99, max_position_embeddings=16, pad_token_id=1, bos_token_id=0, eos_token_id=2),
    "vision": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                   image_size=32, patch_size=8),
    "projection_dim": 16,
}


def tiny_clip_model(seed: int = 0, projection_dim: int = TINY_CLIP["projection_dim"]):  # type: ignore[no-untyped-def]
    """A full ``CLIPModel`` (text and vision towers) of the toy size, seeded, in eval mode.

    ``projection_dim=768`` gives ViT-L/14's embedding size, which the real-layout
    emotion head (768 -> 8) needs.
    """
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(text_config=TINY_CLIP["text"], vision_config=TINY_CLIP["vision"], projection_dim=projection_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPModel(config).eval()


def write_clip_snapshot(folder: Path, seed: int = 0, *, projection_dim: int = TINY_CLIP["projection_dim"]) -> Path:
    """A snapshot folder like ``openai/clip-vit-large-patch14``: a full CLIPModel (safetensors) + image processor.

    As in the real snapshot, the weights include the text tower, and the
    projection size (``projection_dim``) lives in the top-level config.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tiny_clip_model(seed, projection_dim).save_pretrained(folder, safe_serialization=True)
    size = TINY_CLIP["vision"]["image_size"]
    config = {"size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size}, "resample": 3,
              "image_processor_type": "CLIPImageProcessor"}  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


def pil_clip_processor(source: Path | Mapping[str, object]):  # type: ignore[no-untyped-def]
    """transformers' own PIL-backend CLIP image processor (a peer of the benchmark's pipeline).

    ``CLIPImageProcessorPil`` in transformers 5, ``CLIPImageProcessor`` (PIL
    only) in 4.x; from a snapshot folder or a ``preprocessor_config`` dict.
    """
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    if isinstance(source, Mapping):
        return cls.from_dict(dict(source))
    return cls.from_pretrained(source, local_files_only=True)


# ---- CLIP emotion head -----------------------------------------------------------------------------


def emotion_head_state_dict(
    seed: int = 0, *, weight_scale: float = 0.05, bias_scale: float = 1.0
) -> dict[str, torch.Tensor]:
    """The released head's layout: ``fc.weight`` (8, 768), ``fc.bias`` (8,), N(0, scale^2) entries."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "fc.weight": weight_scale * torch.randn((8, 768), generator=generator),
        "fc.bias": bias_scale * torch.randn(8, generator=generator),
    }


def write_emotion_head(
    folder: Path,
    seed: int = 0,
    name: str = FILE_NAMES["emo-head-clip"],
    *,
    weight_scale: float = 0.05,
    bias_scale: float = 1.0,
) -> Path:
    """The head file; ``bias_scale=0`` makes the prediction depend on the image rather than on the bias."""
    return _save(emotion_head_state_dict(seed, weight_scale=weight_scale, bias_scale=bias_scale), folder, name)


# ---- ResNet-50: ImageNet V1 and Places365 ------------------------------------------------------------


def resnet50_state_dict(
    seed: int = 0, num_classes: int = 1000, *, num_batches_tracked: bool = True, fc_scale: float = 1.0
) -> dict[str, torch.Tensor]:
    """torchvision ResNet-50 layout (``conv1``, ``bn1``, ``layer1..4``, ``fc``) with random weights.

    ``fc_scale`` multiplies the classifier (``fc.weight``, ``fc.bias``): the random
    trunk's features are large, so at 1.0 the softmax is saturated (a max
    probability of 1.0 for every image); a small scale gives probabilities that
    depend on the image.
    """
    from torchvision.models import resnet50

    state = random_state_dict(_meta_state(lambda: resnet50(num_classes=num_classes)), seed)
    state["fc.weight"] = state["fc.weight"] * fc_scale
    state["fc.bias"] = state["fc.bias"] * fc_scale
    if not num_batches_tracked:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    return state


def write_resnet50_imagenet(
    folder: Path, seed: int = 0, name: str = FILE_NAMES["resnet50-imagenet-v1"], *, fc_scale: float = 1.0
) -> Path:
    return _save(resnet50_state_dict(seed, fc_scale=fc_scale), folder, name)


def places365_checkpoint(seed: int = 0, *, fc_scale: float = 1.0) -> dict[str, object]:
    """The CSAIL training checkpoint: ``epoch``, ``arch``, ``state_dict`` (keys ``module.*``), ``best_prec1``.

    Saved by PyTorch 0.2 (2017): no BatchNorm ``num_batches_tracked`` buffers yet.
    """
    state = resnet50_state_dict(seed, num_classes=365, num_batches_tracked=False, fc_scale=fc_scale)
    return {
        "epoch": 22,
        "arch": "resnet50",
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "best_prec1": 54.74,
    }


def write_resnet50_places365(
    folder: Path,
    seed: int = 0,
    name: str = FILE_NAMES["resnet50-places365"],
    *,
    legacy_format: bool = True,
    fc_scale: float = 1.0,
) -> Path:
    """The Places365 checkpoint, by default in PyTorch's legacy (pre-1.6, non-zip) serialisation."""
    checkpoint = places365_checkpoint(seed, fc_scale=fc_scale)
    return _save(checkpoint, folder, name, _use_new_zipfile_serialization=not legacy_format)


# ---- EmoSet ResNet-50 emotion encoder ---------------------------------------------------------------


def emoset_resnet50_state_dict(seed: int = 0, *, fc_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """The released ``2023-08-22-best.pth`` layout.

    ``cnn.*``: a full torchvision ResNet-50 (``cnn.fc`` included); ``backbone.0..7.*``:
    the same tensors again (conv1, bn1, relu, maxpool, layer1..layer4, shared);
    ``fc_1`` Linear(2048, 768); ``fc_2.2`` Linear(768, 8), multiplied by ``fc_scale``
    (small values keep the emotion softmax away from saturation).
    """
    cnn = resnet50_state_dict(seed)
    state = {f"cnn.{k}": v for k, v in cnn.items()}
    for index, child in enumerate(_BACKBONE):
        for key, value in cnn.items():
            if key.startswith(f"{child}."):
                state[f"backbone.{index}.{key[len(child) + 1:]}"] = value  # the same tensor, as in the real file
    generator = torch.Generator().manual_seed(seed + 1)
    state["fc_1.weight"] = 0.02 * torch.randn((768, 2048), generator=generator)
    state["fc_1.bias"] = 0.02 * torch.randn(768, generator=generator)
    state["fc_2.2.weight"] = 0.05 * fc_scale * torch.randn((8, 768), generator=generator)
    state["fc_2.2.bias"] = 0.05 * fc_scale * torch.randn(8, generator=generator)
    return state


def write_emoset_resnet50(
    folder: Path,
    seed: int = 0,
    name: str = FILE_NAMES["emo-resnet50-emoset"],
    *,
    wrap: str | None = None,
    module_prefix: bool = False,
    state: Mapping[str, torch.Tensor] | None = None,
    fc_scale: float = 1.0,
) -> Path:
    """Write the encoder's state dict (or ``state``), raw or as ``{wrap: ...}``, keys optionally ``module.``-prefixed.

    Keys sharing one tensor are stored once, as in the real 108.9 MB file.
    """
    state = dict(emoset_resnet50_state_dict(seed, fc_scale=fc_scale) if state is None else state)
    if module_prefix:
        state = {f"module.{k}": v for k, v in state.items()}
    return _save(state if wrap is None else {wrap: state, "epoch": 10}, folder, name)


# ---- emotion space -------------------------------------------------------------------------------------


def write_emo_space(folder: Path, seed: int = 0) -> Path:
    """The 16 files ``<emotion>_{mean,std}_v2.pt``: float32 tensors of shape (768,); returns the folder."""
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for emotion in EMOTIONS:
        torch.save(torch.randn(768, generator=generator) * 0.6, folder / f"{emotion}_mean_v2.pt")
        torch.save(torch.rand(768, generator=generator) * 0.6 + 0.1, folder / f"{emotion}_std_v2.pt")
    return folder


# ---- attribute tables ------------------------------------------------------------------------------------

#: A few real attribute names (objects, scenes, and ones in both vocabularies).
FAKE_OBJECTS = ("wall_clock", "plastic_bag", "dinosaur", "cake", "tower", "castle")
FAKE_SCENES = ("amusement_park", "cemetery", "jail_cell", "tower", "castle")


def coefficient_table(names: tuple[str, ...], seed: int) -> dict[str, np.ndarray]:
    """attribute -> float32 (8,) softmax over the emotions, as in ``attr_coefficient_emotion_*.pkl``."""
    rng = np.random.default_rng(seed)
    table = {}
    for name in names:
        logits = rng.normal(size=8) * 3.0
        probs = np.exp(logits - logits.max())
        table[name] = (probs / probs.sum()).astype(np.float32)
    return table


def write_attr_coefficients(folder: Path, seed: int = 0) -> Path:
    """``attr_coefficient_emotion_{object,scene}.pkl`` (pickled dicts of numpy arrays); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, names, offset in (("object", FAKE_OBJECTS, 0), ("scene", FAKE_SCENES, 1)):
        with open(folder / f"attr_coefficient_emotion_{kind}.pkl", "wb") as handle:
            pickle.dump(coefficient_table(names, seed + offset), handle, protocol=4)
    return folder


def write_attr_vocabulary(folder: Path) -> Path:
    """``all_attribute_object_scene.pkl`` (a list of names); ``object_attr.pkl``, ``scene_attr.pkl``.

    The last two map ``"attr_<emotion>"`` to a list of names; returns the folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    everything = list(dict.fromkeys(FAKE_OBJECTS + FAKE_SCENES))
    objects = {f"attr_{e}": [FAKE_OBJECTS[i % len(FAKE_OBJECTS)]] for i, e in enumerate(EMOTIONS)}
    scenes = {f"attr_{e}": [FAKE_SCENES[i % len(FAKE_SCENES)]] for i, e in enumerate(EMOTIONS)}
    files = {"all_attribute_object_scene.pkl": everything, "object_attr.pkl": objects, "scene_attr.pkl": scenes}
    for name, obj in files.items():
        with open(folder / name, "wb") as handle:
            pickle.dump(obj, handle, protocol=4)
    return folder
