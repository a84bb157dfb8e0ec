"""Semantic (ImageNet + Places365) and EmoSet extractors: released-code preprocessing, softmax of direct calls."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from tolerances import EPS64, U32, softmax_bound
from torch import nn
from torchvision import transforms

from emogen_bench.features.base import run_fixed_batches
from emogen_bench.features.emoset import EmoSetExtractor
from emogen_bench.features.semantic import SemanticExtractor

SHAPES = [(256, 256), (300, 400), (512, 340), (224, 700)]
SEMANTIC_ARTIFACTS = {"resnet50-imagenet-v1": "sha256:i", "resnet50-places365": "sha256:p"}


def _classifier(classes: int, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(32, classes),
        )  # fmt: skip
    return model.eval().requires_grad_(False)


def _semantic() -> SemanticExtractor:
    return SemanticExtractor(_classifier(1000, 0), _classifier(365, 1), SEMANTIC_ARTIFACTS)


def _emoset() -> EmoSetExtractor:
    return EmoSetExtractor(_classifier(8, 2), {"emo-resnet50-emoset": "sha256:e"})


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SHAPES]


def _released_code_transform(mean: tuple[float, ...], std: tuple[float, ...]) -> transforms.Compose:
    """The released code's preprocessing, written out as it is there (torchvision on PIL images)."""
    return transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )


@pytest.mark.parametrize(
    ("build", "mean", "std"),
    [(_semantic, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), (_emoset, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))],
)
def test_preprocess_is_the_released_codes_transform(build, mean, std) -> None:  # type: ignore[no-untyped-def]
    extractor = build()
    reference = _released_code_transform(mean, std)
    for image in _images():
        pixels = extractor.preprocess(image)  # uint8 from the workers; the float stage runs in forward
        assert pixels.shape == (3, 224, 224) and pixels.dtype == torch.uint8
        got = extractor.model_input(pixels[None])[0]
        assert got.dtype == torch.float32
        assert torch.equal(got, reference(Image.fromarray(image)))
    # a 256x256 image is only centre-cropped: check against plain numpy arithmetic
    square = _images(1)[0]
    crop = square[16:240, 16:240].astype(np.float64) / 255.0
    expected = ((crop - np.array(mean)) / np.array(std)).transpose(2, 0, 1)
    got = extractor.model_input(extractor.preprocess(square)[None])[0]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


def test_semantic_outputs_are_softmax_of_direct_calls() -> None:
    extractor = _semantic()
    batch = torch.stack([extractor.preprocess(image) for image in _images(2)])
    out = extractor(batch)
    inputs = extractor.model_input(batch)
    for prefix, model in (("imagenet", extractor.imagenet_model), ("places", extractor.places_model)):
        # in the extractor's fixed batches of 16: the same float32 model on the same input, so the logits are the
        # extractor's bit for bit on any CPU, and only its float32 softmax differs from this float64 one
        logits = run_fixed_batches(lambda b: {"logits": model(b)}, inputs)["logits"].astype(np.float64)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        tol = softmax_bound(probabilities, U32) + softmax_bound(probabilities, EPS64)
        top = probabilities.argmax(axis=1)
        rows = np.arange(len(top))
        np.testing.assert_array_less(np.abs(out[f"{prefix}_max_prob"] - probabilities[rows, top]), tol[rows, top])
        second = np.sort(probabilities, axis=1)[:, -2]
        assert np.all(probabilities[rows, top] - second > 2 * tol.max(axis=1))  # no tie that rounding could flip
        assert np.array_equal(out[f"{prefix}_top1"], top)
        assert out[f"{prefix}_max_prob"].dtype == np.float32 and out[f"{prefix}_top1"].dtype == np.int64
    assert out["imagenet_max_prob"].shape == (batch.shape[0],)
    assert (out["places_top1"] < 365).all() and (out["imagenet_max_prob"] >= 1 / 1000).all()


def test_emoset_outputs_are_the_model_logits() -> None:
    extractor = _emoset()
    batch = torch.stack([extractor.preprocess(image) for image in _images(3)])
    # in the extractor's fixed batches of 16: the same float32 model on the same input, bit for bit on any CPU
    expected = run_fixed_batches(lambda b: {"logits": extractor.model(b)}, extractor.model_input(batch))["logits"]
    out = extractor(batch)
    assert out["logits"].shape == (batch.shape[0], 8) and extractor.info.outputs == {"logits": (8,)}
    assert np.array_equal(out["logits"], expected)


@pytest.mark.parametrize("build", [_semantic, _emoset])
def test_features_do_not_depend_on_batch_composition(build) -> None:  # type: ignore[no-untyped-def]
    extractor = build()
    batch = torch.stack([extractor.preprocess(image) for image in _images(4)])
    together = extractor(batch)
    for i in range(batch.shape[0]):
        alone = extractor(batch[i : i + 1])
        for name, values in together.items():
            assert np.array_equal(alone[name][0], values[i]), name


def test_info_and_cache_keys() -> None:
    semantic, emoset = _semantic(), _emoset()
    assert semantic.info.name == "semantic" and emoset.info.name == "emoset"
    assert set(semantic.info.outputs) == {"imagenet_max_prob", "imagenet_top1", "places_max_prob", "places_top1"}
    assert dict(semantic.info.artifacts) == SEMANTIC_ARTIFACTS
    assert semantic.info.preprocess_version != emoset.info.preprocess_version  # other normalisation
    changed = SemanticExtractor(
        _classifier(1000, 0), _classifier(365, 1), {**SEMANTIC_ARTIFACTS, "resnet50-places365": "x"}
    )
    assert changed.info.cache_key != semantic.info.cache_key


@pytest.mark.parametrize("build", [_semantic, _emoset])
def test_preprocessor_is_picklable_without_the_models(build) -> None:  # type: ignore[no-untyped-def]
    extractor = build()
    image = _images(5)[1]
    payload = pickle.dumps(extractor.preprocessor)
    assert torch.equal(pickle.loads(payload)(image), extractor.preprocess(image))
    assert len(payload) < 2_000
