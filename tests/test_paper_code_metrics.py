"""The ``emogen-paper-code`` protocol quirk by quirk, each against a direct computation on small inputs.

FID's formulation (raw sums, eigenvalues of the non-symmetric product) against
scipy ``sqrtm`` and the eicg-v3 distance; the Inception preprocessing against
torchvision called here; LPIPS on [0, 1] inputs against the ``lpips`` package;
the CLIP double rescale against the processor's own output mapped by hand; the
seeded pair sampling with its never-reset pool and its ``*jpg`` filter.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg
from tolerances import network_bound
from torchvision import transforms
from torchvision.models import alexnet

from emogen_bench.errors import InvalidInputError
from emogen_bench.features import tiny_extractors
from emogen_bench.features.base import run_fixed_batches
from emogen_bench.features.clip import ClipPreprocess, double_rescaled
from emogen_bench.features.inception import InceptionExtractor
from emogen_bench.features.paper_code import (
    PaperCodeInceptionExtractor,
    TorchvisionResizeBytes,
    double_rescaled_embeddings,
    is_paper_code,
    lpips_unit_distance,
)
from emogen_bench.features.tiny import TinyInception
from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.fid import GaussianStats, frechet_distance
from emogen_bench.metrics.intervals import bootstrap_mean_interval
from emogen_bench.metrics.paper_code import (
    SumsAccumulator,
    is_jpg,
    pair_metric,
    pair_mse,
    paper_code_fid,
    sample_pairs,
    sums_stats,
    torchmetrics_frechet,
)
from emogen_bench.models.clip import clip_image_embeddings
from emogen_bench.models.lpips_alex import build_lpips_alex, load_lpips_linear
from emogen_bench.pipeline import ImageItem, score_pairs
from emogen_bench.protocols import PAPER_CODE
from emogen_bench.task import EMOTION_NAMES

PACKAGE_LINEAR = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"


def _random_image(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _spd(d: int, seed: int) -> np.ndarray:
    """A well-conditioned symmetric positive definite matrix."""
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + np.eye(d)


# --- FID ---------------------------------------------------------------------------------------------------------


def test_fid_formulation_equals_scipy_sqrtm_and_the_eicg_distance_on_spd_inputs() -> None:
    rng = np.random.default_rng(0)
    for d in (3, 16, 40):
        a = GaussianStats(rng.normal(size=d), _spd(d, d), 100)
        b = GaussianStats(rng.normal(size=d), _spd(d, d + 1), 100)
        diff = a.mu - b.mu
        root = linalg.sqrtm(a.sigma @ b.sigma)
        direct = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(root).real
        got = torchmetrics_frechet(a, b)
        assert got == pytest.approx(direct, rel=1e-10)
        assert got == pytest.approx(frechet_distance(a, b), rel=1e-8)
        assert torchmetrics_frechet(a, a) == pytest.approx(0.0, abs=1e-9)


def test_negative_round_off_eigenvalues_contribute_nothing() -> None:
    # A singular product: the real part of the square root of a negative (or complex) eigenvalue is 0.
    sigma = np.diag([4.0, 1.0, 0.0])
    a, b = GaussianStats(np.zeros(3), sigma, 10), GaussianStats(np.zeros(3), sigma, 10)
    assert torchmetrics_frechet(a, b) == pytest.approx(0.0, abs=1e-12)


def test_statistics_from_sums_equal_numpy_mean_and_cov() -> None:
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(50, 6)).astype(np.float32)
    stats = sums_stats(x)
    assert stats.n == 50
    np.testing.assert_allclose(stats.mu, x.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-12)
    halves = SumsAccumulator(6), SumsAccumulator(6)
    halves[0].add(x[:20])
    halves[1].add(x[20:])
    halves[0].merge(halves[1])
    np.testing.assert_allclose(halves[0].stats().sigma, stats.sigma, rtol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        sums_stats(x[:1])


def test_paper_code_fid_per_emotion_and_aggregated_against_direct_sqrtm() -> None:
    rng = np.random.default_rng(2)
    d = 5
    emotions = ["amusement"] * 12 + ["sadness"] * 9
    features = rng.normal(size=(len(emotions), d))
    reference = {e: GaussianStats(rng.normal(size=d), _spd(d, i), 40) for i, e in enumerate(EMOTION_NAMES)}
    pooled = GaussianStats(rng.normal(size=d), _spd(d, 99), 320)

    def direct(ref: GaussianStats, x: np.ndarray) -> float:
        mu, sigma = x.mean(axis=0), np.cov(x, rowvar=False)
        root = linalg.sqrtm(ref.sigma @ sigma).real
        return float((ref.mu - mu) @ (ref.mu - mu) + np.trace(ref.sigma) + np.trace(sigma) - 2 * np.trace(root))

    overall, per_emotion = paper_code_fid(features, emotions, reference, pooled)
    assert list(per_emotion) == ["amusement", "sadness"]
    labels = np.array(emotions)
    for emotion, entry in per_emotion.items():
        assert entry.value == pytest.approx(direct(reference[emotion], features[labels == emotion]), rel=1e-8)
        assert entry.ci95 is None and entry.n == int(np.sum(labels == emotion))
    assert overall.value == pytest.approx(direct(pooled, features), rel=1e-8)
    assert overall.ci95 is None and overall.n == len(emotions)
    assert overall.extra["mean_over_emotions"] == pytest.approx(np.mean([v.value for v in per_emotion.values()]))


# --- Inception preprocessing -------------------------------------------------------------------------------------


def test_inception_preprocessing_is_torchvision_resize_to_tensor_and_byte_truncation() -> None:
    for shape, seed in (((256, 256), 0), ((300, 420), 1), ((512, 384), 2)):
        image = _random_image(shape, seed)
        got = TorchvisionResizeBytes()(image)
        resized = transforms.Resize((299, 299), interpolation=transforms.InterpolationMode.BILINEAR)(
            Image.fromarray(image)
        )
        expected = (transforms.ToTensor()(resized) * 255).to(torch.uint8)  # torchmetrics' normalize=True step
        assert got.dtype == torch.uint8 and got.shape == (3, 299, 299)
        assert torch.equal(got, expected)
        as_pil = torch.from_numpy(np.asarray(resized).transpose(2, 0, 1).copy())
        assert (got.int() - as_pil.int()).abs().max() <= 1  # ToTensor * 255 then truncation: at most one level


def test_paper_code_inception_feeds_the_bytes_to_the_network_and_never_shares_cache_entries() -> None:
    model = TinyInception().eval()
    plain = InceptionExtractor(model, {"inception-fid": "sha256:x"})
    paper = PaperCodeInceptionExtractor(model, {"inception-fid": "sha256:x"})
    assert is_paper_code(paper.info) and not is_paper_code(plain.info)
    assert paper.info.cache_key != plain.info.cache_key and paper.info.name == plain.info.name == "inception"
    images = [_random_image((280, 330), 3), _random_image((256, 256), 4)]
    batch = torch.stack([paper.preprocess(image) for image in images])
    got = paper(batch)["pool"]
    inputs = (batch.float() - 128) / 128
    with torch.no_grad():
        direct = model.layers(inputs).flatten(1).numpy()
    scale, unit = network_bound(list(model.layers), inputs)
    # the same float32 layers on the same inputs, batched differently: each within gamma_K |W||x| of exact
    np.testing.assert_array_less(np.abs(got - direct), np.broadcast_to(2 * unit * scale, got.shape))
    assert not torch.equal(batch.float(), torch.stack([plain.preprocess(image) for image in images]))


def test_tiny_extractors_build_the_paper_code_variant_with_the_same_weights() -> None:
    plain = tiny_extractors(["inception"])["inception"]
    paper = tiny_extractors(["inception"], protocol=PAPER_CODE)["inception"]
    assert is_paper_code(paper.info) and paper.info.smoke
    assert dict(paper.info.artifacts) == dict(plain.info.artifacts)
    for a, b in zip(plain.model.parameters(), paper.model.parameters()):
        assert torch.equal(a, b)


# --- LPIPS on [0, 1] ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lpips_model() -> lpips.LPIPS:
    """LPIPS v0.1 as the benchmark builds it: a seeded random AlexNet trunk, the released linear layers."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        trunk = alexnet(weights=None)
    return build_lpips_alex(trunk, load_lpips_linear(PACKAGE_LINEAR))


def _package_lpips(trunk_state: dict[str, torch.Tensor]) -> lpips.LPIPS:
    """The lpips package's own network (its linear layers), the trunk weights copied in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        network = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    network.net.load_state_dict(trunk_state)
    return network.eval()


def test_lpips_is_the_package_on_unit_range_tensors_not_on_minus_one_one(lpips_model: lpips.LPIPS) -> None:
    package = _package_lpips(lpips_model.net.state_dict())
    a, b = _random_image((64, 80), 5), _random_image((64, 80), 6)
    got = lpips_unit_distance(lpips_model, a, b)
    to_tensor = transforms.ToTensor()
    with torch.no_grad():
        expected = package(to_tensor(a)[None], to_tensor(b)[None]).item()
        correct = package(lpips.im2tensor(a), lpips.im2tensor(b)).item()  # LPIPS as intended: [-1, 1]
    assert got == expected  # the same float32 modules on the same one-image batches: bit for bit on any CPU
    assert abs(got - correct) > 0.01 * correct  # the quirk changes the number


def test_an_lpips_pair_of_two_sizes_is_refused_naming_both_files(lpips_model: lpips.LPIPS, tmp_path: Path) -> None:
    from emogen_bench.hashing import sha256_file

    items = []
    for name, shape in (("a.jpg", (64, 64)), ("b.jpg", (64, 72))):
        Image.fromarray(_random_image(shape, 7)).save(tmp_path / name, quality=95)
        items.append(ImageItem(tmp_path / name, f"awe/{name}", sha256_file(tmp_path / name), "awe"))
    with pytest.raises(InvalidInputError) as caught:
        score_pairs(items, {"awe": np.array([[0, 1]])}, lpips_model=lpips_model, device="cpu")
    assert str(tmp_path / "a.jpg") in str(caught.value) and str(tmp_path / "b.jpg") in str(caught.value)


# --- CLIP double rescale -----------------------------------------------------------------------------------------


def test_double_rescale_shows_clip_a_nearly_constant_image() -> None:
    clip = tiny_extractors(["clip"])["clip"]
    processor = clip.pixel_settings
    image = _random_image((40, 48), 8)
    once = clip.model_input(ClipPreprocess(processor)(image)[None])[0]  # the pixels of the uint8 image
    twice = double_rescaled(processor, image)  # the processor's pipeline on the [0, 1] float image
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)
    expected = ((once * std + mean) / 255 - mean) / std
    assert torch.allclose(twice, expected, atol=2e-3)  # equal up to the resize's rounding
    assert float(twice.std(dim=(1, 2)).max()) < 0.02 < float(once.std(dim=(1, 2)).min())  # nearly uniform
    embeddings = double_rescaled_embeddings(clip.vision_model, processor, [image, _random_image((32, 32), 9)])
    # in the fixed batches of 16 the function uses: the same float32 module on the same pixels, bit for bit
    direct = run_fixed_batches(lambda b: {"e": clip_image_embeddings(clip.vision_model, b)}, twice[None])["e"]
    assert np.array_equal(embeddings[:1], direct)


def test_pair_mse_is_the_mean_squared_difference_over_dimensions() -> None:
    x = np.random.default_rng(3).normal(size=(4, 2, 7))
    expected = [np.mean((x[i, 0] - x[i, 1]) ** 2) for i in range(4)]
    np.testing.assert_allclose(pair_mse(x), expected, rtol=1e-12)


# --- pair sampling -----------------------------------------------------------------------------------------------


FILES = ["amusement"] * 3 + ["awe"] * 4 + ["contentment"] * 2 + ["fear"] * 3


def test_pairs_are_seeded_distinct_and_counted() -> None:
    emotions = ["amusement", "awe", "contentment", "fear"]
    plan = sample_pairs(FILES, emotions, 10, seed=0)
    again = sample_pairs(FILES, emotions, 10, seed=0)
    other = sample_pairs(FILES, emotions, 10, seed=1)
    assert list(plan.pairs) == emotions
    for emotion in emotions:
        assert plan.pairs[emotion].shape == (10, 2)
        assert np.all(plan.pairs[emotion][:, 0] != plan.pairs[emotion][:, 1])
        np.testing.assert_array_equal(plan.pairs[emotion], again.pairs[emotion])
    assert any(not np.array_equal(plan.pairs[e], other.pairs[e]) for e in emotions)
    assert sample_pairs(FILES, emotions, 3, seed=0).pairs["fear"].shape == (3, 2)


def test_the_pool_is_never_reset_between_emotions() -> None:
    emotions = ["amusement", "awe", "contentment", "fear"]
    plan = sample_pairs(FILES, emotions, 10, seed=0)
    labels = np.array(FILES)
    expected_pool = {"amusement": 3, "awe": 7, "contentment": 9, "fear": 12}
    assert dict(plan.pool_size) == expected_pool
    for emotion in emotions:
        assert plan.pairs[emotion].max() < expected_pool[emotion]  # emotion k draws only from emotions 1..k
    assert np.all(labels[plan.pairs["amusement"]] == "amusement")
    assert np.any(labels[plan.pairs["fear"]] != "fear")  # a later emotion's pairs cross emotions
    # the sampling is the documented one: one generator, emotions in order, two distinct indices per pair
    rng = np.random.default_rng(0)
    for emotion in emotions:
        direct = np.array([rng.choice(expected_pool[emotion], size=2, replace=False) for _ in range(10)])
        np.testing.assert_array_equal(plan.pairs[emotion], direct)


def test_only_files_ending_in_jpg_are_read_and_a_short_pool_is_an_error() -> None:
    assert is_jpg("awe/0001.jpg") and is_jpg("awe/x.ajpg")
    assert not any(is_jpg(name) for name in ("awe/1.png", "awe/1.jpeg", "awe/1.JPG", "awe/1.jpg.png"))
    with pytest.raises(ValueError, match="amusement: only 1"):
        sample_pairs(["amusement", "awe", "awe"], ["amusement", "awe"], 5, seed=0)
    with pytest.raises(ValueError, match="pairs must be"):
        sample_pairs(FILES, ["awe"], 0, seed=0)
    with pytest.raises(ValueError, match="canonical order"):
        sample_pairs(["awe", "amusement"], ["awe"], 1, seed=0)


def test_pair_metric_means_and_bootstrap() -> None:
    emotions = ["amusement", "awe"]
    plan = sample_pairs(FILES[:7], emotions, 6, seed=0)
    values = {e: np.random.default_rng(i).uniform(size=6) for i, e in enumerate(emotions)}
    overall, per_emotion = pair_metric(values, plan, FILES[:7], seed=0, skipped=2)
    for emotion in emotions:
        entry = per_emotion[emotion]
        assert isinstance(entry, MetricValue)
        assert entry.value == pytest.approx(values[emotion].mean())
        assert entry.ci95 == bootstrap_mean_interval(values[emotion], seed=0)
        assert entry.n == np.unique(plan.pairs[emotion]).size and entry.extra["pairs"] == 6
    assert overall.value == pytest.approx(np.mean([values[e].mean() for e in emotions]))
    lo, hi = overall.ci95
    assert lo <= overall.value <= hi
    assert overall.extra["skipped_non_jpg"] == 2 and overall.extra["jpg_files"] == 7 and overall.extra["pairs"] == 12
    assert per_emotion["amusement"].extra["cross_emotion_pairs"] == 0
