"""Arguments that used to end in exit 70 ("internal error"): each is now a usage error naming what is wrong.

They are refused before any weight is loaded or image read (the weights are absent here, and a check
that came after them would report exit 3 instead).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emogen_bench.cli import main
from emogen_bench.errors import ExitCode
from emogen_bench.submission.example import write_example_submission


@pytest.fixture(scope="module")
def submission(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_submission(tmp_path_factory.mktemp("sub") / "sub", per_emotion=2, size=256)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--seed", "-1"], "seed -1: expected an integer from 0 to"),
        (["--seed", "9" * 30], "seed 9{30}: expected an integer"),
        (["--device", "foo"], "device 'foo': expected auto, cpu, cuda, cuda:N or mps"),
        (["--device", "meta"], "device 'meta'"),
        (["--reference-stats", "{folder}"], "reference statistics .* is a folder"),
        (["--reference-stats", "/dev/null"], "reference statistics /dev/null is a character device"),
    ],
)
def test_evaluate_arguments(
    submission: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    options = [option.replace("{folder}", str(tmp_path)) for option in options]
    code = main(["evaluate", str(submission), "--per-emotion", "2", "--out", str(tmp_path / "r.json"), *options])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    assert pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "r.json").exists()


def test_reference_stats_build_checks_device_and_seed_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["reference-stats", "build", "--index", str(tmp_path), "--emoset-root", str(tmp_path), "--out",
                 str(tmp_path / "ref.npz"), "--device", "meta"])  # fmt: skip
    assert code == ExitCode.USAGE and "device 'meta'" in capsys.readouterr().err
