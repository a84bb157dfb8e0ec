"""``FeatureCache`` under hostile input: edited, moved, deep or odd entries are misses with a warning; a folder
that cannot be written is one warning, never an error (issue 12)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from emogen_bench.cache import FeatureCache, encode_outputs, encode_summary
from emogen_bench.features.base import ExtractorInfo

INFO = ExtractorInfo("toy", {"vec": (5,), "score": ()}, "toy-v1", {"toy-weights": "sha256:" + "ab" * 32})
KEY = "lpips-abc"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def outputs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"vec": rng.standard_normal(5).astype(np.float32), "score": np.float32(rng.random())}


def warnings_of(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The warning lines written on stderr since the last call."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("emogen-bench: warning: ")]


@pytest.fixture
def cache(tmp_path: Path) -> FeatureCache:
    return FeatureCache(tmp_path / "cache")


# --- summaries ----------------------------------------------------------------------------------------------------


def test_a_summary_carries_its_key_and_checksum_and_round_trips_non_finite_floats(
    cache: FeatureCache, capsys: pytest.CaptureFixture[str]
) -> None:
    document = {"mean": 0.25, "loo": [0.1, float("nan"), float("inf"), -float("inf")], "n": 5}
    cache.put_summary(KEY, document)
    stored = json.loads(cache.summary_path(KEY).read_text(encoding="utf-8"))  # strict JSON: no NaN literal
    assert stored["key"] == KEY and len(stored["sha256"]) == 64
    assert stored["document"]["loo"][1] == {"__float__": "nan"}
    found = cache.get_summary(KEY)
    assert found["loo"][0] == 0.1 and np.isnan(found["loo"][1]) and found["loo"][2:] == [float("inf"), -float("inf")]
    assert warnings_of(capsys) == []


def _edit_value(path: Path) -> None:
    envelope = json.loads(path.read_text(encoding="utf-8"))
    envelope["document"]["mean"] = 0.999  # still valid JSON, the checksum left as it was
    path.write_text(json.dumps(envelope), encoding="utf-8")


def _bare_document(path: Path) -> None:
    path.write_text(json.dumps({"mean": 0.999, "loo": [0.1], "n": 5}), encoding="utf-8")  # no key, no checksum


def _deep(path: Path) -> None:
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")


def _duplicate_keys(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8")[:-1] + ', "key": "lpips-abc"}', encoding="utf-8")


def _nan_literal(path: Path) -> None:
    path.write_text('{"mean": NaN}', encoding="utf-8")


def _huge_integer(path: Path) -> None:
    path.write_text('{"n": ' + "9" * 4000 + "}", encoding="utf-8")


def _not_utf8(path: Path) -> None:
    path.write_bytes(b'{"mean": "\xff"}')


def _a_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_edit_value, "does not match its checksum"),
        (_bare_document, "no key and checksum"),
        (_deep, "nested"),
        (_duplicate_keys, "duplicate key"),
        (_nan_literal, "NaN is not valid JSON"),
        (_huge_integer, "integer too large"),
        (_not_utf8, "not UTF-8"),
        (_a_fifo, "a FIFO"),
        (_a_folder, "a folder"),
    ],
)
def test_an_unusable_summary_is_a_miss_with_a_warning_naming_it(
    cache: FeatureCache, capsys: pytest.CaptureFixture[str], damage, reason: str  # type: ignore[no-untyped-def]
) -> None:
    cache.put_summary(KEY, {"mean": 0.25, "loo": [0.1], "n": 5})
    path = cache.summary_path(KEY)
    damage(path)
    assert cache.get_summary(KEY) is None
    [warning] = warnings_of(capsys)
    assert str(path) in warning and reason in warning and "recomputed" in warning
    if path.is_dir():
        return  # a folder where an entry belongs is left alone (never deleted)
    if not path.is_file():
        path.unlink()
    cache.put_summary(KEY, {"mean": 0.25, "loo": [0.1], "n": 5})  # recomputed and stored again: sound once more
    assert cache.get_summary(KEY) == {"mean": 0.25, "loo": [0.1], "n": 5}


def test_a_summary_moved_under_another_key_is_a_miss(cache: FeatureCache, capsys: pytest.CaptureFixture[str]) -> None:
    cache.put_summary("metrics-other", {"value": 0.999})
    target = cache.summary_path("metrics-mine")
    target.write_bytes(cache.summary_path("metrics-other").read_bytes())  # a valid entry, checksum and all
    assert cache.get_summary("metrics-mine") is None
    [warning] = warnings_of(capsys)
    assert "stored under another key ('metrics-other')" in warning and str(target) in warning
    target.write_bytes(encode_summary("metrics-mine", {"value": 0.5}))
    assert cache.get_summary("metrics-mine") == {"value": 0.5}


# --- feature entries ----------------------------------------------------------------------------------------------


def _rewrite_npz(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Rewrite an entry's members (its key and checksum members kept as they are) after ``change(members)``."""
    with np.load(path) as archive:
        members = {name: archive[name] for name in archive.files}
    change(members)
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    path.write_bytes(buffer.getvalue())


def _edited_array(path: Path) -> None:
    _rewrite_npz(path, lambda members: members.__setitem__("vec", members["vec"] + np.float32(1)))


def _edited_checksum_member(path: Path) -> None:
    _rewrite_npz(path, lambda members: members.__setitem__("__sha256__", np.array("0" * 64)))


def _no_checksum(path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **outputs(9))  # the arrays alone, as the first layout wrote them
    path.write_bytes(buffer.getvalue())


def _stored_for_another_key(path: Path) -> None:
    path.write_bytes(encode_outputs(outputs(1), key="toy/elsewhere"))


def _compressed(path: Path) -> None:
    with np.load(path) as archive:
        members = {name: archive[name] for name in archive.files}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **members)
    path.write_bytes(buffer.getvalue())


def _huge_header(path: Path) -> None:
    """A ``vec`` member whose header claims 10**12 values: refused from the header, nothing allocated."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    members["vec.npy"] = member.getvalue() + b"\0" * 20
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _object_member(path: Path) -> None:
    _rewrite_npz(path, lambda members: members.__setitem__("vec", np.array([{"x": 1}] * 5, dtype=object)))


def _fifo_entry(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_edited_array, "does not match its checksum"),
        (_edited_checksum_member, "does not match its checksum"),
        (_no_checksum, "not the outputs"),
        (_stored_for_another_key, "stored under another key ('toy/elsewhere')"),
        (_compressed, "compressed"),
        (_huge_header, "has shape (1000000000000,)"),
        (_object_member, "not a readable .npz entry"),
        (_fifo_entry, "a FIFO"),
    ],
)
def test_an_unusable_feature_entry_is_a_miss_with_one_warning(
    cache: FeatureCache, capsys: pytest.CaptureFixture[str], damage, reason: str  # type: ignore[no-untyped-def]
) -> None:
    good, bad = sha("good"), sha("bad")
    cache.put_many(INFO, {good: outputs(0), bad: outputs(1)})
    path = cache.item_path(INFO, bad)
    damage(path)
    assert set(cache.get_many(INFO, [good, bad])) == {good}
    [warning] = warnings_of(capsys)
    assert "1 cached toy feature entry not used, recomputed" in warning and str(path) in warning and reason in warning
    path.unlink()
    cache.put_many(INFO, {bad: outputs(1)})
    np.testing.assert_array_equal(cache.get_many(INFO, [bad])[bad]["vec"], outputs(1)["vec"])


def test_a_feature_entry_copied_to_another_image_is_a_miss(
    cache: FeatureCache, capsys: pytest.CaptureFixture[str]
) -> None:
    cache.put_many(INFO, {sha("a"): outputs(0)})
    other = cache.item_path(INFO, sha("b"))
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_bytes(cache.item_path(INFO, sha("a")).read_bytes())
    assert cache.get_many(INFO, [sha("b")]) == {}
    assert "stored under another key" in warnings_of(capsys)[0]


def test_many_unusable_entries_are_one_warning(cache: FeatureCache, capsys: pytest.CaptureFixture[str]) -> None:
    keys = [sha(f"i{i}") for i in range(5)]
    cache.put_many(INFO, {key: outputs(i) for i, key in enumerate(keys)})
    for key in keys[1:]:
        cache.item_path(INFO, key).write_bytes(b"garbage")
    assert set(cache.get_many(INFO, keys)) == {keys[0]}
    [warning] = warnings_of(capsys)
    assert warning.startswith("emogen-bench: warning: 4 cached toy feature entries not used") and "3 more" in warning


# --- a folder that cannot be used ---------------------------------------------------------------------------------


def test_a_cache_path_that_is_a_regular_file_turns_the_cache_off_with_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "features"
    root.write_text("not a folder", encoding="utf-8")
    cache = FeatureCache(root)
    assert cache.ensure_usable() is False and not cache.enabled
    [warning] = warnings_of(capsys)
    assert f"the feature cache folder {root} cannot be used ({root} is a regular file, not a folder)" in warning
    assert "running without the cache" in warning
    cache.put_many(INFO, {sha("x"): outputs(0)})
    cache.put_summary(KEY, {"mean": 1.0})
    assert cache.get_many(INFO, [sha("x")]) == {} and cache.get_summary(KEY) is None
    assert root.read_text(encoding="utf-8") == "not a folder" and warnings_of(capsys) == []


def test_a_cache_path_under_a_regular_file_turns_the_cache_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where a folder should be", encoding="utf-8")
    cache = FeatureCache(blocker / "features")
    assert cache.probe() == f"{blocker} is a regular file, not a folder"
    assert cache.ensure_usable() is False
    assert str(blocker / "features") in warnings_of(capsys)[0]
    assert blocker.read_text(encoding="utf-8") == "a file where a folder should be"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_folder_turns_the_cache_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "features"
    root.mkdir()
    root.chmod(0o500)
    try:
        cache = FeatureCache(root)
        assert cache.ensure_usable() is False
        assert "a file cannot be written there" in warnings_of(capsys)[0]
    finally:
        root.chmod(0o700)


def test_a_usable_folder_is_created_and_the_probe_leaves_nothing(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "new" / "features")
    assert cache.ensure_usable() is True and cache.enabled
    assert [p for p in cache.root.rglob("*") if p.is_file()] == []


def test_a_write_that_fails_mid_run_is_one_warning_and_the_run_goes_on(
    cache: FeatureCache, capsys: pytest.CaptureFixture[str]
) -> None:
    cache.put_summary(KEY, {"mean": 1.0})
    assert cache.ensure_usable()
    items = cache.item_path(INFO, sha("x")).parents[3]  # <root>/v2/items: replaced by a file, every write fails
    items.write_text("blocker", encoding="utf-8")
    cache.put_many(INFO, {sha(f"i{i}"): outputs(i) for i in range(3)})
    cache.put_many(INFO, {sha("later"): outputs(7)})
    cache.put_summary("lpips-new", {"mean": 2.0})
    [warning] = warnings_of(capsys)
    assert f"cannot write to the feature cache {cache.root}" in warning and "goes on without storing" in warning
    assert cache.write_error is not None and not cache.writable
    assert cache.get_summary(KEY) == {"mean": 1.0}  # what is there is still read
    assert cache.get_summary("lpips-new") is None
    assert items.read_text(encoding="utf-8") == "blocker"
    assert [p.name for p in cache.root.rglob("*.tmp")] == []
