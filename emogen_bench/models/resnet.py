"""The two ResNet-50 classifiers of Sem-C: ImageNet-1k (torchvision V1 weights) and Places365.

The released Sem-C code uses ``resnet50(pretrained=True)``, i.e. IMAGENET1K_V1
(``resnet50-0676ba61.pth``), not torchvision's current V2 default; and the
CSAIL ``resnet50_places365.pth.tar``, a training checkpoint whose
``state_dict`` was saved through ``nn.DataParallel`` (keys prefixed ``module.``).
Both are built on the meta device and take the file's tensors (no random initialisation first).
"""

from __future__ import annotations

from pathlib import Path

from torchvision.models import ResNet, resnet50

from emogen_bench.errors import WeightsError
from emogen_bench.models._state_dict import (
    build_on_meta,
    load_strict,
    load_torch_file,
    strip_prefix,
    unwrap_state_dict,
)

IMAGENET_CLASSES = 1000
PLACES365_CLASSES = 365


def load_resnet50_imagenet(path: str | Path) -> ResNet:
    """torchvision ResNet-50 with the IMAGENET1K_V1 state dict, strict."""
    path = Path(path)
    state = unwrap_state_dict(load_torch_file(path, what="ResNet-50 ImageNet"), path=path, what="ResNet-50 ImageNet")
    model = build_on_meta(lambda: resnet50(weights=None))
    return load_strict(model, state, path=path, what="torchvision ResNet-50 (1000 classes)")


def load_resnet50_places365(path: str | Path) -> ResNet:
    """ResNet-50 (365 classes) from the CSAIL checkpoint: its ``state_dict`` with ``module.`` stripped, strict."""
    path = Path(path)
    checkpoint = load_torch_file(path, what="ResNet-50 Places365")
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        found = sorted(map(str, checkpoint))[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise WeightsError(
            f"{path}: expected the CSAIL Places365 checkpoint (a dict with 'state_dict', 'epoch', 'arch', "
            f"'best_prec1'), found {found}. Fetch resnet50_places365.pth.tar again."
        )
    state = strip_prefix(unwrap_state_dict(checkpoint, path=path, what="ResNet-50 Places365"), "module.")
    model = build_on_meta(lambda: resnet50(weights=None, num_classes=PLACES365_CLASSES))
    return load_strict(model, state, path=path, what="ResNet-50 Places365 (365 classes)")
