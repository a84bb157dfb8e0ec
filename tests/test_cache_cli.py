"""``emogen-bench cache info|prune`` (issue 13): what the feature cache holds, and removing part or all of it.

The cache is filled through :class:`FeatureCache` itself (two extractors' entries, an LPIPS summary, a metric
values summary), so the files are exactly those an evaluation writes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from emogen_bench.cache import LAYOUT, FeatureCache, inventory
from emogen_bench.cli import main
from emogen_bench.errors import ExitCode
from emogen_bench.features.base import ExtractorInfo

CLIP = ExtractorInfo(name="clip", outputs={"embedding": (4,)}, preprocess_version="test-1")
SEMANTIC = ExtractorInfo(name="semantic", outputs={"imagenet_max": (), "places_max": ()}, preprocess_version="test-1")
DAY = 86_400.0


def _sha(index: int) -> str:
    return f"{index:064x}"


@pytest.fixture
def root(bench_home: Path) -> Path:
    """The default cache folder under a fresh benchmark home: 6 clip and 4 semantic entries, 2 summaries."""
    cache = FeatureCache()
    cache.put_many(CLIP, {_sha(i): {"embedding": np.full(4, i, dtype=np.float32)} for i in range(6)})
    cache.put_many(SEMANTIC, {_sha(i): {"imagenet_max": np.float32(0.5), "places_max": np.float32(0.25)}
                              for i in range(4)})  # fmt: skip
    cache.put_summary("lpips-" + "a" * 64, {"n": 3})
    cache.put_summary("metrics-" + "b" * 64, {"overall": {}})
    return cache.root


def _info(capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    assert main(["cache", "info", "--json", *extra]) == ExitCode.OK
    return json.loads(capsys.readouterr().out)


def test_info_counts_entries_per_extractor_and_summaries(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = _info(capsys)
    assert document["root"] == str(root) and document["layout"] == LAYOUT
    assert {name: (t["entries"], t["models"]) for name, t in document["extractors"].items()} == {
        "clip": (6, 1), "semantic": (4, 1),
    }  # fmt: skip
    assert {kind: t["entries"] for kind, t in document["summaries"].items()} == {"lpips": 1, "metrics": 1}
    assert document["entries"] == 12
    assert document["bytes"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_info_table_is_readable(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "info"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"feature cache {root}" in out and "total: " in out and "12 files" in out
    clip_row = next(line for line in out.splitlines() if line.startswith("features: clip"))
    label, entries, size, unit, models = clip_row.split()[1:6]
    assert (label, entries, models) == ("clip", "6", "1") and unit in ("B", "KiB") and float(size) > 0
    assert any(line.startswith("summaries: metric values") for line in out.splitlines())


def test_info_lists_partial_writes(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leftover = root / LAYOUT / "summaries" / "me" / ".metrics-x.json.abc.tmp"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"{")
    assert _info(capsys)["partial"]["entries"] == 1
    assert main(["cache", "info"]) == ExitCode.OK
    assert "partial writes (interrupted)" in capsys.readouterr().out


def test_info_of_an_empty_cache(bench_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "info"]) == ExitCode.OK
    assert "the cache is empty" in capsys.readouterr().out
    assert not bench_home.exists()  # looking creates nothing


def test_prune_extractor_dry_run_removes_nothing(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(root.rglob("*"))
    assert main(["cache", "prune", "--extractor", "clip", "--dry-run", "--json"]) == ExitCode.OK
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is True and report["removed"]["entries"] == 6
    assert sorted(root.rglob("*")) == before


def test_prune_extractor_removes_only_its_features(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "prune", "--extractor", "clip"]) == ExitCode.OK
    assert "removed 6 files" in capsys.readouterr().out
    document = inventory(root)
    assert set(document["extractors"]) == {"semantic"}
    assert set(document["summaries"]) == {"lpips", "metrics"}
    assert not (root / LAYOUT / "items" / "clip").exists()  # emptied folders go too
    cache = FeatureCache()
    assert cache.get_many(SEMANTIC, [_sha(0)])  # what stays is still read
    assert cache.get_many(CLIP, [_sha(0)]) == {}


def test_prune_lpips_removes_its_summaries(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "prune", "--extractor", "lpips", "--json"]) == ExitCode.OK
    by_kind = json.loads(capsys.readouterr().out)["by_kind"]
    assert list(by_kind) == ["summary:lpips"] and by_kind["summary:lpips"]["entries"] == 1
    assert set(inventory(root)["summaries"]) == {"metrics"}


def test_prune_older_than_removes_only_old_entries(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = sorted((root / LAYOUT / "items" / "clip").rglob("*.npz"))[:2]
    stamp = time.time() - 3 * DAY
    for path in old:
        os.utime(path, (stamp, stamp))
    assert main(["cache", "prune", "--older-than", "1", "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["removed"]["entries"] == 2
    assert not any(path.exists() for path in old)
    assert inventory(root)["extractors"]["clip"]["entries"] == 4


def test_prune_criteria_combine(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stamp = time.time() - 3 * DAY
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))
    assert main(["cache", "prune", "--older-than", "1", "--extractor", "semantic", "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["removed"]["entries"] == 4
    assert set(inventory(root)["extractors"]) == {"clip"}


def test_prune_all_empties_the_cache_and_nothing_else(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = root / "notes.txt"  # not the cache's: never touched
    mine.write_text("keep")
    assert main(["cache", "prune", "--all"]) == ExitCode.OK
    assert "removed 12 files" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]
    assert _info(capsys)["entries"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "say what to prune"),
        (["--all", "--extractor", "clip"], "does not combine"),
        (["--older-than", "-1"], "0 or more"),
        (["--older-than", "nan"], "0 or more"),
        (["--extractor", "clipp"], "'clipp' is not an extractor"),
    ],
)
def test_prune_refuses_unclear_requests(
    root: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = sorted(root.rglob("*"))
    assert main(["cache", "prune", *args]) == ExitCode.USAGE
    assert message in capsys.readouterr().err
    assert sorted(root.rglob("*")) == before


def test_root_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["cache", "info", "--root", str(tmp_path / "file")]) == ExitCode.USAGE
    assert "is not a folder" in capsys.readouterr().err
