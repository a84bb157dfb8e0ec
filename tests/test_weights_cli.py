"""`emogen-bench weights list|fetch|verify|path`: output and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emogen_bench.cli import main
from emogen_bench.errors import ExitCode
from emogen_bench.weights.registry import load_registry

PACKAGE_IDS = {"lpips-alex-v0.1"}  # shipped inside an installed package: present without a fetch


def test_list_shows_every_artifact(bench_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "list"]) == ExitCode.OK
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for spec in load_registry().artifacts:
        assert spec.id in lines and spec.pin in lines[spec.id] and spec.loader in lines[spec.id]
        assert lines[spec.id].rstrip().endswith("yes" if spec.id in PACKAGE_IDS else "no")
    assert str(bench_home / "weights") in out


def test_list_json(bench_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "list", "--json"]) == ExitCode.OK
    document = json.loads(capsys.readouterr().out)
    assert [a["id"] for a in document["artifacts"]] == list(load_registry().ids)
    assert {a["id"] for a in document["artifacts"] if a["present"]} == PACKAGE_IDS


def test_verify_on_an_empty_cache_reports_missing_and_exits_3(
    bench_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["weights", "verify", "--json"]) == ExitCode.WEIGHTS
    document = json.loads(capsys.readouterr().out)
    states = {a["id"]: a["state"] for a in document["artifacts"]}
    assert states == {i: "ok" if i in PACKAGE_IDS else "missing" for i in load_registry().ids}
    assert document["ok"] is False

    assert main(["weights", "verify", "emo-space"]) == ExitCode.WEIGHTS
    out = capsys.readouterr().out
    assert "missing" in out and "emogen-bench weights fetch emo-space" in out


def test_verify_passes_for_intact_files(
    bench_home: Path, official_artifacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(official_artifacts / "emo_space", bench_home / "weights" / "emo-space")
    assert main(["weights", "verify", "emo-space", "lpips-alex-v0.1"]) == ExitCode.OK
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:] if line.strip()]
    assert rows == [["emo-space", "ok", "yes"], ["lpips-alex-v0.1", "ok", "yes"]]


def test_path_prints_or_exits_3(bench_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "path", "lpips-alex-v0.1"]) == ExitCode.OK
    assert Path(capsys.readouterr().out.strip()).is_file()
    assert main(["weights", "path", "emo-head-clip"]) == ExitCode.WEIGHTS
    err = capsys.readouterr().err
    assert "emo-head-clip is missing" in err and "emogen-bench weights fetch emo-head-clip" in err
    assert err.count("\n") == 1  # one line, no traceback


def test_unknown_id_is_a_usage_error(bench_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "path", "no-such-net"]) == ExitCode.USAGE
    assert "valid ids" in capsys.readouterr().err


def test_override_file_is_honoured(bench_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "head.pth").write_bytes(b"my head")
    override = tmp_path / "override.toml"
    override.write_text('[artifacts.emo-head-clip]\npath = "head.pth"\n')
    assert main(["weights", "path", "emo-head-clip", "--weights-override", str(override)]) == ExitCode.OK
    assert capsys.readouterr().out.strip() == str(tmp_path / "head.pth")
    assert main(["weights", "verify", "emo-head-clip", "--json", "--weights-override", str(override)]) == ExitCode.OK
    [status] = json.loads(capsys.readouterr().out)["artifacts"]
    assert status["state"] == "overridden" and status["official"] is False


def test_bad_override_file_is_a_usage_error(
    bench_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    override = tmp_path / "override.toml"
    override.write_text('[artifacts.emo-head-clip]\npath = "nowhere.pth"\n')
    assert main(["weights", "list", "--weights-override", str(override)]) == ExitCode.USAGE
    assert "nowhere.pth" in capsys.readouterr().err


def test_fetch_offline_and_argument_errors(bench_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "fetch", "emo-space", "--offline", "--quiet"]) == ExitCode.WEIGHTS
    assert "offline" in capsys.readouterr().err
    assert not (bench_home / "weights" / "emo-space").exists()
    assert main(["weights", "fetch", "emo-space", "--for", "train"]) == ExitCode.USAGE
    assert main(["weights", "fetch", "emo-space", "--all"]) == ExitCode.USAGE


def test_fetch_of_present_files_needs_no_network(
    bench_home: Path, official_artifacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(official_artifacts / "emo_space", bench_home / "weights" / "emo-space")
    # the conftest guard would turn any connection into an internal error (exit 70)
    assert main(["weights", "fetch", "emo-space", "--quiet"]) == ExitCode.OK
    assert f"emo-space  ok       60.0 KiB  {bench_home / 'weights' / 'emo-space'} (official)" in capsys.readouterr().out


def test_fetch_force_offline_leaves_a_corrupt_file_in_place(
    bench_home: Path, official_artifacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = bench_home / "weights" / "emo-space"
    shutil.copytree(official_artifacts / "emo_space", folder)
    (folder / "awe_std_v2.pt").write_bytes(b"damaged")
    assert main(["weights", "fetch", "emo-space", "--quiet"]) == ExitCode.WEIGHTS
    assert "--force" in capsys.readouterr().err
    assert main(["weights", "fetch", "emo-space", "--force", "--offline", "--quiet"]) == ExitCode.WEIGHTS
    assert "offline" in capsys.readouterr().err
    assert (folder / "awe_std_v2.pt").read_bytes() == b"damaged"  # nothing moved when nothing can replace it
    originals = sorted(p.name for p in (official_artifacts / "emo_space").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == originals
