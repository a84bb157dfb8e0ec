"""Model loaders build on the meta device and take the file's tensors (issue 16: no random initialisation that is
then overwritten), and give the same module as before: the file's values, CPU tensors (none left on the meta
device), contiguous, eval mode, no gradients, and forward outputs bitwise equal to a module built the old way
(random initialisation, then ``load_state_dict``), which each test builds itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from itertools import chain
from pathlib import Path

import lpips
import pytest
import torch
from checkpoints import (
    alexnet_state_dict,
    emoset_resnet50_state_dict,
    lpips_linear_state_dict,
    places365_checkpoint,
    resnet50_state_dict,
)
from torch import nn
from torchvision.models import alexnet, resnet50

from emogen_bench.models._state_dict import build_on_meta, load_strict
from emogen_bench.models.emoset_resnet import EmoSetResNet50, load_emoset_resnet50
from emogen_bench.models.emotion_head import EmotionHead, load_emotion_head
from emogen_bench.models.lpips_alex import build_lpips_alex, load_alexnet, load_lpips_linear
from emogen_bench.models.resnet import load_resnet50_imagenet, load_resnet50_places365


def counted(state: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """``state`` with seeded non-zero BatchNorm counters, so that loading them is visible."""
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.randint(1, 1000, (), generator=generator) if key.endswith("num_batches_tracked") else value
        for key, value in state.items()
    }


def assert_loaded(module: nn.Module, expected: Mapping[str, torch.Tensor]) -> None:
    """``module`` holds exactly ``expected``, as CPU tensors (no meta), contiguous, in eval mode, without gradients."""
    state = module.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    named = chain(module.named_parameters(remove_duplicate=False), module.named_buffers(remove_duplicate=False))
    for name, tensor in named:
        assert not tensor.is_meta and tensor.device.type == "cpu" and tensor.is_contiguous(), name
    assert not module.training and not any(p.requires_grad for p in module.parameters())


def old_way(module: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """The former construction: the randomly initialised ``module``, the file's tensors copied in, eval."""
    module.load_state_dict({**module.state_dict(), **state}, strict=True)
    return module.eval().requires_grad_(False)


def save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn((1, 3, 32, 32), generator=torch.Generator().manual_seed(7))


def test_resnet50_imagenet(tmp_path: Path, image: torch.Tensor) -> None:
    state = counted(resnet50_state_dict(seed=1), seed=1)
    model = load_resnet50_imagenet(save(state, tmp_path / "resnet50.pth"))
    assert_loaded(model, state)
    with torch.no_grad():
        assert torch.equal(model(image), old_way(resnet50(weights=None), state)(image))


def test_resnet50_places365_gets_default_counters(tmp_path: Path, image: torch.Tensor) -> None:
    """The CSAIL file has no ``num_batches_tracked``: those buffers get BatchNorm's 0, not meta or garbage."""
    checkpoint = places365_checkpoint(seed=2)
    model = load_resnet50_places365(save(checkpoint, tmp_path / "places.pth.tar"))
    file_state = {key.removeprefix("module."): value for key, value in checkpoint["state_dict"].items()}
    counters = [key for key in model.state_dict() if key.endswith("num_batches_tracked")]
    assert counters and not set(counters) & set(file_state)
    expected = {key: file_state.get(key, torch.tensor(0)) for key in model.state_dict()}
    assert_loaded(model, expected)
    with torch.no_grad():
        assert torch.equal(model(image), old_way(resnet50(weights=None, num_classes=365), file_state)(image))


def test_emoset_resnet50_shares_its_backbone(tmp_path: Path, image: torch.Tensor) -> None:
    state = emoset_resnet50_state_dict(seed=3)
    model = load_emoset_resnet50(save(state, tmp_path / "emoset.pth"))
    assert_loaded(model, {key: state[key] for key in model.state_dict()})
    assert model.backbone[0] is model.cnn.conv1 and model.backbone[0].weight is model.cnn.conv1.weight
    old = old_way(EmoSetResNet50(), state)
    with torch.no_grad():
        assert torch.equal(model.embed(image), old.embed(image))
        assert torch.equal(model(image), old(image))


def test_lpips_alex_from_the_two_files(tmp_path: Path) -> None:
    trunk_state = alexnet_state_dict(seed=4)
    linear_state = lpips_linear_state_dict(seed=4)
    trunk = load_alexnet(save(trunk_state, tmp_path / "alexnet.pth"))
    assert_loaded(trunk, trunk_state)
    linear = load_lpips_linear(save(linear_state, tmp_path / "alex.pth"))
    model = build_lpips_alex(trunk, linear)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        old = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    old.net.load_state_dict({k: trunk_state["features." + k.split(".", 1)[1]] for k in old.net.state_dict()})
    for i, layer in enumerate(old.lins):
        layer.load_state_dict({"model.1.weight": linear_state[f"lin{i}.model.1.weight"]})
    old.eval().requires_grad_(False)
    assert_loaded(model, old.state_dict())  # the scaling layer's constants included
    generator = torch.Generator().manual_seed(8)
    first, second = (torch.rand((2, 3, 64, 64), generator=generator) * 2 - 1 for _ in range(2))
    with torch.no_grad():
        assert torch.equal(model(first, second), old(first, second))
    alex_old = old_way(alexnet(weights=None), trunk_state)
    with torch.no_grad():
        assert torch.equal(trunk(first), alex_old(first))


def test_emotion_head_from_a_float64_non_contiguous_file(tmp_path: Path) -> None:
    """The file's tensors are cast and laid out as a copy into the float32 module would leave them."""
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn((768, 8), dtype=torch.float64, generator=generator).t()  # a transposed view
    bias = torch.randn(8, dtype=torch.float64, generator=generator)
    assert not weight.is_contiguous()
    model = load_emotion_head(save({"state_dict": {"fc.weight": weight, "fc.bias": bias}}, tmp_path / "head.pth"))
    assert_loaded(model, {"fc.weight": weight.float(), "fc.bias": bias.float()})
    embeddings = torch.randn((4, 768), generator=generator)
    old = old_way(EmotionHead(), {"fc.weight": weight, "fc.bias": bias})
    with torch.no_grad():
        assert torch.equal(model(embeddings), old(embeddings))


class _WithUnsavedBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.register_buffer("table", torch.arange(3.0), persistent=False)


def test_a_meta_tensor_no_file_can_fill_is_refused(tmp_path: Path) -> None:
    state = {"fc.weight": torch.ones(2, 2), "fc.bias": torch.zeros(2)}
    with pytest.raises(RuntimeError, match="table"):
        load_strict(build_on_meta(_WithUnsavedBuffer), state, path=tmp_path / "x.pth", what="test")
