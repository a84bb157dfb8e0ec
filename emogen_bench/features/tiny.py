"""A tiny, deterministic model set built in code: the demo's and the tests' stand-ins for the real weights.

Every extractor is the real extractor class with the real preprocessing and
the real output names, around seeded toy networks: the Inception and the
ResNets become one strided convolution and a linear layer (same class counts),
CLIP becomes a two-layer ViT with a 16-d projection (and a 16 -> 8 head), and
LPIPS keeps the real AlexNet architecture with random weights but works at
128x128 instead of 512x512.  Feature sizes are therefore smaller (Inception
64-d, CLIP 16-d, LPIPS phi at 128 px), which changes no code path.  Every
extractor is marked ``smoke=True`` and its artifact digests read
``smoke:<sha256 of its configuration and seed>``: numbers computed with it mean
nothing and are labelled so.  Building all five takes about a second on a CPU.
Under ``protocol="emogen-paper-code"`` the tiny Inception is wrapped in the
released-code preprocessing (:class:`PaperCodeInceptionExtractor`), same weights.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from emogen_bench.errors import UsageError
from emogen_bench.features.base import FeatureExtractor
from emogen_bench.features.clip import HEAD_ARTIFACT_ID, VISION_ARTIFACT_ID, ClipExtractor
from emogen_bench.features.emoset import ARTIFACT_ID as EMOSET_ARTIFACT_ID
from emogen_bench.features.emoset import EmoSetExtractor
from emogen_bench.features.inception import ARTIFACT_ID as INCEPTION_ARTIFACT_ID
from emogen_bench.features.inception import InceptionExtractor
from emogen_bench.features.lpips import ALEX_CHANNELS, LINEAR_ARTIFACT_ID, TRUNK_ARTIFACT_ID, LpipsExtractor
from emogen_bench.features.semantic import IMAGENET_ARTIFACT_ID, PLACES_ARTIFACT_ID, SemanticExtractor
from emogen_bench.protocols import PAPER_CODE, get_protocol
from emogen_bench.task import EMOTIONS, PROTOCOL

#: Bump when any tiny model changes: it changes every smoke digest, hence every smoke cache key.
TINY_VERSION = 1
TINY_INCEPTION_DIM = 64
TINY_CLIP: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
    "projection_dim": 16,
}
TINY_LPIPS_SIZE = 128
IMAGENET_CLASSES = 1000
PLACES365_CLASSES = 365


def smoke_digest(config: dict[str, Any], seed: int) -> str:
    """``smoke:<sha256>`` of a tiny model's configuration, seed and :data:`TINY_VERSION`."""
    document = json.dumps({"config": config, "seed": seed, "version": TINY_VERSION}, sort_keys=True)
    return "smoke:" + hashlib.sha256(document.encode()).hexdigest()


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` under a private RNG state seeded with ``seed``; the module in eval mode, no gradients."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build()
    module.eval()
    module.requires_grad_(False)
    return module


class TinyInception(nn.Module):
    """The NVlabs Inception's interface in miniature: ``layers`` maps [-1, 1] images to ``(N, D, 1, 1)``."""

    def __init__(self, dim: int = TINY_INCEPTION_DIM) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, dim, 1)
        )

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        """Images already at 299x299 in [0, 255] -> ``(N, D)`` features (the network has no logits)."""
        return self.layers((img - 128) / 128).flatten(1)


def tiny_classifier(classes: int) -> nn.Module:
    """One strided convolution, global average pool, one linear layer: images -> ``classes`` logits."""
    return nn.Sequential(
        nn.Conv2d(3, 16, kernel_size=8, stride=8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, classes),
    )


def tiny_inception(seed: int = 0) -> InceptionExtractor:
    config = {"model": "tiny-inception", "dim": TINY_INCEPTION_DIM}
    model = _seeded(seed, TinyInception)
    return InceptionExtractor(model, {INCEPTION_ARTIFACT_ID: smoke_digest(config, seed)}, smoke=True)


def tiny_inception_paper_code(seed: int = 0) -> InceptionExtractor:
    """The tiny Inception (same weights as :func:`tiny_inception`) behind the released code's preprocessing."""
    from emogen_bench.features.paper_code import PaperCodeInceptionExtractor

    config = {"model": "tiny-inception", "dim": TINY_INCEPTION_DIM}
    model = _seeded(seed, TinyInception)
    return PaperCodeInceptionExtractor(model, {INCEPTION_ARTIFACT_ID: smoke_digest(config, seed)}, smoke=True)


def tiny_clip(seed: int = 0) -> ClipExtractor:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from emogen_bench.features.clip_pixels import ClipPixelSettings
    from emogen_bench.models.emotion_head import EmotionHead

    config = CLIPVisionConfig(**TINY_CLIP)
    vision = _seeded(seed, lambda: CLIPVisionModelWithProjection(config))
    head = _seeded(seed + 1, lambda: EmotionHead(embed_dim=TINY_CLIP["projection_dim"]))
    side = TINY_CLIP["image_size"]
    settings = ClipPixelSettings(shortest_edge=side, crop_height=side, crop_width=side)
    artifacts = {
        VISION_ARTIFACT_ID: smoke_digest({"model": "tiny-clip-vision", **TINY_CLIP}, seed),
        HEAD_ARTIFACT_ID: smoke_digest({"model": "tiny-emotion-head", "dim": TINY_CLIP["projection_dim"]}, seed + 1),
    }
    return ClipExtractor(vision, settings, head, artifacts, smoke=True)


def tiny_semantic(seed: int = 0) -> SemanticExtractor:
    imagenet = _seeded(seed, lambda: tiny_classifier(IMAGENET_CLASSES))
    places = _seeded(seed + 1, lambda: tiny_classifier(PLACES365_CLASSES))
    artifacts = {
        IMAGENET_ARTIFACT_ID: smoke_digest({"model": "tiny-classifier", "classes": IMAGENET_CLASSES}, seed),
        PLACES_ARTIFACT_ID: smoke_digest({"model": "tiny-classifier", "classes": PLACES365_CLASSES}, seed + 1),
    }
    return SemanticExtractor(imagenet, places, artifacts, smoke=True)


def tiny_emoset(seed: int = 0) -> EmoSetExtractor:
    model = _seeded(seed, lambda: tiny_classifier(len(EMOTIONS)))
    config = {"model": "tiny-classifier", "classes": len(EMOTIONS)}
    return EmoSetExtractor(model, {EMOSET_ARTIFACT_ID: smoke_digest(config, seed)}, smoke=True)


def _random_lpips_alex(seed: int) -> nn.Module:
    import lpips

    with warnings.catch_warnings():
        # lpips passes torchvision's deprecated ``pretrained=`` argument; nothing is downloaded.
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    generator = torch.Generator().manual_seed(seed + 1)
    for lin in model.lins:  # non-negative, like the released alex.pth (LPIPS clamps them in training)
        conv = lin.model[-1]
        conv.weight.data = torch.rand(conv.weight.shape, generator=generator) / conv.weight.shape[1]
    return model


def tiny_lpips(seed: int = 0) -> LpipsExtractor:
    model = _seeded(seed, lambda: _random_lpips_alex(seed))
    config = {"model": "lpips-alex-v0.1-random", "channels": list(ALEX_CHANNELS)}
    artifacts = {TRUNK_ARTIFACT_ID: smoke_digest(config, seed), LINEAR_ARTIFACT_ID: smoke_digest(config, seed + 1)}
    return LpipsExtractor(model, artifacts, size=TINY_LPIPS_SIZE, smoke=True)


#: Builder of each tiny extractor, by extractor name (the order of ``features.EXTRACTOR_NAMES``).
TINY_BUILDERS: dict[str, Callable[[int], FeatureExtractor]] = {
    "inception": tiny_inception,
    "clip": tiny_clip,
    "semantic": tiny_semantic,
    "emoset": tiny_emoset,
    "lpips": tiny_lpips,
}


def tiny_extractors(
    names: Iterable[str] | None = None, seed: int = 0, *, protocol: str = PROTOCOL
) -> dict[str, FeatureExtractor]:
    """The tiny extractors ``names`` (default: all five), built from ``seed``; same seed, same weights.

    ``protocol`` picks the preprocessing variant, as in :func:`emogen_bench.features.build_extractors`.
    """
    wanted = list(TINY_BUILDERS) if names is None else list(names)
    unknown = [name for name in wanted if name not in TINY_BUILDERS]
    if unknown:
        raise UsageError(f"unknown extractor(s) {', '.join(unknown)}; expected some of {', '.join(TINY_BUILDERS)}")
    builders = dict(TINY_BUILDERS)
    variants = {("inception", PAPER_CODE): tiny_inception_paper_code}
    for name, variant in get_protocol(protocol).variants.items():
        builders[name] = variants[(name, variant)]
    return {name: builders[name](seed) for name in wanted}
