"""The tiny model set: deterministic, labelled as smoke, same interface as the real extractors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from emogen_bench.errors import UsageError
from emogen_bench.features import EXTRACTOR_NAMES, tiny_extractors
from emogen_bench.features.tiny import TINY_BUILDERS, smoke_digest


@pytest.fixture(scope="module")
def tiny() -> dict:
    return tiny_extractors()


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (256 + 8 * i, 320 - 4 * i, 3), dtype=np.uint8) for i in range(n)]


def _run(extractor, images: list[np.ndarray]) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    return extractor(torch.stack([extractor.preprocess(image) for image in images]))


def test_every_extractor_is_built_in_order_and_labelled_smoke(tiny: dict) -> None:
    assert tuple(tiny) == EXTRACTOR_NAMES == tuple(TINY_BUILDERS)
    for name, extractor in tiny.items():
        assert extractor.info.name == name and extractor.info.smoke
        assert extractor.info.artifacts and all(d.startswith("smoke:") for d in extractor.info.artifacts.values())


def test_outputs_have_the_declared_names_shapes_and_dtypes(tiny: dict) -> None:
    images = _images(3)
    for name, extractor in tiny.items():
        out = _run(extractor, images)
        assert set(out) == set(extractor.info.outputs), name
        for key, shape in extractor.info.outputs.items():
            assert out[key].shape == (3, *shape), (name, key)
            assert out[key].dtype in (np.float32, np.int64), (name, key)
            assert np.isfinite(out[key]).all(), (name, key)
    probabilities = _run(tiny["semantic"], images)
    assert ((probabilities["imagenet_max_prob"] > 0) & (probabilities["imagenet_max_prob"] <= 1)).all()


def test_same_seed_same_features_other_seed_other_features(tiny: dict) -> None:
    images = _images(2, seed=1)
    again = tiny_extractors(seed=0)
    other = tiny_extractors(seed=1)
    for name in EXTRACTOR_NAMES:
        first = _run(tiny[name], images)
        assert all(np.array_equal(first[k], v) for k, v in _run(again[name], images).items()), name
        assert again[name].info.cache_key == tiny[name].info.cache_key
        assert other[name].info.cache_key != tiny[name].info.cache_key
        float_keys = [k for k, v in first.items() if v.dtype == np.float32]
        changed = _run(other[name], images)
        assert any(not np.array_equal(first[k], changed[k]) for k in float_keys), name


def test_building_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_extractors(["inception", "emoset"])
    assert torch.equal(torch.rand(3), expected)


def test_features_do_not_depend_on_batch_composition(tiny: dict) -> None:
    images = _images(3, seed=2)
    for name, extractor in tiny.items():
        together = _run(extractor, images)
        for i, image in enumerate(images):
            alone = _run(extractor, [image])
            assert all(np.array_equal(alone[k][0], v[i]) for k, v in together.items()), (name, i)


def test_more_than_one_model_batch_is_split_and_padded(tiny: dict) -> None:
    images = _images(19, seed=3)  # 16 + 3: two fixed batches
    out = _run(tiny["emoset"], images)["logits"]
    assert out.shape == (19, 8)
    tail = _run(tiny["emoset"], images[16:])["logits"]
    assert np.array_equal(out[16:], tail)


def test_preprocessors_pickle_without_models(tiny: dict) -> None:
    image = _images(1, seed=4)[0]
    for name, extractor in tiny.items():
        copy = pickle.loads(pickle.dumps(extractor.preprocessor))
        assert torch.equal(copy(image), extractor.preprocess(image)), name


def test_subsets_and_unknown_names() -> None:
    assert list(tiny_extractors(["lpips", "clip"])) == ["lpips", "clip"]
    with pytest.raises(UsageError, match="unknown extractor.*nope"):
        tiny_extractors(["nope"])


def test_smoke_digest_depends_on_config_and_seed() -> None:
    config = {"model": "x", "dim": 4}
    assert smoke_digest(config, 0) == smoke_digest(dict(config), 0)
    assert len({smoke_digest(config, 0), smoke_digest(config, 1), smoke_digest({**config, "dim": 5}, 0)}) == 3
