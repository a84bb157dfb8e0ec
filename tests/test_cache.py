"""``FeatureCache``: exact round trips, keys that separate extractors, damaged entries treated as absent."""

from __future__ import annotations

import hashlib
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from emogen_bench.cache import FeatureCache, encode_outputs
from emogen_bench.features.base import ExtractorInfo

INFO = ExtractorInfo("toy", {"vec": (5,), "score": ()}, "toy-v1", {"toy-weights": "sha256:" + "ab" * 32})


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def outputs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"vec": rng.standard_normal(5).astype(np.float32), "score": np.float32(rng.random())}


@pytest.fixture
def cache(tmp_path: Path) -> FeatureCache:
    return FeatureCache(tmp_path / "cache")


def test_round_trip_is_exact_and_keeps_dtypes(cache: FeatureCache) -> None:
    stored = {sha(f"image{i}"): outputs(i) for i in range(3)}
    stored[sha("ints")] = {"vec": np.arange(5, dtype=np.int64), "score": np.int64(7)}
    cache.put_many(INFO, stored)
    found = cache.get_many(INFO, [*stored, sha("never stored")])
    assert set(found) == set(stored)
    for key, arrays in stored.items():
        for name, value in arrays.items():
            assert found[key][name].dtype == np.asarray(value).dtype
            assert found[key][name].shape == INFO.outputs[name]
            np.testing.assert_array_equal(found[key][name], value)


def test_entries_are_separated_by_extractor_identity(cache: FeatureCache) -> None:
    key = sha("image")
    cache.put_many(INFO, {key: outputs(0)})
    other_weights = ExtractorInfo("toy", INFO.outputs, "toy-v1", {"toy-weights": "sha256:" + "cd" * 32})
    other_preprocessing = ExtractorInfo("toy", INFO.outputs, "toy-v2", INFO.artifacts)
    other_name = ExtractorInfo("toy2", INFO.outputs, "toy-v1", INFO.artifacts)
    for info in (other_weights, other_preprocessing, other_name):
        assert info.cache_key != INFO.cache_key or info.name != INFO.name
        assert cache.get_many(info, [key]) == {}
    assert set(cache.get_many(INFO, [key])) == {key}


def _damage_garbage(path: Path) -> None:
    path.write_bytes(b"not an npz at all")


def _damage_empty(path: Path) -> None:
    path.write_bytes(b"")


def _damage_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _damage_flipped_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the first array's data: the zip CRC check fails
    path.write_bytes(bytes(data))


def _damage_wrong_shape(path: Path) -> None:
    path.write_bytes(encode_outputs({"vec": np.zeros(4, np.float32), "score": np.float32(0)}))


def _damage_missing_output(path: Path) -> None:
    path.write_bytes(encode_outputs({"vec": np.zeros(5, np.float32)}))


def _damage_pickled(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("vec.npy", b"\x80\x04K\x01.")
        archive.writestr("score.npy", b"\x80\x04K\x01.")


@pytest.mark.parametrize(
    "damage",
    [_damage_garbage, _damage_empty, _damage_truncated, _damage_flipped_byte, _damage_wrong_shape,
     _damage_missing_output, _damage_pickled],
)
def test_a_damaged_entry_is_absent_not_an_error(cache: FeatureCache, damage) -> None:  # type: ignore[no-untyped-def]
    good, bad = sha("good"), sha("bad")
    cache.put_many(INFO, {good: outputs(0), bad: outputs(1)})
    damage(cache.item_path(INFO, bad))
    assert set(cache.get_many(INFO, [good, bad])) == {good}
    cache.put_many(INFO, {bad: outputs(1)})  # recomputed and stored again: readable once more
    np.testing.assert_array_equal(cache.get_many(INFO, [bad])[bad]["vec"], outputs(1)["vec"])


def test_disabled_cache_stores_and_finds_nothing(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache", enabled=False)
    cache.put_many(INFO, {sha("x"): outputs(0)})
    cache.put_summary("lpips-key", {"mean": 1.0})
    assert not (tmp_path / "cache").exists()
    assert cache.get_many(INFO, [sha("x")]) == {}
    assert cache.get_summary("lpips-key") is None


def test_extractors_that_are_not_cacheable_are_never_stored(cache: FeatureCache) -> None:
    big = ExtractorInfo("lpips", {"phi": (5,)}, "v1", cacheable=False)
    cache.put_many(big, {sha("x"): {"phi": np.ones(5, np.float32)}})
    assert cache.size() == 0
    assert cache.get_many(big, [sha("x")]) == {}


def test_summaries_round_trip_with_nan_and_damaged_ones_are_absent(cache: FeatureCache) -> None:
    document = {"mean": 0.25, "loo": [0.1, float("nan"), 1 / 3], "n": 5}
    cache.put_summary("lpips-abc", document)
    found = cache.get_summary("lpips-abc")
    assert found["mean"] == 0.25 and found["loo"][2] == 1 / 3 and math.isnan(found["loo"][1])
    assert cache.get_summary("lpips-other") is None
    cache.summary_path("lpips-abc").write_text('{"mean": 0.2', encoding="utf-8")
    assert cache.get_summary("lpips-abc") is None


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "x" * 200])
def test_summary_keys_cannot_leave_the_cache(cache: FeatureCache, bad: str) -> None:
    with pytest.raises(ValueError, match="plain name"):
        cache.summary_path(bad)


@pytest.mark.parametrize("bad", ["../" + "a" * 61, "A" * 64, "a" * 63, "g" * 64])
def test_image_keys_must_be_sha256(cache: FeatureCache, bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        cache.get_many(INFO, [bad])


def test_writes_leave_no_temporary_files(cache: FeatureCache) -> None:
    cache.put_many(INFO, {sha(f"i{i}"): outputs(i) for i in range(4)})
    cache.put_summary("lpips-k", {"mean": 1.0})
    files = [p for p in cache.root.rglob("*") if p.is_file()]
    assert len(files) == 5
    assert not [p for p in files if p.name.endswith(".tmp")]


def test_size_and_clear_touch_only_the_cache_files(cache: FeatureCache) -> None:
    cache.root.mkdir(parents=True)
    unrelated = cache.root / "notes.txt"
    unrelated.write_text("keep me", encoding="utf-8")
    assert cache.size() == 0
    cache.put_many(INFO, {sha(f"i{i}"): outputs(i) for i in range(3)})
    cache.put_summary("lpips-k", {"mean": 1.0})
    expected = sum(p.stat().st_size for p in cache.root.rglob("*") if p.is_file() and p != unrelated)
    assert cache.size() == expected > 0
    assert cache.clear() == expected
    assert cache.size() == 0
    assert cache.get_many(INFO, [sha("i0")]) == {}
    assert unrelated.read_text(encoding="utf-8") == "keep me"


def test_default_root_is_under_the_benchmark_home(bench_home: Path) -> None:
    cache = FeatureCache()
    assert cache.root == bench_home / "features"
    cache.put_many(INFO, {sha("x"): outputs(0)})
    assert cache.item_path(INFO, sha("x")).is_file()
    assert cache.item_path(INFO, sha("x")).is_relative_to(bench_home / "features")
