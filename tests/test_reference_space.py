"""The emotion space of the reference EmoGen: fitting, sampling, files, the official statistics, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tolerances import U32, mean_rounding_bound, std_difference_bound
from torch import nn
from torch.utils.data import DataLoader

from emogen_bench.data import load_index, prepare_emoset
from emogen_bench.demo import write_synthetic_emoset
from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.task import EMOTION_NAMES
from emogen_bench.weights import open_store
from reference.data import EmoSetImages, encoder_transform
from reference.encoder import EmotionClassifier, TinyTrunk
from reference.space import (
    EmotionSpace,
    bhattacharyya_diagonal,
    collect_features,
    fit_space,
    format_space_report,
    load_official_space,
    space_report,
)


class _Identity(nn.Module):
    """An "encoder" whose features are its inputs, so the expected statistics are known exactly."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _numpy_space(features: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        EMOTION_NAMES[k]: (features[labels == k].mean(axis=0), features[labels == k].std(axis=0, ddof=1))
        for k in np.unique(labels)
    }


def test_fit_space_equals_numpy_float64_on_the_features() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, size=403)
    features = (rng.normal(size=(403, 768)) * 3 + 1e3 + labels[:, None]).astype(
        np.float32
    )  # large offset: float64 matters
    batches = [
        (torch.from_numpy(features[i : i + 37]), torch.from_numpy(labels[i : i + 37])) for i in range(0, 403, 37)
    ]
    space = fit_space(_Identity(), batches)
    expected = _numpy_space(features.astype(np.float64), labels)
    assert space.emotions == tuple(expected)
    for emotion, (mean, std) in expected.items():
        assert space.mean[emotion].dtype == torch.float32 and space.mean[emotion].shape == (768,)
        np.testing.assert_allclose(space.mean[emotion].numpy(), mean.astype(np.float32), rtol=1e-7)
        np.testing.assert_allclose(space.std[emotion].numpy(), std.astype(np.float32), rtol=1e-6)
        assert space.counts[emotion] == int((labels == EMOTION_NAMES.index(emotion)).sum())


def _encoded(encoder: nn.Module, loader: DataLoader) -> np.ndarray:
    """``encoder.encode`` on the loader's batches as they come (float64 copies of the float32 features)."""
    with torch.no_grad():
        return np.concatenate([encoder.encode(batch[0]).double().numpy() for batch in loader])


def test_fit_space_on_encoder_outputs_of_a_fake_emoset(tmp_path: Path) -> None:
    write_synthetic_emoset(tmp_path / "emoset")
    prepare_emoset(tmp_path / "emoset", tmp_path / "index", show_progress=False)
    dataset = EmoSetImages(
        load_index(tmp_path / "index"), tmp_path / "emoset", encoder_transform(False, resize=40, crop=32)
    )
    torch.manual_seed(0)
    encoder = EmotionClassifier(TinyTrunk()).eval()
    space = fit_space(encoder, DataLoader(dataset, batch_size=5))
    features = _encoded(encoder, DataLoader(dataset, batch_size=5))  # fit_space's batches: its features exactly
    labels = dataset.labels().numpy()
    for emotion, (mean, std) in _numpy_space(features, labels).items():
        rows = features[labels == EMOTION_NAMES.index(emotion)]
        # float64 on both sides, then fit_space's cast to float32 (u32 relative)
        mean_tol = 2 * mean_rounding_bound(rows)
        mean_tol += U32 * (np.abs(mean) + mean_tol)
        np.testing.assert_array_less(np.abs(space.mean[emotion].numpy() - mean), mean_tol)
        std_tol = std_difference_bound(rows)
        np.testing.assert_array_less(np.abs(space.std[emotion].numpy() - std), std_tol + U32 * (std + std_tol))
    grouped = collect_features(encoder, DataLoader(dataset, batch_size=7))
    awe = _encoded(encoder, DataLoader(dataset, batch_size=7))[labels == 1]  # the same batches: bit for bit
    assert np.array_equal(grouped["awe"], awe.astype(np.float32))


def _space(seed: int = 0, dim: int = 768) -> EmotionSpace:
    g = torch.Generator().manual_seed(seed)
    return EmotionSpace(
        mean={e: torch.randn(dim, generator=g) for e in EMOTION_NAMES},
        std={e: torch.rand(dim, generator=g) * 0.5 + 0.1 for e in EMOTION_NAMES},
    )


def test_sampling_is_seeded_and_has_the_space_statistics() -> None:
    space = _space()
    draw = space.sample("fear", 20_000, torch.Generator().manual_seed(7))
    assert draw.shape == (20_000, 768) and draw.dtype == torch.float32
    assert torch.equal(draw, space.sample(6, 20_000, torch.Generator().manual_seed(7)))
    assert not torch.equal(draw[:10], space.sample("fear", 10, torch.Generator().manual_seed(8)))
    std = space.std["fear"].double()
    standard_error = std / np.sqrt(20_000)
    assert ((draw.double().mean(0) - space.mean["fear"].double()).abs() < 5 * standard_error).all()
    assert ((draw.double().std(0) / std - 1).abs() < 0.04).all()  # se of a std ratio: 1/sqrt(2n) = 0.005
    with pytest.raises(UsageError, match="joy"):
        space.sample("joy", 1)


def test_save_and_load_round_trip_and_no_silent_overwrite(tmp_path: Path) -> None:
    space = _space(3)
    space.counts = {e: 10 + i for i, e in enumerate(EMOTION_NAMES)}
    space.source = "unit test"
    path = space.save(tmp_path / "space.safetensors")
    again = EmotionSpace.load(path)
    assert again.emotions == space.emotions and again.counts == space.counts and again.source == "unit test"
    assert all(
        torch.equal(again.mean[e], space.mean[e]) and torch.equal(again.std[e], space.std[e]) for e in EMOTION_NAMES
    )
    with pytest.raises(UsageError, match="already exists"):
        space.save(path)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="bad.safetensors"):
        EmotionSpace.load(tmp_path / "bad.safetensors")


def test_the_official_emotion_space_loads(official_artifacts: Path, tmp_path: Path, bench_home: Path) -> None:
    override = tmp_path / "override.toml"
    override.write_text(f'[artifacts.emo-space]\npath = "{(official_artifacts / "emo_space").as_posix()}"\n')
    space = load_official_space(open_store(override, offline=True))
    assert space.emotions == EMOTION_NAMES and space.dim == 768
    assert space.source.startswith("emo-space sha256:")
    norms = [float(space.mean[e].norm()) for e in EMOTION_NAMES]
    assert 12.65 <= min(norms) and max(norms) <= 18.35  # PROTOCOL.md section 5: 12.7-18.3 (one decimal)
    average_std = [float(space.std[e].mean()) for e in EMOTION_NAMES]
    assert 0.375 <= min(average_std) and max(average_std) <= 0.515  # 0.38-0.51
    assert space.sample("awe", 3, torch.Generator().manual_seed(0)).shape == (3, 768)


def _bhattacharyya_full(m1, s1, m2, s2) -> float:  # type: ignore[no-untyped-def]
    """Textbook formula with full covariance matrices (numpy linalg), as an independent check."""
    c1, c2 = np.diag(np.square(s1)), np.diag(np.square(s2))
    c = (c1 + c2) / 2
    d = np.asarray(m1) - np.asarray(m2)
    return float(
        d @ np.linalg.inv(c) @ d / 8 + 0.5 * np.log(np.linalg.det(c) / np.sqrt(np.linalg.det(c1) * np.linalg.det(c2)))
    )


def test_bhattacharyya_distance_equals_the_direct_formula() -> None:
    m1, s1, m2, s2 = [1.0, -2.0, 0.5], [0.5, 1.0, 2.0], [0.0, 1.0, 0.5], [1.0, 0.25, 2.0]
    assert bhattacharyya_diagonal(m1, s1, m2, s2) == pytest.approx(_bhattacharyya_full(m1, s1, m2, s2), rel=1e-12)
    assert bhattacharyya_diagonal(m1, s1, m1, s1) == 0.0
    space = EmotionSpace(
        mean={"awe": torch.tensor(m1), "fear": torch.tensor(m2)},
        std={"awe": torch.tensor(s1), "fear": torch.tensor(s2)},
    )
    report = space_report({"awe": np.zeros((3, 3)) + m1, "fear": np.zeros((3, 3)) + m2}, space)
    assert report["separation"]["bhattacharyya"]["awe|fear"] == pytest.approx(
        _bhattacharyya_full(m1, s1, m2, s2), rel=1e-6
    )
    assert report["separation"]["nearest_mean_accuracy"] == 1.0
    assert report["fit"]["awe"]["mean_excess_kurtosis"] is None and report["fit"]["awe"]["constant_dims"] == 3
    json.dumps(report, allow_nan=False)


def test_the_gaussian_fit_statistic_is_near_zero_for_normal_data_and_large_for_bimodal() -> None:
    rng = np.random.default_rng(1)
    normal = rng.normal(2.0, 0.5, size=(4000, 16))
    signs = rng.choice([-1.0, 1.0], size=(4000, 16))
    bimodal = signs * 3.0 + rng.normal(size=(4000, 16))

    def fitted(name: str, x: np.ndarray) -> EmotionSpace:
        return EmotionSpace(mean={name: torch.from_numpy(x.mean(0))}, std={name: torch.from_numpy(x.std(0, ddof=1))})

    normal_fit = space_report({"awe": normal}, fitted("awe", normal))["fit"]["awe"]
    bimodal_fit = space_report({"awe": bimodal}, fitted("awe", bimodal))["fit"]["awe"]
    assert normal_fit["mean_ks"] < 0.03 and abs(normal_fit["mean_excess_kurtosis"]) < 0.2
    assert normal_fit["mean_abs_skewness"] < 0.1
    assert bimodal_fit["mean_ks"] > 0.1
    assert bimodal_fit["mean_excess_kurtosis"] == pytest.approx(-1.62, abs=0.1)  # mixture of N(+-3, 1): 138/100 - 3


def test_the_report_is_json_and_a_readable_table() -> None:
    space = _space(5, dim=32)
    generator = torch.Generator().manual_seed(0)
    features = {e: space.sample(e, 200, generator).numpy() for e in EMOTION_NAMES}
    report = space_report(features, space)
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert len(report["separation"]["bhattacharyya"]) == 28
    assert report["separation"]["gaussian_likelihood_accuracy"] > 0.95
    text = format_space_report(report)
    assert all(emotion in text for emotion in EMOTION_NAMES) and "nearest-mean accuracy" in text
