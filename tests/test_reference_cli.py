"""``emogen-bench reference ...`` through ``emogen_bench.cli.main``: the smoke run, generation, applications, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")

import emogen_bench.cli as bench_cli  # noqa: E402
import reference.cli  # noqa: E402
from emogen_bench.submission import read_metadata, validate_submission  # noqa: E402
from emogen_bench.task import EMOTION_NAMES  # noqa: E402


def test_the_reference_command_comes_from_its_entry_point() -> None:
    """``pip install -e .`` registers ``reference`` in the ``emogen_bench.commands`` group (pyproject.toml)."""
    assert reference.cli.register in bench_cli.plugin_commands()


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, Path, int, str]:
    """One smoke run shared by the tests: (submission, workdir, exit code, stdout)."""
    import io
    from contextlib import redirect_stdout

    root = tmp_path_factory.mktemp("smoke")
    out, work = root / "submission", root / "work"
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = bench_cli.main(["reference", "smoke", "--out", str(out), "--workdir", str(work), "-q"])
    return out, work, code, buffer.getvalue()


def test_smoke_runs_end_to_end_and_writes_a_valid_submission(smoke, capsys):
    out, work, code, stdout = smoke
    assert code == 0, stdout
    assert f"submission: {out}" in stdout and "validation: VALID" in stdout
    assert str(work / "stage2") in stdout  # it says where things went
    report = validate_submission(out, per_emotion=2, show_progress=False)
    assert report.valid and report.counts == {emotion: 2 for emotion in EMOTION_NAMES}
    assert sorted(p.name for p in out.iterdir()) == sorted([*EMOTION_NAMES, "submission.json"])
    assert read_metadata(out / "submission.json").base_model == "tiny-sd"
    saved = json.loads((work / "smoke.json").read_text())
    assert saved["smoke"] is True and saved["validation"]["valid"] is True
    assert bench_cli.main(["validate", str(out), "--per-emotion", "2", "--quiet"]) == 0


def test_a_second_smoke_run_into_the_same_folder_is_refused(smoke, tmp_path, capsys):
    out = smoke[0]
    before = _mtimes(out)
    code = bench_cli.main(["reference", "smoke", "--out", str(out), "-q"])
    assert code == 2
    assert "not empty" in capsys.readouterr().err
    assert _mtimes(out) == before


def test_generate_from_the_smoke_checkpoint_validates_and_resumes(smoke, tmp_path, capsys):
    work = smoke[1]
    out = tmp_path / "generated"
    argv = ["reference", "generate", "--checkpoint", str(work / "stage2"), "--out", str(out), "--per-emotion", "2",
            "--steps", "2", "--width", "256", "--height", "256", "--batch-size", "2", "--seed", "5", "-q"]
    assert bench_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "16 images written" in printed and "VALID" in printed
    metadata = read_metadata(out / "submission.json")
    assert (metadata.steps, metadata.guidance, metadata.sampler) == (2, 7.5, "UniPCMultistepScheduler")
    assert len(metadata.seeds) == 16
    before = _mtimes(out)
    assert bench_cli.main(argv) == 0
    assert "0 images written, 16 kept" in capsys.readouterr().out
    assert _mtimes(out) == before
    changed = [*argv[:-3], "--seed", "6", "-q"]
    assert bench_cli.main(changed) == 2
    assert "other settings" in capsys.readouterr().err
    assert _mtimes(out) == before


def test_applications_through_the_command_line(smoke, tmp_path, capsys):
    work = smoke[1]
    checkpoint = str(work / "stage2")
    small = ["--width", "64", "--height", "64", "--steps", "1", "-q"]
    assert bench_cli.main(["reference", "transfer", "--checkpoint", checkpoint, "--out", str(tmp_path / "t"),
                           "--objects", "bag", *small]) == 0
    assert sorted(p.name for p in (tmp_path / "t").glob("*_bag.png")) == sorted(f"{e}_bag.png" for e in EMOTION_NAMES)
    assert bench_cli.main(["reference", "fusion", "--checkpoint", checkpoint, "--out", str(tmp_path / "f"),
                           *small]) == 0
    assert len(list((tmp_path / "f").glob("*+*.png"))) == 28
    assert "28 pairs" in capsys.readouterr().out
    assert bench_cli.main(["reference", "decompose", "--checkpoint", checkpoint, "--index", str(work / "index"),
                           "--out", str(tmp_path / "d"), "--samples", "4", "--json", "-q"]) == 0
    table = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "d" / "decomposition.json").read_text())["table"]
    assert table == saved
    assert set(table) == set(EMOTION_NAMES)
    assert all(len(rows) == 6 for rows in table.values())


def test_user_errors_exit_2_with_a_message(smoke, tmp_path, capsys):
    work = smoke[1]
    code = bench_cli.main(["reference", "generate", "--checkpoint", str(work / "stage2"), "--out",
                           str(tmp_path / "x"), "--per-emotion", "1", "-q"])
    assert code == 2 and "--per-emotion" in capsys.readouterr().err
    code = bench_cli.main(["reference", "generate", "--checkpoint", str(tmp_path / "missing"), "--out",
                           str(tmp_path / "y"), "--per-emotion", "2", "-q"])
    assert code == 2 and "checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert bench_cli.main(["reference"]) == 2


def _sd_args(**overrides) -> Any:
    import argparse

    values = {"sd_model": None, "sd_revision": None, "device": "cpu", "dtype": "fp32", "clip_projection": None,
              "allow_download": False}
    return argparse.Namespace(**{**values, **overrides})


@pytest.fixture
def sd_calls(monkeypatch) -> list[tuple[str, str | None]]:
    """Replace the SD loader by one that records which model and revision it was asked for."""
    import reference.sd

    calls: list[tuple[str, str | None]] = []

    def fake_load(model, revision, **kwargs):
        calls.append((model, revision))
        return "components"

    monkeypatch.setattr(reference.sd, "load_sd_components", fake_load)
    return calls


def test_train_without_sd_model_loads_the_pinned_sd15(sd_calls):
    """`reference train` without --sd-model (as docs/reference.md shows it) loads the registry pin, no TypeError."""
    from reference.sd import DEFAULT_SD_MODEL, DEFAULT_SD_REVISION

    assert reference.cli.load_components_for(_sd_args(), None, projection=True) == "components"
    assert sd_calls == [(DEFAULT_SD_MODEL, DEFAULT_SD_REVISION)]


def test_another_sd_model_never_gets_the_checkpoints_revision(sd_calls):
    from reference.sd import DEFAULT_SD_MODEL, DEFAULT_SD_REVISION

    checkpoint = {"sd": {"model_id": "someone/other-sd", "revision": "abc123", "hidden_size": 768}}
    reference.cli.load_components_for(_sd_args(), checkpoint, projection=False)
    reference.cli.load_components_for(_sd_args(sd_model="/data/my-sd"), checkpoint, projection=False)
    reference.cli.load_components_for(_sd_args(sd_model=DEFAULT_SD_MODEL), checkpoint, projection=False)
    reference.cli.load_components_for(_sd_args(sd_model="/data/my-sd", sd_revision="r1"), checkpoint, projection=False)
    assert sd_calls == [("someone/other-sd", "abc123"), ("/data/my-sd", None),
                        (DEFAULT_SD_MODEL, DEFAULT_SD_REVISION), ("/data/my-sd", "r1")]


@pytest.mark.parametrize("option", [["--dtype", "fp16"], ["--device", "cuda:1"]])
def test_train_refuses_options_it_would_ignore(option, tmp_path, capsys):
    """--dtype and --device cuda:K are shared SD options that stage 2 cannot honour: refused, not silently dropped."""
    argv = ["reference", "train", "--index", str(tmp_path / "index"), "--emoset-root", str(tmp_path), "--out",
            str(tmp_path / "run"), "--space", "official", "--confidence", "official", *option, "-q"]
    assert bench_cli.main(argv) == 2
    assert option[0] in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_missing_generate_extra_is_a_clear_usage_error(monkeypatch, tmp_path, capsys) -> None:
    """Without diffusers (the 'generate' extra) the command says what to install: exit 2, not an internal error."""
    import reference.smoke

    def without_diffusers(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'diffusers'", name="diffusers")

    monkeypatch.setattr(reference.smoke, "run_smoke", without_diffusers)
    code = bench_cli.main(["reference", "smoke", "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'generate' extra" in err and 'pip install -e ".[generate]"' in err and "internal error" not in err
