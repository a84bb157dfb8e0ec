"""The weight store without a network: resolve, verify, records, the hash cache, overrides, Hub snapshots."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.hashing import digest_listing
from emogen_bench.weights import store as store_module
from emogen_bench.weights.override import Overrides
from emogen_bench.weights.registry import Registry, load_registry
from emogen_bench.weights.store import HASH_CACHE_FILE, RECORDS_FILE, WeightStore, git_blob_sha1

COMMIT = "c78a7e4c6e6a7888d1116e55bd3000212ae0c43c"
#: Repository paths whose copy in shared/ has another name.
SHARED_NAMES = {"weights/Clip_emotion_classifier/time_2023-11-12_03-29-best.pth": "weights/clip_emotion_head.pth"}
OFFICIAL_IDS = ("emo-head-clip", "emo-space", "attr-coefficients", "attr-vocabulary")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shared_copy(official: Path, url: str) -> Path:
    """The file in shared/artifacts/emogen-official that a registry URL points at."""
    repo_path = url.split(COMMIT + "/", 1)[1]
    return official / SHARED_NAMES.get(repo_path, repo_path)


def install_official(home: Path, official: Path, ids: tuple[str, ...] = OFFICIAL_IDS) -> None:
    """Copy the real EmoGen files into a store folder, laid out as ``fetch`` would."""
    registry = load_registry()
    for artifact_id in ids:
        for spec in registry.get(artifact_id).files:
            (home / artifact_id).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared_copy(official, spec.urls[0]), home / artifact_id / spec.name)


def write_registry(tmp_path: Path, body: str) -> Registry:
    path = tmp_path / "registry.toml"
    path.write_text(body)
    return Registry.from_toml(path)


def one_file_registry(tmp_path: Path, pin: str) -> Registry:
    return write_registry(
        tmp_path,
        f"""
[artifacts.test-net]
description = "a test file"
used_by = ["fid"]
license = "none"
loader = "torchscript"

[[artifacts.test-net.files]]
name = "net.pt"
urls = ["http://127.0.0.1:9/net.pt"]
{pin}
""",
    )


# ---- official files ----------------------------------------------------------------------------


def test_real_official_files_resolve_as_official(official_artifacts: Path, tmp_path: Path) -> None:
    install_official(tmp_path, official_artifacts)
    store = WeightStore(tmp_path, offline=True)
    for artifact_id in OFFICIAL_IDS:
        resolved = store.resolve(artifact_id)
        spec = store.registry.get(artifact_id)
        assert resolved.official and not resolved.overridden and resolved.source == "cache"
        folder = tmp_path / artifact_id
        assert resolved.path == (folder if spec.is_folder else folder / spec.files[0].name)
        expected = {f.name: sha(shared_copy(official_artifacts, f.urls[0]).read_bytes()) for f in spec.files}
        assert {f.name: f.sha256 for f in resolved.files} == expected
    assert len(store.resolve("emo-space").files) == 16


def test_one_changed_byte_makes_an_official_file_corrupt(official_artifacts: Path, tmp_path: Path) -> None:
    install_official(tmp_path, official_artifacts, ("emo-space",))
    target = tmp_path / "emo-space" / "fear_std_v2.pt"
    data = bytearray(target.read_bytes())
    pinned = sha(bytes(data))
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as raised:
        WeightStore(tmp_path).resolve("emo-space")
    message = str(raised.value)
    assert "emo-space" in message and pinned in message and sha(bytes(data)) in message
    assert "emogen-bench weights fetch emo-space" in message
    [status] = WeightStore(tmp_path).verify(["emo-space"])
    assert status.state == "corrupt" and status.failed and not status.official


def test_missing_artifact_message_names_id_path_hash_and_fix(tmp_path: Path) -> None:
    store = WeightStore(tmp_path)
    spec = store.registry.get("emo-head-clip")
    with pytest.raises(WeightsError) as raised:
        store.resolve("emo-head-clip")
    message = str(raised.value)
    assert "emo-head-clip" in message and str(tmp_path / "emo-head-clip" / spec.files[0].name) in message
    assert str(spec.files[0].sha256) in message
    assert "emogen-bench weights fetch emo-head-clip" in message and "--weights-override" in message


def test_unknown_id_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        WeightStore(tmp_path).resolve("inception")
    assert all(i in str(raised.value) for i in load_registry().ids)


def test_verify_reports_instead_of_raising(tmp_path: Path) -> None:
    statuses = WeightStore(tmp_path).verify()
    assert [s.id for s in statuses] == list(load_registry().ids)
    for status in statuses:
        expected = "ok" if status.id == "lpips-alex-v0.1" else "missing"
        assert status.state == expected, status.detail


# ---- the lpips package file --------------------------------------------------------------------


def test_lpips_package_file_is_official_and_fetch_needs_nothing(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("lpips")
    assert spec is not None and spec.submodule_search_locations
    real = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
    full = sha(real.read_bytes())
    assert full.startswith("df73285e")  # the prefix PROTOCOL.md gives
    store = WeightStore(tmp_path)
    resolved = store.resolve("lpips-alex-v0.1")
    assert resolved.path == real and resolved.official and resolved.source == "package"
    assert resolved.files[0].sha256 == full
    (again,) = store.fetch(["lpips-alex-v0.1"], show_progress=False)
    assert again.path == real and again.official


# ---- records, the hash cache, unpinned files ---------------------------------------------------


def test_unpinned_file_put_by_hand_is_reported_unverified(tmp_path: Path) -> None:
    store = WeightStore(tmp_path / "home", registry=one_file_registry(tmp_path, 'pin = "unpinned"'))
    (tmp_path / "home" / "test-net").mkdir(parents=True)
    (tmp_path / "home" / "test-net" / "net.pt").write_bytes(b"weights")
    [status] = store.verify()
    assert status.state == "unverified-unpinned" and not status.official and not status.failed
    resolved = store.resolve("test-net")  # usable, but never called official
    assert not resolved.official and resolved.files[0].sha256 == sha(b"weights")


def test_recorded_hash_is_checked_for_unpinned_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "test-net").mkdir(parents=True)
    (home / "test-net" / "net.pt").write_bytes(b"weights")
    records = {"version": 1, "artifacts": {"test-net": {"net.pt": {"sha256": sha(b"weights")}}}}
    (home / RECORDS_FILE).write_text(json.dumps(records))
    store = WeightStore(home, registry=one_file_registry(tmp_path, 'pin = "unpinned"'))
    assert store.resolve("test-net").official
    (home / "test-net" / "net.pt").write_bytes(b"weightz")
    with pytest.raises(WeightsError, match=sha(b"weights")):
        WeightStore(home, registry=store.registry).resolve("test-net")


def test_hash_cache_avoids_rehashing_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    registry = one_file_registry(tmp_path, f'pin = "sha256"\nsha256 = "{sha(b"weights")}"')
    (home / "test-net").mkdir(parents=True)
    target = home / "test-net" / "net.pt"
    target.write_bytes(b"weights")
    calls: list[str] = []
    real = store_module.sha256_file

    def counting(path: str | Path) -> str:
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(store_module, "sha256_file", counting)
    assert WeightStore(home, registry=registry).resolve("test-net").official
    assert len(calls) == 1 and (home / HASH_CACHE_FILE).is_file()
    assert WeightStore(home, registry=registry).resolve("test-net").official  # a new store reads the cache
    assert len(calls) == 1
    before = target.stat().st_mtime_ns
    target.write_bytes(b"weightz")  # same size: the mtime tells (set explicitly for coarse-mtime file systems)
    os.utime(target, ns=(before, before + 2_000_000_000))
    with pytest.raises(WeightsError):
        WeightStore(home, registry=registry).resolve("test-net")
    assert len(calls) == 2


# ---- overrides ---------------------------------------------------------------------------------


def write_override(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_override_with_the_official_bytes_is_official_and_overridden(official_artifacts: Path, tmp_path: Path) -> None:
    copy = tmp_path / "mine" / "head.pth"
    copy.parent.mkdir()
    shutil.copyfile(official_artifacts / "weights" / "clip_emotion_head.pth", copy)
    digest = sha(copy.read_bytes())
    file = write_override(tmp_path / "o.toml", f'[artifacts.emo-head-clip]\npath = "{copy}"\nsha256 = "{digest}"\n')
    store = WeightStore(tmp_path / "home", overrides=Overrides.from_toml(file))
    resolved = store.resolve("emo-head-clip")
    assert resolved.path == copy and resolved.source == "override"
    assert resolved.overridden and resolved.official
    [status] = store.verify(["emo-head-clip"])
    assert status.state == "overridden" and status.official and not status.failed


def test_override_with_other_bytes_is_never_official(tmp_path: Path) -> None:
    (tmp_path / "head.pth").write_bytes(b"a fine-tuned head")
    file = write_override(tmp_path / "o.toml", '[artifacts.emo-head-clip]\npath = "head.pth"\n')  # relative
    overrides = Overrides.from_toml(file)
    assert overrides.get("emo-head-clip").path == tmp_path / "head.pth"  # type: ignore[union-attr]
    resolved = WeightStore(tmp_path / "home", overrides=overrides).resolve("emo-head-clip")
    assert resolved.overridden and not resolved.official
    assert resolved.files[0].sha256 == sha(b"a fine-tuned head")


def test_override_sha256_mismatch_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "head.pth").write_bytes(b"bytes")
    wrong = sha(b"other")
    file = write_override(tmp_path / "o.toml", f'[artifacts.emo-head-clip]\npath = "head.pth"\nsha256 = "{wrong}"\n')
    with pytest.raises(WeightsError) as raised:
        WeightStore(tmp_path / "home", overrides=Overrides.from_toml(file)).resolve("emo-head-clip")
    assert wrong in str(raised.value) and sha(b"bytes") in str(raised.value) and str(file) in str(raised.value)


def test_folder_override_checks_the_listing_digest(official_artifacts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "space"
    shutil.copytree(official_artifacts / "emo_space", folder)
    listing = digest_listing([(p.name, sha(p.read_bytes())) for p in folder.iterdir()])
    good = write_override(tmp_path / "good.toml", f'[artifacts.emo-space]\npath = "space"\nsha256 = "{listing}"\n')
    resolved = WeightStore(tmp_path / "home", overrides=Overrides.from_toml(good)).resolve("emo-space")
    assert resolved.official and resolved.overridden and resolved.digest == listing
    bad = write_override(tmp_path / "bad.toml", f'[artifacts.emo-space]\npath = "space"\nsha256 = "{sha(b"x")}"\n')
    with pytest.raises(WeightsError, match=listing.removeprefix("sha256:")):
        WeightStore(tmp_path / "home", overrides=Overrides.from_toml(bad)).resolve("emo-space")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('[artifacts.no-such-net]\npath = "x"\n', "no-such-net"),
        ('[artifacts.emo-head-clip]\npath = "does-not-exist.pth"\n', "does-not-exist.pth"),
        ('[artifacts.emo-space]\npath = "file.bin"\n', "must be a folder"),
        ('[artifacts.emo-head-clip]\npath = "file.bin"\nsha256 = "abc"\n', "sha256"),
        ('[artifacts.emo-head-clip]\npath = "file.bin"\nmd5 = "abc"\n', "md5"),
        ('[artifacts.sd-1.5]\npath = "file.bin"\n', "quoted"),
        ("[artifacts.emo-head-clip\n", "not valid TOML"),
    ],
)
def test_bad_override_files_name_the_file_and_key(tmp_path: Path, body: str, needle: str) -> None:
    (tmp_path / "file.bin").write_bytes(b"x")
    file = write_override(tmp_path / "o.toml", body)
    with pytest.raises(UsageError) as raised:
        Overrides.from_toml(file)
    assert str(file) in str(raised.value) and needle in str(raised.value)


# ---- Hugging Face snapshots --------------------------------------------------------------------

SNAPSHOT_FILES = {"config.json": b'{"a": 1}', "preprocessor_config.json": b"{}", "model.safetensors": b"\x00" * 4096}


class FakeHub:
    """Stands in for ``huggingface_hub.snapshot_download``: writes the Hub cache layout, logs its arguments."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.calls = files, []  # type: list[dict[str, Any]]

    def __call__(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append({"repo_id": repo_id, **kwargs})
        if kwargs.get("local_files_only"):
            from huggingface_hub.errors import LocalEntryNotFoundError

            raise LocalEntryNotFoundError("not in the cache")
        repo = Path(kwargs.get("cache_dir") or store_module.hf_hub_cache()) / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / kwargs["revision"]
        for name, data in self.files.items():
            lfs = name.endswith(".safetensors")
            git_id = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            blob_path = repo / "blobs" / (sha(data) if lfs else git_id)
            blob_path.parent.mkdir(parents=True, exist_ok=True)
            blob_path.write_bytes(data)
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / name).symlink_to(blob_path)
        return str(snapshot)


def test_snapshot_fetch_passes_the_pins_and_records_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub(SNAPSHOT_FILES)
    monkeypatch.setattr("huggingface_hub.snapshot_download", hub)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # the user's Hugging Face cache
    store = WeightStore(tmp_path, offline=False)
    [resolved] = store.fetch(["clip-vit-l14"], show_progress=False)
    spec = store.registry.get("clip-vit-l14").hf
    assert spec is not None
    [call] = hub.calls
    assert call["repo_id"] == "openai/clip-vit-large-patch14"
    assert call["revision"] == "32bd64288804d66eefd0ccbe215aa642df71cc41" == spec.revision
    assert call["allow_patterns"] == list(spec.allow_patterns) and call["local_files_only"] is False
    assert "cache_dir" not in call  # huggingface_hub's own cache, not a private copy
    assert resolved.official and resolved.path == spec.cache_folder(tmp_path / "hf")
    assert {f.name: f.sha256 for f in resolved.files} == {n: sha(d) for n, d in SNAPSHOT_FILES.items()}
    records = json.loads((tmp_path / RECORDS_FILE).read_text())["artifacts"]["clip-vit-l14"]
    assert {n: r["sha256"] for n, r in records.items()} == {n: sha(d) for n, d in SNAPSHOT_FILES.items()}
    store.fetch(["clip-vit-l14"], show_progress=False)
    assert len(hub.calls) == 1  # present and verified: the Hub is not asked again


def test_snapshot_blob_hashes_catch_corruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("huggingface_hub.snapshot_download", FakeHub(SNAPSHOT_FILES))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    WeightStore(tmp_path).fetch(["clip-vit-l14"], show_progress=False)
    hf = load_registry().get("clip-vit-l14").hf
    assert hf is not None
    config = hf.cache_folder(tmp_path / "hf") / "config.json"
    assert git_blob_sha1(config) == Path(config.resolve()).name
    config.resolve().write_bytes(b'{"a": 2}')
    (tmp_path / RECORDS_FILE).unlink()  # the Hub's own blob name still catches it
    with pytest.raises(WeightsError, match="git sha1"):
        WeightStore(tmp_path).resolve("clip-vit-l14")


def test_snapshot_offline_uses_local_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub(SNAPSHOT_FILES)
    monkeypatch.setattr("huggingface_hub.snapshot_download", hub)
    with pytest.raises(WeightsError, match="offline"):
        WeightStore(tmp_path, offline=True).fetch(["clip-vit-l14"], show_progress=False)
    assert hub.calls[0]["local_files_only"] is True


def test_snapshot_missing_required_file_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {k: v for k, v in SNAPSHOT_FILES.items() if k != "model.safetensors"}
    monkeypatch.setattr("huggingface_hub.snapshot_download", FakeHub(files))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsError, match="model.safetensors"):
        WeightStore(tmp_path).fetch(["clip-vit-l14"], show_progress=False)
