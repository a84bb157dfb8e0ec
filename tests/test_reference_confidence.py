"""Emotion confidence of the reference EmoGen: the CLIP-space head, attribute tables, the threshold, the release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tolerances import U32, gamma
from torch import nn

from emogen_bench.data import load_index, prepare_emoset
from emogen_bench.demo import write_synthetic_emoset
from emogen_bench.errors import UsageError
from emogen_bench.models.emotion_head import load_emotion_head
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES
from emogen_bench.weights import load_artifact, open_store
from reference.confidence import (
    attribute_confidence,
    clip_embeddings,
    confidence_for,
    emotion_probabilities,
    filter_attributes,
    fold_standardisation,
    load_clip,
    load_confidence_table,
    load_official_head,
    merge_tables,
    official_confidence_table,
    save_clip_head,
    save_confidence_table,
    train_clip_head,
)


def _separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eight Gaussian clusters in 768-d, offset and scaled like raw CLIP embeddings (not standardised)."""
    centres = torch.randn(8, 768, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 8
    embeddings = 0.4 * centres[labels] + torch.randn(n, 768, generator=g) + 0.3
    return embeddings * torch.linspace(0.2, 3.0, 768), labels


def test_the_linear_head_separates_separable_embeddings() -> None:
    x, y = _separable(800, 0)
    x_eval, y_eval = _separable(400, 1)
    head, accuracy = train_clip_head(x, y, eval_embeddings=x_eval, eval_labels=y_eval, epochs=10, batch_size=64)
    assert isinstance(head, nn.Linear) and head.weight.shape == (8, 768)
    assert accuracy > 0.95
    direct = float((head(x_eval).argmax(1) == y_eval).double().mean())
    assert accuracy == direct
    again, _ = train_clip_head(x, y, epochs=10, batch_size=64)
    assert torch.equal(again.weight, head.weight)  # seeded


def test_folding_the_standardisation_gives_the_same_logits() -> None:
    g = torch.Generator().manual_seed(0)
    linear = nn.Linear(5, 8)
    centre, scale = torch.randn(5, generator=g), torch.rand(5, generator=g) + 0.5
    x = torch.randn(7, 5, generator=g)
    folded = fold_standardisation(linear, centre, scale)
    # two float32 routes to one affine map: standardise then a d-term dot product (gamma_{d+3}), or the folded
    # weights rounded to float32 then a d-term dot product (gamma_{d+2}); each relative to
    # T = sum_j |W_j| (|x_j| + |c_j|) / s_j + |b| (float64 folding adds a few eps64, inside the spare gamma_2)
    weight = linear.weight.detach().abs()
    size = (x.abs() + centre.abs()) / scale @ weight.T + linear.bias.detach().abs()
    assert torch.all((folded(x) - linear((x - centre) / scale)).abs() <= gamma(2 * x.shape[1] + 7, U32) * size)


def test_attribute_confidence_is_the_groupby_mean_of_probabilities() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 8))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    attributes = [["cemetery", "beach", "castle"][i % 3] if i % 7 else "dog" for i in range(50)]
    table = attribute_confidence(torch.from_numpy(probs), attributes)
    assert sorted(table) == sorted(set(attributes))
    for name in set(attributes):
        rows = [p for p, a in zip(probs, attributes) if a == name]
        expected = np.sum(rows, axis=0) / len(rows)
        assert table[name].dtype == np.float32
        np.testing.assert_allclose(table[name], expected, rtol=1e-6)
        assert table[name].sum() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(UsageError, match="probabilities"):
        attribute_confidence(probs[:3], attributes)


def test_the_threshold_filter_and_the_lookup() -> None:
    table = {
        "cemetery": np.array([0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.04, 0.90], dtype=np.float32),
        "plant": np.full(8, 0.125, dtype=np.float32),
        "grave": np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.7], dtype=np.float32),
    }
    assert confidence_for(table, "cemetery", "sadness") == pytest.approx(0.90)
    assert confidence_for(table, "cemetery", EMOTION_IDS["sadness"]) == pytest.approx(0.90)
    assert confidence_for(table, "plant", "awe", threshold=0.2) == 0.0
    assert confidence_for(table, "plant", "awe", threshold=0.125) == 0.125
    assert confidence_for(table, "unknown_attribute", "awe") == 0.0
    kept = filter_attributes(table, threshold=0.5)
    assert kept["sadness"] == ["cemetery", "grave"] and kept["awe"] == []
    assert filter_attributes(table, ["fear"], threshold=0.1) == {"fear": ["grave", "plant"]}
    assert filter_attributes(table, threshold=0.0)["amusement"] == ["plant", "cemetery", "grave"]
    with pytest.raises(UsageError, match="joy"):
        confidence_for(table, "plant", "joy")


def test_merging_follows_the_released_order() -> None:
    scene = {"tower": np.full(8, 0.125, dtype=np.float32), "beach": np.eye(8, dtype=np.float32)[0]}
    obj = {"tower": np.eye(8, dtype=np.float32)[1]}
    merged = merge_tables({"scene": scene, "object": obj})
    assert np.array_equal(merged["tower"], obj["tower"]) and np.array_equal(merged["beach"], scene["beach"])


def test_tables_and_heads_round_trip_through_files(tmp_path: Path, bench_home: Path) -> None:
    table = attribute_confidence(np.full((2, 8), 0.125), ["a", "b"])
    table["c"] = np.array([0.1, 0.2, 0.05, 0.05, 0.1, 0.1, 0.2, 0.2], dtype=np.float32)
    path = save_confidence_table(table, tmp_path / "confidence.json", counts={"a": 1, "b": 1, "c": 3})
    again = load_confidence_table(path)
    assert sorted(again) == sorted(table) and all(np.array_equal(again[k], table[k]) for k in table)
    with pytest.raises(UsageError, match="already exists"):
        save_confidence_table(table, path)
    head = nn.Linear(768, 8)
    head_path = save_clip_head(head, tmp_path / "head.pth")
    assert torch.equal(load_emotion_head(head_path).fc.weight, head.weight)
    override = tmp_path / "override.toml"
    override.write_text(f'[artifacts.emo-head-clip]\npath = "{head_path.as_posix()}"\n')
    assert torch.equal(load_official_head(open_store(override, offline=True)).bias, head.bias)


def test_the_official_head_and_tables_load(official_artifacts: Path, tmp_path: Path, bench_home: Path) -> None:
    override = tmp_path / "override.toml"
    override.write_text(
        f'[artifacts.emo-head-clip]\npath = "{(official_artifacts / "weights" / "clip_emotion_head.pth").as_posix()}"\n'
        f'[artifacts.attr-coefficients]\npath = "{(official_artifacts / "dataset_balance").as_posix()}"\n'
    )
    store = open_store(override, offline=True)
    head = load_official_head(store)
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (768, 8)
    assert emotion_probabilities(head, torch.randn(4, 768)).sum(1).allclose(torch.ones(4))
    table = official_confidence_table(store)
    assert table["amusement_park"].argmax() == EMOTION_IDS["amusement"]
    assert confidence_for(table, "amusement_park", "amusement") == pytest.approx(0.967, abs=5e-4)
    assert confidence_for(table, "cemetery", "sadness") == pytest.approx(0.972, abs=5e-4)
    raw = load_artifact("attr-coefficients", store).value
    assert np.array_equal(table["tower"], raw["object"]["tower"])  # object overrides scene, as released
    assert len(table) == len(set(raw["object"]) | set(raw["scene"]))
    confident_sadness = filter_attributes(table, ["sadness"], threshold=0.97)["sadness"]
    assert "cemetery" in confident_sadness and "amusement_park" not in confident_sadness
    assert all(table[name][EMOTION_IDS["sadness"]] >= 0.97 for name in confident_sadness)


def test_clip_embeddings_of_emoset_images(tmp_path: Path, bench_home: Path) -> None:
    import checkpoints

    from emogen_bench.models.clip import clip_image_embeddings

    snapshot = checkpoints.write_clip_snapshot(tmp_path / "clip", projection_dim=768)
    override = tmp_path / "override.toml"
    override.write_text(f'[artifacts.clip-vit-l14]\npath = "{snapshot.as_posix()}"\n')
    model, settings = load_clip(open_store(override, offline=True))
    write_synthetic_emoset(tmp_path / "emoset")
    prepare_emoset(tmp_path / "emoset", tmp_path / "index", show_progress=False)
    rows = load_index(tmp_path / "index")[:10]
    embeddings = clip_embeddings(rows, tmp_path / "emoset", model, settings, batch_size=4, show_progress=False)
    assert embeddings.shape == (10, 768)
    from PIL import Image

    peer = checkpoints.pil_clip_processor(snapshot)  # transformers' PIL pipeline, as the benchmark's pixels
    images = []
    for row in rows[:4]:  # the first batch of 4, as clip_embeddings runs it
        with Image.open(tmp_path / "emoset" / row.path) as image:
            images.append(image.convert("RGB"))
    pixels = peer(images=images, return_tensors="pt").pixel_values
    with torch.no_grad():
        expected = clip_image_embeddings(model, pixels)[3]
    assert torch.equal(embeddings[3], expected)  # the same float32 model on the same batch: bit for bit, any CPU
    probs = emotion_probabilities(nn.Linear(768, 8), embeddings)
    table = attribute_confidence(probs, [row.attribute for row in rows])
    assert set(table) == {row.attribute for row in rows}
    assert all(name in EMOTION_NAMES for name in filter_attributes(table))
