"""``load_artifact``: registry -> verified local copy -> strict loader, provenance kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emogen_bench import load_artifact, open_store
from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.hashing import sha256_file


def _override(tmp_path: Path, official: Path) -> Path:
    override = tmp_path / "override.toml"
    override.write_text(
        f'[artifacts.emo-head-clip]\npath = "{official / "weights" / "clip_emotion_head.pth"}"\n'
        f'[artifacts.emo-space]\npath = "{official / "emo_space"}"\n'
    )
    return override


def test_official_files_load_through_the_registry(tmp_path: Path, official_artifacts: Path, bench_home: Path) -> None:
    store = open_store(_override(tmp_path, official_artifacts), offline=True)
    head = load_artifact("emo-head-clip", store)
    assert head.resolved.official and head.resolved.overridden
    assert head.resolved.files[0].sha256 == sha256_file(official_artifacts / "weights" / "clip_emotion_head.pth")
    probabilities = torch.softmax(head.value(torch.randn(3, 768)), dim=1)
    assert probabilities.shape == (3, 8)
    space = load_artifact("emo-space", store)
    assert space.resolved.official and len(space.value) == 8


def test_a_changed_byte_is_refused_before_loading(tmp_path: Path, official_artifacts: Path, bench_home: Path) -> None:
    tampered = tmp_path / "head.pth"
    data = bytearray((official_artifacts / "weights" / "clip_emotion_head.pth").read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    override = tmp_path / "override.toml"
    pinned = "80f72314e31e10a1e40e6e38687dd81a03e8e3ab2de03832d37e7a280485c998"  # PROTOCOL.md section 4
    override.write_text(f'[artifacts.emo-head-clip]\npath = "{tampered}"\nsha256 = "{pinned}"\n')
    with pytest.raises(WeightsError, match="80f72314"):
        load_artifact("emo-head-clip", open_store(override, offline=True))


def test_missing_artifact_names_the_fix(bench_home: Path) -> None:
    with pytest.raises(WeightsError, match="emogen-bench weights fetch emo-head-clip"):
        load_artifact("emo-head-clip", open_store(offline=True))


def test_unknown_artifact_is_a_usage_error(bench_home: Path) -> None:
    with pytest.raises(UsageError, match="inception-fid"):
        load_artifact("no-such-model", open_store(offline=True))
