"""Workers hand over uint8 pixels; the float stage runs in ``forward``: the model sees bitwise the old float32 input.

The references are the float pipelines written out as they were before the uint8 handover: torchvision's
``Resize``/``CenterCrop``/``ToTensor``/``Normalize`` on the PIL image (Sem-C, EmoSet), the same crop with bicubic
and ``lpips.im2tensor``'s float64 arithmetic (LPIPS), and the transformers 4.x CLIP processor's PIL resize with
numpy rescale and normalisation (CLIP).  Equality is ``torch.equal`` / ``np.array_equal``: bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from emogen_bench.features.clip import ClipExtractor
from emogen_bench.features.clip_pixels import ClipPixelSettings
from emogen_bench.features.emoset import EMOSET_MEAN, EMOSET_STD
from emogen_bench.features.lpips import LpipsExtractor, LpipsPreprocess
from emogen_bench.features.semantic import IMAGENET_MEAN, IMAGENET_STD, ByteTable, ResizeCrop
from emogen_bench.features.tiny import tiny_clip, tiny_emoset, tiny_lpips, tiny_semantic
from emogen_bench.hashing import sha256_file
from emogen_bench.pipeline import _first_equal, _ImageDataset, _Work
from emogen_bench.task import METRICS

#: Square, non-square, smaller than every crop, and sizes that are not 224/256/512.
SHAPES = [(256, 256), (300, 400), (512, 340), (37, 53), (513, 511), (90, 700)]


def _images(seed: int, shapes: list[tuple[int, int]] = SHAPES) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def _old_resnet_input(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """The Sem-C / EmoSet float32 input as it was made before: the released code's torchvision pipeline."""
    pipeline = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    return pipeline(Image.fromarray(image))


def _old_lpips_input(image: np.ndarray, size: int) -> torch.Tensor:
    """The LPIPS float32 input as it was made before: PIL bicubic resize + centre crop, then im2tensor's scaling."""
    bicubic = transforms.InterpolationMode.BICUBIC
    square = np.asarray(transforms.Compose([transforms.Resize(size, bicubic), transforms.CenterCrop(size)])(
        Image.fromarray(image)
    ))  # fmt: skip
    scaled = square.transpose(2, 0, 1).astype(np.float64) / (255.0 / 2.0) - 1.0
    return torch.from_numpy(scaled.astype(np.float32))


def _old_clip_input(image: np.ndarray, settings: ClipPixelSettings) -> torch.Tensor:
    """The CLIP float32 pixels as they were made before (the 4.x processor's PIL path, crops inside the image)."""
    height, width = image.shape[:2]
    short, long = min(height, width), max(height, width)
    new_long = int(settings.shortest_edge * long / short)
    size = (settings.shortest_edge, new_long) if width <= height else (new_long, settings.shortest_edge)  # (w, h)
    with Image.fromarray(image) as pil:
        resized = np.asarray(pil.resize(size, resample=Image.Resampling.BICUBIC, reducing_gap=None))
    top, left = (resized.shape[0] - settings.crop_height) // 2, (resized.shape[1] - settings.crop_width) // 2
    crop = resized[top : top + settings.crop_height, left : left + settings.crop_width]
    rescaled = (crop * settings.rescale_factor).astype(np.float32)
    mean = np.asarray(settings.image_mean, dtype=np.float32)
    std = np.asarray(settings.image_std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(((rescaled - mean) / std).transpose(2, 0, 1)))


def _seen(extractor, image: np.ndarray) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The float tensor the extractor's model reads for one image: preprocess (uint8), then its float stage."""
    pixels = extractor.preprocess(image)
    assert pixels.dtype == torch.uint8 and pixels.is_contiguous()
    seen = extractor.model_input(pixels[None])[0]
    assert seen.dtype == torch.float32
    return seen


@pytest.mark.parametrize(
    ("build", "mean", "std"), [(tiny_semantic, IMAGENET_MEAN, IMAGENET_STD), (tiny_emoset, EMOSET_MEAN, EMOSET_STD)]
)
def test_resnet_model_input_is_the_old_float_pipeline(build, mean, std) -> None:  # type: ignore[no-untyped-def]
    extractor = build(0)
    for image in _images(1):
        assert extractor.preprocess(image).shape == (3, 224, 224)
        assert torch.equal(_seen(extractor, image), _old_resnet_input(image, mean, std))


def test_lpips_model_input_is_the_old_float_pipeline() -> None:
    tiny = tiny_lpips(0)
    full = LpipsExtractor(tiny.lpips_model, {}, size=METRICS.lpips_size)
    for image in _images(2):
        assert torch.equal(_seen(full, image), _old_lpips_input(image, METRICS.lpips_size))
        assert torch.equal(_seen(tiny, image), _old_lpips_input(image, tiny.preprocessor.size))


def test_clip_model_input_is_the_old_float_pipeline() -> None:
    extractor = tiny_clip(0)
    settings = extractor.pixel_settings
    for image in _images(3):
        assert torch.equal(_seen(extractor, image), _old_clip_input(image, settings))
    # the pinned snapshot's settings (224, its mean/std); the pixels do not depend on the model
    full = ClipExtractor(extractor.vision_model, ClipPixelSettings(), extractor.emotion_head, {})
    for image in _images(4, [(300, 400), (224, 224), (700, 250)]):
        assert torch.equal(_seen(full, image), _old_clip_input(image, ClipPixelSettings()))


@pytest.mark.parametrize(
    ("build", "old"),
    [
        (tiny_semantic, lambda ex, im: _old_resnet_input(im, IMAGENET_MEAN, IMAGENET_STD)),
        (tiny_emoset, lambda ex, im: _old_resnet_input(im, EMOSET_MEAN, EMOSET_STD)),
        (tiny_lpips, lambda ex, im: _old_lpips_input(im, ex.preprocessor.size)),
        (tiny_clip, lambda ex, im: _old_clip_input(im, ex.pixel_settings)),
    ],
)
def test_features_are_bitwise_the_old_ones(build, old) -> None:  # type: ignore[no-untyped-def]
    """Old: the float32 batch into the extractor (zero-padded to 16). New: the uint8 batch (padded with zero
    bytes, whose floats differ): the real rows' features are equal bit for bit."""
    extractor = build(0)
    images = _images(5, [(300, 400), (64, 48), (256, 256)])
    before = extractor(torch.stack([old(extractor, image) for image in images]))
    now = extractor(torch.stack([extractor.preprocess(image) for image in images]))
    assert before.keys() == now.keys() == dict(extractor.info.outputs).keys()
    for name, values in before.items():
        assert values.dtype == now[name].dtype and np.array_equal(values, now[name]), name


def test_preprocess_versions_and_cache_keys_are_unchanged() -> None:
    """The models read the same floats, so the cache keys stay valid: the strings git HEAD 4069a9e recorded."""
    expected = {
        "semantic": ("torchvision-resize-bilinear-centercrop/1:256/224/mean=[0.485, 0.456, 0.406]/std=[0.229, 0.224, "
                     "0.225]", "d54bc0d5e6ad148760ce"),
        "emoset": ("torchvision-resize-bilinear-centercrop/1:256/224/mean=[0.5, 0.5, 0.5]/std=[0.5, 0.5, 0.5]",
                   "291ebeccbf5fc8633473"),
        "lpips": ("shorter-side-PIL-bicubic-centre-crop-im2tensor/1:128", "7feea8f521383f8e8eb9"),
        "clip": ("clip-pil/2:b52b4bd6276d21af", "d90370e0d60723a30732"),
    }  # fmt: skip
    for build in (tiny_semantic, tiny_emoset, tiny_lpips, tiny_clip):
        info = build(0).info
        assert (info.preprocess_version, info.cache_key) == expected[info.name]


def test_float_batches_pass_the_table_unchanged() -> None:
    """Callers that still hand float inputs (made by the old pipeline) get them through as before."""
    table = ByteTable(torch.rand(3, 256))
    floats = torch.rand(2, 3, 5, 4)
    assert table(floats) is floats
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        table(torch.zeros(2, 4, 5, 4, dtype=torch.uint8))


# --- one shared resize for Sem-C and EmoSet ---------------------------------------------------------------------


class CountingResizeCrop:
    """A picklable preprocessor that records each call in a shared list; equal to every other one on that list."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        self.calls.append(f"{image.shape}")
        return ResizeCrop()(image)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CountingResizeCrop) and other.calls is self.calls

    def __hash__(self) -> int:
        return id(self.calls)


def _work(tmp_path: Path, count: int, needs: tuple[str, ...]) -> list[_Work]:
    work = []
    for position, image in enumerate(_images(6, [(300, 400), (256, 256), (90, 120)][:count])):
        path = tmp_path / f"{position}.png"
        Image.fromarray(image).save(path)
        work.append(_Work(position, path, sha256_file(path), needs))
    return work


def test_semantic_and_emoset_share_one_preprocessor_value() -> None:
    semantic, emoset = tiny_semantic(0), tiny_emoset(1)
    assert semantic.preprocessor == emoset.preprocessor == ResizeCrop(256, 224)
    assert hash(semantic.preprocessor) == hash(emoset.preprocessor)


def test_equal_preprocessing_runs_once_per_image(tmp_path: Path) -> None:
    calls: list[str] = []
    work = _work(tmp_path, 3, ("emoset", "semantic"))
    dataset = _ImageDataset(work, {"emoset": CountingResizeCrop(calls), "semantic": CountingResizeCrop(calls)})
    for index in range(len(work)):
        position, inputs = dataset[index]
        assert position == index and set(inputs) == {"emoset", "semantic"}
        assert inputs["emoset"] is inputs["semantic"]
        assert len(calls) == index + 1  # one call per image, not one per extractor


def test_both_extractors_receive_the_same_pixels(tmp_path: Path) -> None:
    semantic, emoset = tiny_semantic(0), tiny_emoset(1)
    work = _work(tmp_path, 2, ("emoset", "semantic"))
    dataset = _ImageDataset(work, {"emoset": emoset.preprocessor, "semantic": semantic.preprocessor})
    for index, entry in enumerate(work):
        _, inputs = dataset[index]
        expected = semantic.preprocess(np.array(Image.open(entry.path).convert("RGB")))
        assert torch.equal(inputs["emoset"], expected) and torch.equal(inputs["semantic"], expected)
    # an image only one of them still needs is preprocessed for that one alone
    alone = _ImageDataset([_Work(0, work[0].path, work[0].sha256, ("semantic",))],
                          {"emoset": emoset.preprocessor, "semantic": semantic.preprocessor})  # fmt: skip
    assert set(alone[0][1]) == {"semantic"}


def test_only_equal_values_of_one_type_are_shared() -> None:
    preprocessors = {
        "a": ResizeCrop(),
        "b": ResizeCrop(256, 200),
        "c": ResizeCrop(256, 224),
        "d": LpipsPreprocess(224),
        "e": tiny_clip(0).preprocessor,
    }
    assert _first_equal(preprocessors) == {"a": "a", "b": "b", "c": "a", "d": "d", "e": "e"}
