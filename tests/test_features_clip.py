"""CLIP extractor: the PIL pixels (rescaled exactly once), embeddings and head logits as direct model calls."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import checkpoints as ckpt
import numpy as np
import pytest
import torch
from clip_pixel_fixture import PINNED_CONFIG
from tolerances import EPS64, U32, gamma

from emogen_bench.errors import WeightsError
from emogen_bench.features.base import run_fixed_batches
from emogen_bench.features.clip import ClipExtractor, double_rescaled
from emogen_bench.features.clip_pixels import ClipPixelSettings
from emogen_bench.models.clip import load_clip_pixel_settings, load_clip_vision
from emogen_bench.models.emotion_head import EmotionHead

#: ``preprocessor_config.json`` of openai/clip-vit-large-patch14 at the pinned revision.
VIT_L14_PREPROCESSOR = PINNED_CONFIG
DIM = ckpt.TINY_CLIP["projection_dim"]
ARTIFACTS = {"clip-vit-l14": "sha256:v", "emo-head-clip": "sha256:h"}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ckpt.write_clip_snapshot(tmp_path_factory.mktemp("clip"), seed=1)


@pytest.fixture(scope="module")
def vit_l14_processor(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("vit-l14-processor")
    (folder / "preprocessor_config.json").write_text(json.dumps(VIT_L14_PREPROCESSOR))
    return load_clip_pixel_settings(folder)


def _head(seed: int = 0, dim: int = DIM) -> EmotionHead:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return EmotionHead(embed_dim=dim).eval()


def _extractor(snapshot: Path, processor=None) -> ClipExtractor:  # type: ignore[no-untyped-def]
    processor = processor if processor is not None else load_clip_pixel_settings(snapshot)
    return ClipExtractor(load_clip_vision(snapshot), processor, _head(), ARTIFACTS)


def _seen(extractor: ClipExtractor, image: np.ndarray) -> torch.Tensor:
    """The pixels the model reads for one image: the uint8 stage from the workers, then the float stage."""
    return extractor.model_input(extractor.preprocess(image)[None])[0]


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(300, 400, 3), (224, 224, 3), (513, 260, 3)]]


def test_preprocess_is_the_pil_processor_called_once_on_uint8(snapshot: Path, vit_l14_processor) -> None:  # type: ignore[no-untyped-def]
    assert vit_l14_processor.shortest_edge == 224
    extractor = _extractor(snapshot, vit_l14_processor)
    peer = ckpt.pil_clip_processor(VIT_L14_PREPROCESSOR)  # transformers' own PIL pipeline (4.x's only one)
    for image in _images():
        expected = peer(images=image, return_tensors="pt")["pixel_values"][0]
        assert extractor.preprocess(image).dtype == torch.uint8
        got = _seen(extractor, image)
        assert got.shape == (3, 224, 224) and got.dtype == torch.float32
        assert torch.equal(got, expected)
        assert not torch.allclose(got, double_rescaled(vit_l14_processor, image), atol=0.1)


def test_the_extractor_reads_only_a_processors_settings_never_its_backend(snapshot: Path) -> None:
    from transformers import CLIPImageProcessor

    default = CLIPImageProcessor.from_dict(dict(VIT_L14_PREPROCESSOR))  # torchvision backend under transformers 5
    from_processor = _extractor(snapshot, default)
    from_settings = _extractor(snapshot, ClipPixelSettings.from_config(VIT_L14_PREPROCESSOR))
    assert from_processor.info.cache_key == from_settings.info.cache_key
    image = _images(4)[0]
    assert torch.equal(from_processor.preprocess(image), from_settings.preprocess(image))


def test_a_uniform_image_is_rescaled_exactly_once(snapshot: Path, vit_l14_processor) -> None:  # type: ignore[no-untyped-def]
    colour = np.array([200, 90, 30], dtype=np.uint8)
    image = np.broadcast_to(colour, (256, 320, 3)).copy()
    mean = np.array(VIT_L14_PREPROCESSOR["image_mean"])
    std = np.array(VIT_L14_PREPROCESSOR["image_std"])
    once = (colour / 255.0 - mean) / std  # computed here, independently of transformers
    twice = (colour / 255.0 / 255.0 - mean) / std  # the released code's double rescale
    got = _seen(_extractor(snapshot, vit_l14_processor), image).numpy()
    np.testing.assert_allclose(got, np.broadcast_to(once[:, None, None], got.shape), atol=1e-5)
    bug = double_rescaled(vit_l14_processor, image).numpy()
    np.testing.assert_allclose(bug, np.broadcast_to(twice[:, None, None], bug.shape), atol=1e-5)


def test_outputs_equal_direct_calls_of_the_full_clip_model_and_head(snapshot: Path) -> None:
    extractor = _extractor(snapshot)
    batch = torch.stack([extractor.preprocess(image) for image in _images(1)])
    out = extractor(batch)
    full = ckpt.tiny_clip_model(seed=1)  # the same weights as the snapshot, as a full CLIPModel
    # in the extractor's fixed batches of 16: the same float32 modules on the same input, so bit for bit
    expected = run_fixed_batches(
        lambda b: {"embedding": full.visual_projection(full.vision_model(pixel_values=b).pooler_output)},
        extractor.model_input(batch),
    )["embedding"]  # fmt: skip
    assert np.array_equal(out["embedding"], expected)
    head = _head()
    weight, bias = head.fc.weight.detach().double().numpy(), head.fc.bias.detach().double().numpy()
    logits = out["embedding"].astype(np.float64) @ weight.T + bias
    # the head is one float32 linear layer on that same embedding: within gamma_{d+1}(u32) (|W||e| + |b|) of
    # exact, and the float64 product here within gamma_{d+1}(eps64) of it
    size = np.abs(out["embedding"].astype(np.float64)) @ np.abs(weight).T + np.abs(bias)
    tol = (gamma(DIM + 1, U32) + gamma(DIM + 1, EPS64)) * size
    np.testing.assert_array_less(np.abs(out["emotion_logits"] - logits), tol)
    assert extractor.info.outputs == {"embedding": (DIM,), "emotion_logits": (8,)}


def test_features_do_not_depend_on_batch_composition(snapshot: Path) -> None:
    extractor = _extractor(snapshot)
    batch = torch.stack([extractor.preprocess(image) for image in _images(2)])
    together = extractor(batch)
    for i in range(batch.shape[0]):
        alone = extractor(batch[i : i + 1])
        for name in ("embedding", "emotion_logits"):
            assert np.array_equal(alone[name][0], together[name][i]), name


def test_head_and_model_of_different_sizes_are_refused(snapshot: Path) -> None:
    with pytest.raises(WeightsError, match=r"emo-head-clip.*768-d.*clip-vit-l14.*16-d"):
        ClipExtractor(load_clip_vision(snapshot), load_clip_pixel_settings(snapshot), _head(dim=768), ARTIFACTS)


def test_a_processor_that_does_not_rescale_is_refused(snapshot: Path) -> None:
    from transformers import CLIPImageProcessor

    for processor in (CLIPImageProcessor(do_rescale=False), CLIPImageProcessor(rescale_factor=1 / 255 / 255)):
        with pytest.raises(WeightsError, match="exactly once"):
            ClipExtractor(load_clip_vision(snapshot), processor, _head(), ARTIFACTS)


def test_processor_settings_enter_the_cache_key(snapshot: Path, vit_l14_processor) -> None:  # type: ignore[no-untyped-def]
    tiny = _extractor(snapshot)
    real = _extractor(snapshot, vit_l14_processor)
    assert tiny.info.preprocess_version != real.info.preprocess_version
    assert tiny.info.cache_key != real.info.cache_key
    assert _extractor(snapshot).info.cache_key == tiny.info.cache_key


def test_preprocessor_is_picklable_without_the_model(snapshot: Path) -> None:
    extractor = _extractor(snapshot)
    image = _images(3)[0]
    payload = pickle.dumps(extractor.preprocessor)
    assert torch.equal(pickle.loads(payload)(image), extractor.preprocess(image))
    assert len(payload) < 10_000  # the pixel settings only, no weights
