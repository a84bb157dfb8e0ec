"""LPIPS v0.1 with the AlexNet trunk, built from two local files and nothing downloaded.

``lpips.LPIPS`` normally fetches the torchvision AlexNet itself (no hash check
beyond torchvision's 8-hex prefix) and loads its linear layers with
``strict=False``, so a wrong file passes silently.  Here the network is built
on the meta device (no random initialisation to throw away), then the trunk
(``alexnet-owt-7be5be79.pth``) and the linear layers (``lpips/weights/v0.1/alex.pth``)
are loaded with strict checks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import lpips
import torch
from torchvision.models import AlexNet, alexnet

from emogen_bench.errors import WeightsError
from emogen_bench.models._state_dict import (
    build_on_meta,
    check_state_dict,
    load_strict,
    load_torch_file,
    meta_tensors,
    unwrap_state_dict,
)

#: Channels of the five AlexNet feature maps LPIPS compares (conv1..conv5 after ReLU).
ALEX_CHANNELS: tuple[int, ...] = (64, 192, 384, 256, 256)


def linear_layer_shapes(channels: Iterable[int] = ALEX_CHANNELS) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of an LPIPS linear-layer file (``alex.pth`` layout: 1x1 convs, no bias)."""
    return {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(channels)}


def trunk_key_map(lpips_trunk_keys: Iterable[str]) -> dict[str, str]:
    """Map each ``slice<k>.<i>.<param>`` key of the LPIPS trunk to torchvision's ``features.<i>.<param>``.

    LPIPS cuts ``alexnet().features`` into slices but keeps each layer's original
    index as its name inside the slice, so dropping the slice name recovers it.
    """
    mapping = {}
    for key in lpips_trunk_keys:
        slice_name, rest = key.split(".", 1)
        if not slice_name.startswith("slice"):
            raise ValueError(f"unexpected LPIPS trunk key {key!r}")
        mapping[key] = f"features.{rest}"
    return mapping


def load_alexnet(path: str | Path) -> AlexNet:
    """The torchvision AlexNet from ``alexnet-owt-7be5be79.pth`` (``features.*`` and ``classifier.*``), strict."""
    path = Path(path)
    state = unwrap_state_dict(load_torch_file(path, what="AlexNet"), path=path, what="AlexNet")
    return load_strict(build_on_meta(lambda: alexnet(weights=None)), state, path=path, what="torchvision AlexNet")


def load_lpips_linear(path: str | Path) -> dict[str, torch.Tensor]:
    """The LPIPS v0.1 linear layers (``lin0..lin4.model.1.weight``), keys and shapes checked."""
    path = Path(path)
    state = unwrap_state_dict(load_torch_file(path, what="LPIPS linear layers"), path=path, what="LPIPS linear layers")
    expected = {key: torch.empty(shape) for key, shape in linear_layer_shapes().items()}
    check_state_dict(expected, state, path=path, what="LPIPS v0.1 AlexNet linear-layer")
    return {key: state[key].float() for key in expected}


def build_lpips_alex(trunk: AlexNet, linear: Mapping[str, torch.Tensor]) -> lpips.LPIPS:
    """An ``lpips.LPIPS`` (alex, v0.1) whose trunk and linear layers are exactly the given weights.

    Built on the meta device, its input scaling rebuilt on the CPU (the two constant buffers that no file holds),
    and the given tensors assigned (contiguous float32, as a copy into the CPU module would leave them).
    """
    with warnings.catch_warnings():
        # lpips passes torchvision's deprecated ``pretrained=`` argument; nothing is downloaded.
        warnings.simplefilter("ignore", UserWarning)
        model = build_on_meta(
            lambda: lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
        )
    model.scaling_layer = lpips.ScalingLayer()
    features = trunk.state_dict()
    key_map = trunk_key_map(model.net.state_dict().keys())
    model.net.load_state_dict(
        {key: features[source].float().contiguous() for key, source in key_map.items()}, strict=True, assign=True
    )
    for i, layer in enumerate(model.lins):
        weight = linear[f"lin{i}.model.1.weight"].float().contiguous()
        layer.load_state_dict({"model.1.weight": weight}, strict=True, assign=True)
    left = meta_tensors(model)
    if left:
        raise ValueError(f"tensors left without values: {', '.join(left[:5])}")
    model.eval()
    model.requires_grad_(False)
    return model


def load_lpips_alex(trunk_path: str | Path, linear_path: str | Path) -> lpips.LPIPS:
    """LPIPS v0.1 (AlexNet) from the torchvision AlexNet file and the ``alex.pth`` linear layers."""
    trunk = load_alexnet(trunk_path)
    linear = load_lpips_linear(linear_path)
    try:
        return build_lpips_alex(trunk, linear)
    except (KeyError, RuntimeError, ValueError) as exc:  # an lpips release with another layout
        raise WeightsError(
            f"the installed lpips {getattr(lpips, '__version__', '?')} has a trunk layout this benchmark does not "
            f"know ({exc}); install lpips 0.1.4."
        ) from exc
