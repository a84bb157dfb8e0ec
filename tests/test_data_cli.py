"""``emogen-bench data prepare`` and ``data summary``: exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_emoset import FakeEmoSet, make_fake_emoset

from emogen_bench import task
from emogen_bench.cli import main
from emogen_bench.data import INDEX_FILE, SUMMARY_FILE, SUMMARY_MD_FILE, render_summary
from emogen_bench.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake(tmp_path: Path) -> FakeEmoSet:
    return make_fake_emoset(tmp_path / "emoset")


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_prepare_prints_tables_and_warns_about_problems(fake: FakeEmoSet, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "index"
    code, out, err = _run(capsys, "data", "prepare", fake.root, "--out", out_dir, "--quiet")
    assert code == ExitCode.OK
    summary = json.loads((out_dir / SUMMARY_FILE).read_text())
    assert out.startswith(render_summary(summary))
    counts = fake.counts()
    for emotion in task.EMOTION_NAMES:
        cells = [counts[(emotion, s)] for s in task.DATA.splits]
        assert any(line.split() == [emotion, *map(str, cells), str(sum(cells))] for line in out.splitlines())
    first_problem = sorted(fake.expected_problems())[0]
    assert first_problem[1] in out
    assert str(out_dir / INDEX_FILE) in out
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and f"{sum(fake.expected_problems().values())} problem(s)" in warnings[0]
    assert err.strip() == warnings[0]  # --quiet: no progress bars


def test_prepare_json(fake: FakeEmoSet, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "index"
    code, out, _ = _run(capsys, "data", "prepare", fake.root, "--out", out_dir, "--quiet", "--json", "--no-hash")
    assert code == ExitCode.OK
    report = json.loads(out)
    assert report["out_dir"] == str(out_dir)
    assert report["counts"]["total"]["total"] == len(fake.kept())
    assert report["index"]["images_hashed"] is False
    assert report.pop("files") == [str(out_dir / name) for name in (INDEX_FILE, SUMMARY_FILE, SUMMARY_MD_FILE)]
    report.pop("out_dir")
    assert report == json.loads((out_dir / SUMMARY_FILE).read_text())


def test_prepare_clean_emoset_has_no_warning(tmp_path: Path, capsys) -> None:
    fake = make_fake_emoset(tmp_path / "emoset", edge_cases=False)
    code, _, err = _run(capsys, "data", "prepare", fake.root, "--out", tmp_path / "index", "--quiet", "--strict")
    assert code == ExitCode.OK and "WARNING" not in err


def test_strict_exits_4_and_lists_problems(fake: FakeEmoSet, tmp_path: Path, capsys) -> None:
    code, out, err = _run(capsys, "data", "prepare", fake.root, "--out", tmp_path / "index", "--quiet", "--strict")
    assert code == ExitCode.DATA
    assert out == ""
    assert all(path in err for _, path in fake.expected_problems())
    assert "emogen-bench: error:" in err and "nothing was written" in err
    assert not (tmp_path / "index").exists()


def test_usage_and_data_errors(fake: FakeEmoSet, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "index"
    assert _run(capsys, "data", "prepare", fake.root, "--out", out_dir, "-q")[0] == ExitCode.OK
    code, _, err = _run(capsys, "data", "prepare", fake.root, "--out", out_dir, "-q")
    assert code == ExitCode.USAGE and "--overwrite" in err
    assert _run(capsys, "data", "prepare", fake.root, "--out", out_dir, "-q", "--overwrite")[0] == ExitCode.OK
    code, _, err = _run(capsys, "data", "prepare", tmp_path / "missing", "--out", tmp_path / "other", "-q")
    assert code == ExitCode.USAGE and "does not exist" in err
    not_emoset = tmp_path / "not-emoset"
    not_emoset.mkdir()
    code, _, err = _run(capsys, "data", "prepare", not_emoset, "--out", tmp_path / "other", "-q")
    assert code == ExitCode.DATA and "train.json" in err
    assert _run(capsys, "data")[0] == ExitCode.USAGE
    with pytest.raises(SystemExit) as caught:  # argparse: --out is required
        main(["data", "prepare", str(fake.root)])
    assert caught.value.code == ExitCode.USAGE


def test_summary_reprints_an_index(fake: FakeEmoSet, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "index"
    _run(capsys, "data", "prepare", fake.root, "--out", out_dir, "-q")
    code, out, err = _run(capsys, "data", "summary", out_dir)
    assert code == ExitCode.OK
    assert out == render_summary(json.loads((out_dir / SUMMARY_FILE).read_text()))
    assert "WARNING" in err
    code, out, _ = _run(capsys, "data", "summary", out_dir, "--json")
    assert json.loads(out) == {**json.loads((out_dir / SUMMARY_FILE).read_text()), "out_dir": str(out_dir)}
    assert _run(capsys, "data", "summary", tmp_path / "nowhere")[0] == ExitCode.USAGE
    with open(out_dir / INDEX_FILE, "a", encoding="utf-8") as handle:
        handle.write("tampered\n")
    code, _, err = _run(capsys, "data", "summary", out_dir)
    assert code == ExitCode.DATA and "changed after it was written" in err


def test_module_entry_point(tmp_path: Path) -> None:
    fake = make_fake_emoset(tmp_path / "emoset", per_split=1)
    out_dir = tmp_path / "index"
    command = [sys.executable, "-m", "emogen_bench", "data", "prepare", str(fake.root), "--out", str(out_dir)]
    done = subprocess.run([*command, "--quiet", "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout)["index"]["rows"] == len(fake.kept())
    assert "WARNING" in done.stderr
    again = subprocess.run([*command, "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert again.returncode == ExitCode.USAGE and "already holds an index" in again.stderr


@pytest.mark.parametrize(
    ("field", "value"), [("problems", 7), ("counts", "many"), ("dropped", [1, 2]), ("attributes", None)]
)
def test_a_summary_with_wrong_types_is_a_data_error_naming_the_file(
    fake: FakeEmoSet, tmp_path: Path, capsys, field: str, value: object
) -> None:
    out_dir = tmp_path / "index"
    _run(capsys, "data", "prepare", fake.root, "--out", out_dir, "-q")
    summary = json.loads((out_dir / SUMMARY_FILE).read_text())
    summary[field] = value
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary))
    code, _, err = _run(capsys, "data", "summary", out_dir)
    assert code == ExitCode.DATA, err
    assert f"{out_dir / SUMMARY_FILE}: a field is missing or has the wrong type" in err
