"""The real metric architectures with seeded random weights, wrapped in the real extractor classes.

Speed does not depend on the weight values, so these stand in for the pinned
weights (which cannot be downloaded here): torchvision ResNet-50 (1000 and 365
classes), the EmoSet ResNet-50, LPIPS v0.1 on a torchvision AlexNet, and a
CLIP ViT-L/14 vision tower built from a config with the real sizes, with a
``CLIPImageProcessor`` carrying the snapshot's settings.

One substitution: the pinned Inception is the NVlabs TorchScript file, which
is not available here.  torchvision's ``inception_v3`` (same Inception-v3
layers, 2048-d pool) is wrapped to expose the ``layers`` submodule the
extractor calls, so it runs the same convolutions but is not the same file
(the NVlabs graph differs in small details such as its pooling, which cost
next to nothing).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from emogen_bench.features.base import FeatureExtractor
from emogen_bench.features.clip_pixels import ClipPixelSettings

#: CLIP ViT-L/14 vision tower sizes (openai/clip-vit-large-patch14 ``config.json``).
CLIP_VIT_L14: dict[str, object] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
#: The snapshot's ``preprocessor_config.json`` settings.
CLIP_PROCESSOR: dict[str, object] = {
    "do_resize": True,
    "size": {"shortest_edge": 224},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": True,
}
BENCH_ARTIFACTS = "benchmark:random-weights"


class InceptionLayers(nn.Module):
    """torchvision Inception-v3 up to the 2048-d average pool, as ``layers`` (the NVlabs interface)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=False, init_weights=False)
        names = (
            "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
            "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
            "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool",
        )  # fmt: skip
        self.layers = nn.Sequential(*(getattr(net, name) for name in names))

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.layers((img - 128) / 128).flatten(1)


def _frozen(module: nn.Module) -> nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


def _artifacts(*ids: str) -> dict[str, str]:
    return {artifact_id: BENCH_ARTIFACTS for artifact_id in ids}


def clip_processor() -> ClipPixelSettings:
    """The CLIP pixel settings of the pinned snapshot."""
    return ClipPixelSettings.from_config(CLIP_PROCESSOR)


def random_lpips_alex(seed: int) -> nn.Module:
    """LPIPS v0.1 built by the benchmark's own builder from a random AlexNet and random non-negative linear layers."""
    from torchvision.models import alexnet

    from emogen_bench.models.lpips_alex import build_lpips_alex, linear_layer_shapes

    generator = torch.Generator().manual_seed(seed)
    linear = {key: torch.rand(shape, generator=generator) / shape[1] for key, shape in linear_layer_shapes().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build_lpips_alex(alexnet(weights=None), linear)


def random_extractors(seed: int = 0) -> dict[str, FeatureExtractor]:
    """All five extractors around the real architectures with random weights (seeded), on the CPU."""
    from torchvision.models import resnet50
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from emogen_bench.features.clip import HEAD_ARTIFACT_ID, VISION_ARTIFACT_ID, ClipExtractor
    from emogen_bench.features.emoset import ARTIFACT_ID as EMOSET_ID
    from emogen_bench.features.emoset import EmoSetExtractor
    from emogen_bench.features.inception import ARTIFACT_ID as INCEPTION_ID
    from emogen_bench.features.inception import InceptionExtractor
    from emogen_bench.features.lpips import LINEAR_ARTIFACT_ID, TRUNK_ARTIFACT_ID, LpipsExtractor
    from emogen_bench.features.semantic import IMAGENET_ARTIFACT_ID, PLACES_ARTIFACT_ID, SemanticExtractor
    from emogen_bench.models.emoset_resnet import EmoSetResNet50
    from emogen_bench.models.emotion_head import EmotionHead

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inception = _frozen(InceptionLayers())
        vision = _frozen(CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_VIT_L14)))
        head = _frozen(EmotionHead())
        imagenet = _frozen(resnet50(weights=None))
        places = _frozen(resnet50(weights=None, num_classes=365))
        emoset = _frozen(EmoSetResNet50())
        lpips_model = _frozen(random_lpips_alex(seed))
    return {
        "inception": InceptionExtractor(inception, _artifacts(INCEPTION_ID)),
        "clip": ClipExtractor(vision, clip_processor(), head, _artifacts(VISION_ARTIFACT_ID, HEAD_ARTIFACT_ID)),
        "semantic": SemanticExtractor(imagenet, places, _artifacts(IMAGENET_ARTIFACT_ID, PLACES_ARTIFACT_ID)),
        "emoset": EmoSetExtractor(emoset, _artifacts(EMOSET_ID)),
        "lpips": LpipsExtractor(lpips_model, _artifacts(TRUNK_ARTIFACT_ID, LINEAR_ARTIFACT_ID)),
    }
