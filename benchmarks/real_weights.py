"""A full weight set at the real sizes, random values, in the real file layouts, and an override file for it.

What a whole ``emogen-bench evaluate`` process needs to run as it would on a
user's machine (load, hash-check and build every model from files) while the
pinned weights cannot be downloaded here.  The ResNets, AlexNet and the CLIP
emotion head come from ``tests/checkpoints.py`` (the layouts the loaders are
tested against); this module adds the two the tests write small:

- CLIP: a ``CLIPModel`` with the real ViT-L/14 vision tower *and* the real text
  tower (as in the snapshot, whose ``model.safetensors`` carries both: 1.7 GB
  in float32, which is what the weights check hashes);
- Inception: torchvision's Inception-v3 (2048-d pool) behind the NVlabs
  TorchScript interface (``model(img, return_features=True)`` on [0, 255]
  images, ``model.layers`` on resized [-1, 1] ones), saved as TorchScript.
  It stands in for ``inception-2015-12-05.pt`` (same convolutions; the NVlabs
  graph differs in small details such as its pooling).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from benchmarks.models import CLIP_PROCESSOR, CLIP_VIT_L14, InceptionLayers

#: The text tower of openai/clip-vit-large-patch14 (``config.json``).
CLIP_TEXT_L14: dict[str, object] = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
    "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768,
}  # fmt: skip


def _checkpoints():  # noqa: ANN202 - the tests' writers, which know the real layouts
    tests = Path(__file__).resolve().parents[1] / "tests"
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))
    import checkpoints

    return checkpoints


class NVlabsInception(nn.Module):
    """torchvision Inception-v3 behind the call interface of NVlabs' TorchScript ``inception-2015-12-05.pt``."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = InceptionLayers().layers

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = nn.functional.interpolate(img.float(), size=(299, 299), mode="bilinear", align_corners=False)
        return self.layers((x - 128.0) / 128.0).flatten(1)


def write_inception(folder: Path, seed: int = 0) -> Path:
    """The Inception stand-in as a TorchScript archive under the real file name."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "inception-2015-12-05.pt"
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        torch.jit.save(torch.jit.script(NVlabsInception().eval()), str(path))
    return path


def write_clip(folder: Path, seed: int = 0) -> Path:
    """A snapshot folder like ``openai/clip-vit-large-patch14``: full CLIPModel (safetensors) + processor config."""
    from transformers import CLIPConfig, CLIPModel

    vision = {k: v for k, v in CLIP_VIT_L14.items() if k != "projection_dim"}
    config = CLIPConfig(text_config=CLIP_TEXT_L14, vision_config=vision, projection_dim=768)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    processor = {**CLIP_PROCESSOR, "image_processor_type": "CLIPImageProcessor"}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2), encoding="utf-8")
    return folder


def write_real_weights(folder: Path) -> Path:
    """Every weight file the five metrics read, at real size; returns the override file that points at them.

    Written once per folder (``override.toml`` marks a finished set); about 2.8 GB.
    """
    override = folder / "override.toml"
    if override.is_file():
        return override
    ckpt = _checkpoints()
    paths = {
        "inception-fid": write_inception(folder / "inception"),
        "clip-vit-l14": write_clip(folder / "clip"),
        "emo-head-clip": ckpt.write_emotion_head(folder / "head", bias_scale=0.0),
        "resnet50-imagenet-v1": ckpt.write_resnet50_imagenet(folder / "imagenet", seed=1, fc_scale=0.01),
        "resnet50-places365": ckpt.write_resnet50_places365(folder / "places", seed=2, fc_scale=0.01),
        "emo-resnet50-emoset": ckpt.write_emoset_resnet50(folder / "emoset", seed=3, fc_scale=0.005),
        "alexnet-lpips-trunk": ckpt.write_alexnet_trunk(folder / "alexnet", seed=4),
    }
    text = "".join(f'[artifacts."{a}"]\npath = "{p.as_posix()}"\n' for a, p in paths.items())
    partial = override.with_suffix(".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(override)
    return override
