"""``emogen-bench validate`` and ``emogen-bench demo``: output, ``--json`` and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_submission_validate import jpeg_cut_with_end_marker, png_declaring

from emogen_bench.cli import main
from emogen_bench.submission import write_example_submission
from emogen_bench.task import EMOTION_NAMES

REDUCED_LABEL = "reduced run: 2 images per emotion (not the official protocol)"


@pytest.fixture(scope="module")
def _example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_submission(tmp_path_factory.mktemp("example") / "submission", per_emotion=2)


@pytest.fixture
def example(_example: Path, tmp_path: Path) -> Path:
    """A fresh copy of the valid synthetic example (2 images per emotion)."""
    return Path(shutil.copytree(_example, tmp_path / "submission"))


def test_validate_valid_exits_0(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(example), "--per-emotion", "2", "--quiet"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[-1] == f"VALID: 0 errors, 0 warnings; {REDUCED_LABEL}"
    assert f"run:        {REDUCED_LABEL}" in lines
    assert all(any(line.split() == [emotion, "2", "/", "2"] for line in lines) for emotion in EMOTION_NAMES)
    assert err == ""  # --quiet: no progress bars


def test_validate_invalid_exits_1_and_lists_every_problem(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (example / "awe" / "0000.png").write_bytes(b"")
    (example / "notes.txt").write_text("x")
    (example / "fear" / ".DS_Store").write_bytes(b"x")
    assert main(["validate", str(example), "--per-emotion", "2", "-q"]) == 1
    out = capsys.readouterr().out
    assert "errors (2):" in out and "warnings (1):" in out
    assert out.index("errors (2):") < out.index("warnings (1):")
    assert "  empty-file (1):\n    awe/0000.png: " in out
    assert "  stray-file (1):\n    notes.txt: " in out
    assert "  ignored-file (1):\n    fear/.DS_Store: " in out
    assert out.strip().splitlines()[-1] == f"INVALID: 2 errors, 1 warning; {REDUCED_LABEL}"


def test_validate_official_run_is_labelled(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(example), "-q"]) == 1
    out = capsys.readouterr().out
    assert "run:        official run: 1000 images per emotion" in out
    assert "too-few-images (8):" in out


@pytest.mark.parametrize(
    "arguments",
    [["validate", "{missing}"], ["validate", "{file}"], ["validate", "{dir}", "--per-emotion", "1"]],
    ids=["missing-dir", "not-a-dir", "per-emotion-1"],
)
def test_validate_usage_errors_exit_2(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str]
) -> None:
    (tmp_path / "file.txt").write_text("x")
    names = {"missing": str(tmp_path / "absent"), "file": str(tmp_path / "file.txt"), "dir": str(example)}
    assert main([argument.format(**names) for argument in arguments]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("emogen-bench: error: ") and len(err.strip().splitlines()) == 1


def test_validate_non_integer_per_emotion_is_rejected_by_argparse(example: Path) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["validate", str(example), "--per-emotion", "many"])
    assert raised.value.code == 2


def test_validate_json(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (example / "sadness" / "0001.png").write_bytes(b"not a png")
    assert main(["validate", str(example), "--per-emotion", "2", "--json", "--quiet"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["valid"] is False
    assert document["run"] == {"kind": "reduced", "per_emotion": 2, "label": REDUCED_LABEL}
    assert [(p["code"], p["path"]) for p in document["problems"]] == [("undecodable", "sadness/0001.png")]
    assert document["counts"] == {emotion: 2 for emotion in EMOTION_NAMES}
    assert document["metadata"]["method"] == "synthetic-example"


def test_validate_no_decode_is_reported(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(example), "--per-emotion", "2", "--no-decode", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["decoded"] is False


def _run_module(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emogen_bench", *arguments], capture_output=True, text=True, timeout=120, check=False
    )


def test_validate_through_a_subprocess(example: Path, tmp_path: Path) -> None:
    valid = _run_module("validate", str(example), "--per-emotion", "2", "--json", "--quiet")
    assert valid.returncode == 0, valid.stderr
    assert json.loads(valid.stdout)["valid"] is True

    (example / "anger").rename(example / "Anger")
    invalid = _run_module("validate", str(example), "--per-emotion", "2")
    assert invalid.returncode == 1
    assert "missing-emotion" in invalid.stdout and "unknown-folder" in invalid.stdout
    assert invalid.stdout.strip().splitlines()[-1].startswith("INVALID")

    usage = _run_module("validate", str(tmp_path / "absent"))
    assert usage.returncode == 2 and "does not exist" in usage.stderr and "Traceback" not in usage.stderr


HOSTILE: dict[str, tuple[str, bytes, str]] = {
    "submission.json nested 100000 deep": (
        "submission.json", b'{"method": "m", "notes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "bad-metadata"
    ),
    "submission.json with a 401-digit guidance": (
        "submission.json", b'{"method": "m", "guidance": 1' + b"0" * 400 + b"}", "bad-metadata"
    ),
    "submission.json with a lone surrogate": ("submission.json", b'{"method": "\\udfff"}', "bad-metadata"),
    "a PNG holding 3 of 256 rows": ("fear/0000.png", png_declaring(256, 256, rows=3), "truncated"),
    "a JPEG cut at a third, end marker appended": ("fear/0000.png", jpeg_cut_with_end_marker(), "truncated"),
    "a 13000x13000 PNG": ("fear/0000.png", png_declaring(13000, 13000, rows=1), "too-large"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_validate_hostile_input_exits_1_naming_the_file(
    example: Path, capfd: pytest.CaptureFixture[str], name: str
) -> None:
    rel, data, code = HOSTILE[name]
    if rel.endswith(".png"):
        (example / rel).unlink()
        (example / "submission.json").unlink()  # its seeds name the image replaced
        if data.startswith(b"\xff\xd8"):
            rel = rel.removesuffix(".png") + ".jpg"
    (example / rel).write_bytes(data)
    assert main(["validate", str(example), "--per-emotion", "2", "--json", "-q"]) == 1
    out, err = capfd.readouterr()
    assert [(p["code"], p["path"]) for p in json.loads(out)["problems"]] == [(code, rel)]
    assert err == ""  # no traceback, no warning
