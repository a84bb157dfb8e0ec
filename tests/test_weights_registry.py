"""The shipped registry: exactly the protocol's artifacts, with hashes that equal the real files'."""

from __future__ import annotations

import hashlib
from pathlib import Path

import lpips
import pytest

from emogen_bench.errors import UsageError
from emogen_bench.hashing import sha256_file
from emogen_bench.weights.registry import LOADER_KINDS, PIN_STATES, Registry, load_registry

EXPECTED_IDS = (
    "inception-fid",
    "alexnet-lpips-trunk",
    "lpips-alex-v0.1",
    "clip-vit-l14",
    "emo-head-clip",
    "resnet50-imagenet-v1",
    "resnet50-places365",
    "emo-resnet50-emoset",
    "emo-space",
    "attr-coefficients",
    "attr-vocabulary",
    "sd-1.5",
    "ref-stats-eicg-v3",
    "ref-stats-emogen-paper-code",
)
COMMIT = "c78a7e4c6e6a7888d1116e55bd3000212ae0c43c"
SHARED_NAMES = {"weights/Clip_emotion_classifier/time_2023-11-12_03-29-best.pth": "weights/clip_emotion_head.pth"}
METRIC_KEYS = {"fid", "kid", "lpips", "emo_a", "emo_a_resnet50", "sem_c", "sem_d", "generate", "train"}


def read_sums(folder: Path) -> dict[str, str]:
    sums = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name.removeprefix("./")] = digest
    return sums


def test_lists_exactly_the_protocol_artifacts() -> None:
    assert load_registry().ids == EXPECTED_IDS


def test_every_entry_is_well_formed() -> None:
    for spec in load_registry().artifacts:
        assert spec.loader in LOADER_KINDS and spec.description and spec.license
        assert set(spec.used_by) <= METRIC_KEYS, spec.id
        assert (spec.loader == "hf-snapshot") == (spec.source == "hf"), spec.id
        assert (spec.loader == "lpips-package-file") == (spec.source == "package"), spec.id
        for file in spec.files:
            assert file.pin in PIN_STATES
            if spec.source == "url" and spec.loader != "reference-stats":  # statistics: unpublished, no URL yet
                assert file.urls and all(u.startswith(("https://", "http://")) for u in file.urls), spec.id


def test_emogen_files_come_from_the_pinned_commit() -> None:
    registry = load_registry()
    for artifact_id in ("emo-head-clip", "emo-resnet50-emoset", "emo-space", "attr-coefficients", "attr-vocabulary"):
        for file in registry.get(artifact_id).files:
            assert file.pin == "sha256" and f"/{COMMIT}/" in file.urls[0] and file.urls[0].endswith("/" + file.name)
    assert registry.get("emo-resnet50-emoset").files[0].urls[0].startswith("https://media.githubusercontent.com/media/")
    assert len(registry.get("emo-space").files) == 16
    assert {f.name for f in registry.get("attr-vocabulary").files} == {
        "all_attribute_object_scene.pkl",
        "object_attr.pkl",
        "scene_attr.pkl",
    }


def test_hashes_and_sizes_equal_the_official_files(official_artifacts: Path) -> None:
    sums = read_sums(official_artifacts)
    checked = set()
    for spec in load_registry().artifacts:
        for file in spec.files:
            if not file.urls or f"/{COMMIT}/" not in file.urls[0]:
                continue
            repo_path = file.urls[0].split(f"/{COMMIT}/", 1)[1]
            shared = SHARED_NAMES.get(repo_path, repo_path)
            if shared not in sums:
                continue  # the 104 MB EmoSet ResNet-50 is not copied into shared/
            real = official_artifacts / shared
            assert file.sha256 == sums[shared] == hashlib.sha256(real.read_bytes()).hexdigest(), shared
            assert file.size == real.stat().st_size, shared
            checked.add(shared)
    assert checked == set(sums)  # every file of SHA256SUMS is in the registry


def test_snapshot_pins() -> None:
    registry = load_registry()
    clip, sd = registry.get("clip-vit-l14").hf, registry.get("sd-1.5").hf
    assert clip is not None and sd is not None
    assert clip.repo_id == "openai/clip-vit-large-patch14"
    assert clip.revision == "32bd64288804d66eefd0ccbe215aa642df71cc41"
    assert sd.repo_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert sd.revision == "451f4fe16113bff5a5d2269ed5ad43b0592e9a14"
    assert "confirm on first fetch" in sd.revision_note
    for hf in (clip, sd):
        assert set(hf.required_files) <= set(hf.allow_patterns)  # every required file is downloaded
        assert all(p.endswith((".json", ".txt", ".safetensors")) for p in hf.allow_patterns)


def test_lpips_entry_is_the_package_file() -> None:
    spec = load_registry().get("lpips-alex-v0.1")
    assert spec.package is not None
    assert (spec.package.module, spec.package.resource) == ("lpips", "weights/v0.1/alex.pth")
    # PROTOCOL.md gives the prefix; the full hash is pinned from the file the lpips wheel installs.
    installed = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    assert spec.files[0].pin == "sha256" and spec.files[0].sha256.startswith("df73285e")
    assert spec.files[0].sha256 == sha256_file(installed)


GOOD = """
[artifacts.x]
description = "d"
used_by = ["fid"]
license = "l"
loader = "torchscript"

[[artifacts.x.files]]
name = "x.pt"
urls = ["https://example.org/x.pt", ""]
pin = "sha256-prefix"
sha256 = "0123abcd"
approx_size = 10
"""


def test_any_toml_path_makes_a_registry(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(GOOD)
    registry = Registry.from_toml(path)
    [spec] = registry.artifacts
    assert spec.files[0].urls == ("https://example.org/x.pt",)  # the empty mirror slot is dropped
    assert spec.pin == "sha256-prefix" and spec.files[0].matches_pin("0123abcd" + "0" * 56)
    assert not spec.files[0].matches_pin("f" * 64)
    assert spec.size is None and spec.approx_size == 10


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ('pin = "sha256-prefix"', 'pin = "md5"', "pin"),
        ('sha256 = "0123abcd"', 'sha256 = "0123"', "sha256"),
        ('pin = "sha256-prefix"', 'pin = "sha256"', "64 hex"),
        ('loader = "torchscript"', 'loader = "onnx"', "loader"),
        ('name = "x.pt"', 'name = "../x.pt"', "relative"),
        ('urls = ["https://example.org/x.pt", ""]', "urls = []", "no url"),
        ("[artifacts.x]", "[artifacts.x.1]", "quoted"),
    ],
)
def test_malformed_registries_name_the_file_and_key(tmp_path: Path, old: str, new: str, needle: str) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new)
    if new == "[artifacts.x.1]":
        text = text.replace("[[artifacts.x.files]]", "[[artifacts.x.1.files]]")
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as raised:
        Registry.from_toml(path)
    assert str(path) in str(raised.value) and needle in str(raised.value)
