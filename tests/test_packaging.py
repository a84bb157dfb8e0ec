"""Issue 13, packaging: data found from an install, a light start-up, quiet broken pipes, the wheel's contents.

- The leaderboard's entries and plans are found through importlib.resources when the current folder is not a
  checkout (``leaderboard list``, ``tables regenerate smoke --dry-run`` from anywhere); a checkout's folders win.
- Building the parser imports no torch (``emogen-bench --help`` and ``--version`` stay fast); the deferred
  options of ``reference``, ``baseline`` and ``tables`` are still all there when those commands are used.
- A closed standard output ends a command quietly with 141, tested through real pipes.
- The built wheel holds the entries, the plans and the weights registry, and no tests or CI files (slow).
- constraints/official.txt pins every dependency, within pyproject.toml's ranges.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from emogen_bench.cli import main, stdout_reader_gone
from emogen_bench.errors import ExitCode, UsageError
from emogen_bench.safe_read import read_toml
from leaderboard.regenerate.plan import load_plan
from leaderboard.resources import find_plan, packaged_folder, plan_names

REPO = Path(__file__).resolve().parents[1]
#: Modules that only the commands that compute may import; building the parser must not.
HEAVY_MODULES = ("torch", "torchvision", "transformers", "diffusers", "accelerate", "lpips", "cleanfid", "scipy")


@pytest.fixture()
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder outside the checkout, as after ``pip install emogen-bench``."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _bench(*args: str, stdout: int, unbuffered: bool) -> subprocess.CompletedProcess[str]:
    """``python -m emogen_bench ARGS`` with stdout on the descriptor ``stdout``; unbuffered: each write goes out
    at once (PYTHONUNBUFFERED), else stdout is block-buffered as for any pipe."""
    env = {key: value for key, value in os.environ.items() if key not in ("EMOGEN_BENCH_DEBUG", "PYTHONUNBUFFERED")}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "emogen_bench", *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
        cwd=REPO, env=env, timeout=300, check=False,
    )  # fmt: skip


# --- entries and plans from the installed package ---------------------------------------------------------------


def test_leaderboard_list_outside_a_checkout_reads_the_installed_entries(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["leaderboard", "list"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "EmoGen" in out and "Stable Diffusion" in out
    assert list(elsewhere.iterdir()) == []  # nothing written to the current folder


def test_the_checkout_entries_win_when_present(elsewhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (elsewhere / "leaderboard" / "entries").mkdir(parents=True)  # a checkout with no entries yet
    assert main(["leaderboard", "list"]) == ExitCode.OK
    assert "Stable Diffusion" not in capsys.readouterr().out


def test_list_help_says_which_entries_folder_is_used(
    elsewhere: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # argparse would wrap a long path in the middle
    with pytest.raises(SystemExit):
        main(["leaderboard", "list", "--help"])
    installed = " ".join(capsys.readouterr().out.split())  # argparse wraps long help lines
    assert f"now the installed copy, {packaged_folder('entries')}" in installed
    (elsewhere / "leaderboard" / "entries").mkdir(parents=True)
    with pytest.raises(SystemExit):
        main(["leaderboard", "list", "--help"])
    assert "now leaderboard/entries in the current folder" in " ".join(capsys.readouterr().out.split())


def test_an_explicit_missing_entries_folder_is_still_a_usage_error(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["leaderboard", "list", "--entries", "nowhere"]) == ExitCode.USAGE
    assert "entries folder nowhere does not exist" in capsys.readouterr().err


def test_add_still_writes_relative_to_the_current_folder(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["leaderboard", "add", "--help"])
    assert "default leaderboard/entries, relative to the current folder" in " ".join(capsys.readouterr().out.split())


def test_a_plan_name_finds_the_installed_plan(elsewhere: Path) -> None:
    assert find_plan("smoke") == packaged_folder("plans") / "smoke.toml"
    assert find_plan("smoke.toml") == packaged_folder("plans") / "smoke.toml"
    assert plan_names() == ["ablations", "main", "smoke", "supplement"]


def test_a_checkout_plan_wins_and_a_path_is_taken_as_it_is(elsewhere: Path) -> None:
    local = elsewhere / "leaderboard" / "plans"
    local.mkdir(parents=True)
    shutil.copy(packaged_folder("plans") / "smoke.toml", local / "smoke.toml")
    assert find_plan("smoke") == Path("leaderboard/plans/smoke.toml")
    assert find_plan("main") == packaged_folder("plans") / "main.toml"  # not in the checkout: the installed one
    (elsewhere / "smoke").write_text("not a plan")
    assert find_plan("smoke") == Path("smoke")  # a file at that path wins over the name


def test_an_unknown_plan_name_lists_the_shipped_plans(elsewhere: Path) -> None:
    with pytest.raises(UsageError) as raised:
        load_plan("smok")
    assert "plan smok does not exist" in str(raised.value)
    assert "(ablations, main, smoke, supplement), e.g. smoke" in str(raised.value)


def test_tables_regenerate_dry_run_of_the_smoke_plan_by_name(
    elsewhere: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "work"
    assert main(["tables", "regenerate", "smoke", "--dry-run", "--workdir", str(workdir)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"(main, supplement, ablations) ({packaged_folder('plans') / 'smoke.toml'})" in out
    assert "_plan/data" in out and not workdir.exists()


# --- a light start-up -------------------------------------------------------------------------------------------


def test_building_the_parser_imports_no_torch() -> None:
    """In a fresh interpreter: ``build_parser()`` (what ``--help`` and ``--version`` run) loads none of them."""
    probe = (
        "import sys\nfrom emogen_bench.cli import build_parser\nparser = build_parser()\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
        "print(sorted(parser._subparsers._group_actions[0].choices))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    loaded, commands = result.stdout.splitlines()
    assert loaded == "[]", result.stdout
    for command in ("baseline", "leaderboard", "reference", "tables", "evaluate", "weights"):
        assert repr(command) in commands


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["reference", "stage1", "--help"], "--epochs"),
        (["reference", "train", "--help"], "--mapper-depth"),
        (["baseline", "dreambooth", "train", "--help"], "--emoset-root"),
        (["tables", "regenerate", "--help"], "--dry-run"),
    ],
)
def test_deferred_options_are_there_when_the_command_is_used(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 0 and option in capsys.readouterr().out


def test_a_deferred_command_still_refuses_a_bad_choice(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["baseline", "no-such-baseline", "train"])
    assert raised.value.code == ExitCode.USAGE
    assert "invalid choice: 'no-such-baseline'" in capsys.readouterr().err


# --- broken pipes -----------------------------------------------------------------------------------------------


@pytest.fixture()
def closed_pipe() -> Iterator[int]:
    """The writing end of a pipe whose reading end is already closed: every write to it fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    yield write_end
    os.close(write_end)


@pytest.mark.parametrize(
    ("argv", "unbuffered"),
    [(["weights", "list"], False), (["weights", "list"], True), (["--version"], False)],
    ids=["weights-list-buffered", "weights-list-unbuffered", "version"],
)
def test_a_closed_stdout_ends_quietly(argv: list[str], unbuffered: bool, closed_pipe: int) -> None:
    """Buffered, the failure shows when stdout is flushed; unbuffered, at the first write; argparse's --version
    output is dropped by argparse itself when the write fails."""
    result = _bench(*argv, stdout=closed_pipe, unbuffered=unbuffered)
    assert (result.returncode, result.stderr) == (ExitCode.BROKEN_PIPE, "")


def test_stdout_reader_gone_tells_a_closed_pipe_from_an_open_one(
    closed_pipe: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(os.dup(write_end), "w") as open_pipe:
            monkeypatch.setattr(sys, "stdout", open_pipe)
            assert not stdout_reader_gone()
        with os.fdopen(os.dup(closed_pipe), "w") as broken_pipe:
            monkeypatch.setattr(sys, "stdout", broken_pipe)
            assert stdout_reader_gone()
    finally:
        monkeypatch.undo()
        os.close(read_end)
        os.close(write_end)


# --- the wheel ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The wheel ``pip wheel`` builds from a copy of the working tree (so no build/ folder is left in it)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    skipped = (".venv", ".git", "build", "*.egg-info", "__pycache__", ".ci-transformers4", ".pytest_cache", "out")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*skipped))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"),
         str(source)], check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    (built,) = (root / "dist").glob("emogen_bench-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


@pytest.mark.slow
def test_the_wheel_ships_the_entries_plans_and_registry(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for folder, pattern in (("entries", "*/*.json"), ("plans", "*.toml")):
        for path in sorted((REPO / "leaderboard" / folder).glob(pattern)):
            assert path.relative_to(REPO).as_posix() in names
    assert "leaderboard/plans/smoke.toml" in names
    assert "leaderboard/entries/emogen-paper-code/emogen.json" in names
    assert "emogen_bench/weights/registry.toml" in names
    assert "leaderboard/resources.py" in names


@pytest.mark.slow
def test_the_wheel_holds_no_tests_or_ci_files(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    (metadata,) = tops - {"emogen_bench", "leaderboard", "reference", "baselines"}
    assert metadata.startswith("emogen_bench-") and metadata.endswith(".dist-info")
    assert not [name for name in wheel.namelist() if "/tests/" in name or "/.ci/" in name or name.startswith(".")]


# --- the constraints of the official environment ---------------------------------------------------------------


def test_the_constraints_pin_each_dependency_within_the_pyproject_ranges() -> None:
    lines = (REPO / "constraints" / "official.txt").read_text(encoding="utf-8").splitlines()
    pins = dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))
    pinned = {canonicalize_name(name): version for name, version in pins.items()}
    assert len(pinned) == len(pins)  # no package twice
    project = read_toml(REPO / "pyproject.toml", "pyproject.toml", UsageError)["project"]
    checked = []
    for text in [*project["dependencies"], *project["optional-dependencies"]["generate"]]:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = pinned.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not pinned in constraints/official.txt"
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement} excludes the pin {version}"
        checked.append(requirement.name)
    for name in ("torch", "torchvision", "transformers", "numpy", "scipy", "pillow", "clean-fid", "lpips",
                 "huggingface_hub", "tokenizers", "diffusers"):  # fmt: skip
        assert canonicalize_name(name) in pinned
    assert "torch" in checked and "diffusers" in checked
