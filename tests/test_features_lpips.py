"""LPIPS extractor: the protocol crop, and ||phi(x) - phi(y)||^2 = lpips.LPIPS(x, y) over all pairs, brute force."""

from __future__ import annotations

import itertools
import pickle
import warnings
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
from PIL import Image
from tolerances import lpips_bounds
from torchvision.models import alexnet

from emogen_bench.errors import WeightsError
from emogen_bench.features.base import run_fixed_batches
from emogen_bench.features.lpips import LpipsExtractor, phi_dim
from emogen_bench.models.lpips_alex import build_lpips_alex, load_lpips_linear

ARTIFACTS = {"alexnet-lpips-trunk": "sha256:t", "lpips-alex-v0.1": "sha256:l"}
#: The released v0.1 linear layers, shipped inside the lpips package.
PACKAGE_LINEAR = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"


@pytest.fixture(scope="module")
def model() -> lpips.LPIPS:
    """LPIPS v0.1 as the package runs it: a seeded random AlexNet trunk, the released linear layers."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        trunk = alexnet(weights=None)
    return build_lpips_alex(trunk, load_lpips_linear(PACKAGE_LINEAR))


def _random(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _im2tensor(image: np.ndarray) -> torch.Tensor:
    return lpips.im2tensor(image)[0]  # the lpips package's own [-1, 1] scaling


def _seen(extractor: LpipsExtractor, image: np.ndarray) -> torch.Tensor:
    """What the network reads for one image: the uint8 square from the workers, scaled in forward."""
    return extractor.model_input(extractor.preprocess(image)[None])[0]


def test_a_512_square_image_is_untouched(model: lpips.LPIPS) -> None:
    extractor = LpipsExtractor(model, ARTIFACTS)
    image = _random((512, 512), 0)
    assert extractor.preprocess(image).dtype == torch.uint8
    got = _seen(extractor, image)
    assert got.shape == (3, 512, 512) and got.dtype == torch.float32
    assert torch.equal(got, _im2tensor(image))


def test_an_image_with_a_512_shorter_side_is_only_cropped(model: lpips.LPIPS) -> None:
    extractor = LpipsExtractor(model, ARTIFACTS)
    wide, tall = _random((512, 700), 1), _random((800, 512), 2)
    assert torch.equal(_seen(extractor, wide), _im2tensor(wide[:, 94:606]))
    assert torch.equal(_seen(extractor, tall), _im2tensor(tall[144:656]))


def test_larger_and_smaller_images_are_resized_with_pil_bicubic(model: lpips.LPIPS) -> None:
    extractor = LpipsExtractor(model, ARTIFACTS)
    large = _random((1024, 1024), 3)
    resized = np.asarray(Image.fromarray(large).resize((512, 512), Image.Resampling.BICUBIC))
    assert torch.equal(_seen(extractor, large), _im2tensor(resized))
    small = _random((256, 384), 4)  # shorter side 256 -> 512, longer 384 -> 768, crop 128 off each side
    resized = np.asarray(Image.fromarray(small).resize((768, 512), Image.Resampling.BICUBIC))
    assert torch.equal(_seen(extractor, small), _im2tensor(resized[:, 128:640]))


def test_phi_distances_equal_lpips_over_all_pairs(model: lpips.LPIPS) -> None:
    extractor = LpipsExtractor(model, ARTIFACTS)
    shapes = [(512, 512), (600, 512), (700, 900), (512, 640), (512, 512)]
    images = [_random(shape, 10 + i) for i, shape in enumerate(shapes)]
    noise = np.random.default_rng(9).normal(0.0, 4.0, images[0].shape)
    images.append(np.clip(images[0] + noise, 0, 255).astype(np.uint8))  # a near copy: a small distance
    pixels = torch.stack([extractor.preprocess(image) for image in images])
    batch = extractor.model_input(pixels)
    phi = extractor(pixels)["phi"].astype(np.float64)
    assert phi.shape == (len(images), phi_dim(512)) and extractor.info.outputs == {"phi": (phi_dim(512),)}
    pairs = list(itertools.combinations(range(len(images)), 2))
    both = torch.stack([torch.stack([batch[i], batch[j]]) for i, j in pairs])
    # the package's own forward, each side in one fixed batch of 16 as the extractor runs: the same AlexNet
    # features bit for bit, so the two routes differ only by what tolerances.lpips_bounds derives
    expected = run_fixed_batches(lambda b: {"d": model(b[:, 0].contiguous(), b[:, 1].contiguous()).flatten()},
                                 both)["d"].astype(np.float64)  # fmt: skip
    got = np.array([np.sum((phi[i] - phi[j]) ** 2) for i, j in pairs])
    assert expected.min() < 0.01 < expected.max()
    relative, absolute = lpips_bounds(model, 512, len(images))
    np.testing.assert_array_less(np.abs(got - expected), relative / (1 - relative) * expected + absolute)
    # the identity the diversity metric rests on: mean over distinct pairs = 2 * sum of unbiased variances
    np.testing.assert_allclose(got.mean(), 2 * phi.var(axis=0, ddof=1).sum(), rtol=1e-9)


def test_phi_dim_matches_the_network(model: lpips.LPIPS) -> None:
    assert phi_dim(512) == 2_655_360
    small = LpipsExtractor(model, ARTIFACTS, size=128)
    out = small(torch.stack([small.preprocess(_random((200, 160), 5))]))["phi"]
    assert out.shape == (1, phi_dim(128)) == (1, small.info.outputs["phi"][0])


def test_features_do_not_depend_on_batch_composition(model: lpips.LPIPS) -> None:
    extractor = LpipsExtractor(model, ARTIFACTS, size=128)
    batch = torch.stack([extractor.preprocess(_random((128 + 16 * i, 128), 20 + i)) for i in range(4)])
    together = extractor(batch)["phi"]
    for i in range(batch.shape[0]):
        assert np.array_equal(extractor(batch[i : i + 1])["phi"][0], together[i])


def test_info_is_not_cacheable_and_records_the_size(model: lpips.LPIPS) -> None:
    info = LpipsExtractor(model, ARTIFACTS).info
    assert info.name == "lpips" and not info.cacheable and dict(info.artifacts) == ARTIFACTS
    assert info.cache_key != LpipsExtractor(model, ARTIFACTS, size=256).info.cache_key


def test_negative_linear_weights_are_refused() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        trunk = alexnet(weights=None)
    linear = load_lpips_linear(PACKAGE_LINEAR)
    linear["lin2.model.1.weight"] = linear["lin2.model.1.weight"] - 0.5
    with pytest.raises(WeightsError, match=r"lpips-alex-v0\.1 linear layers \[2\] have negative weights"):
        LpipsExtractor(build_lpips_alex(trunk, linear), ARTIFACTS)


def test_other_lpips_variants_are_refused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        old = lpips.LPIPS(net="alex", version="0.0", pretrained=False, pnet_rand=True, verbose=False)
    with pytest.raises(WeightsError, match="version '0.0'"):
        LpipsExtractor(old, ARTIFACTS)


def test_preprocessor_is_picklable_without_the_model(model: lpips.LPIPS) -> None:
    extractor = LpipsExtractor(model, ARTIFACTS)
    image = _random((600, 530), 6)
    payload = pickle.dumps(extractor.preprocessor)
    assert torch.equal(pickle.loads(payload)(image), extractor.preprocess(image)) and len(payload) < 1_000
