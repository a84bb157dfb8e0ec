"""The one output rule (``emogen_bench.fileio.check_output_file``): where a command may write its file.

A hostile-input pass found ``evaluate --out X --overwrite`` renaming over whatever X was (a FIFO, a
character device, an image of the submission) and ``--out SUB/results.json`` writing into the
submission.  Each case is refused before any work, naming the path, and nothing is touched.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from emogen_bench.cli import main
from emogen_bench.errors import ExitCode, UsageError
from emogen_bench.fileio import check_output_file, expand_path, write_atomic


def _submission(tmp_path: Path) -> Path:
    root = tmp_path / "sub"
    (root / "awe").mkdir(parents=True)
    (root / "awe" / "awe_0000.png").write_bytes(b"image bytes")
    return root


def test_special_files_folders_and_links_are_never_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="is a FIFO"):
        check_output_file(fifo, overwrite=True)
    with pytest.raises(UsageError, match="/dev/null is a character device"):
        check_output_file("/dev/null", overwrite=True)
    with pytest.raises(UsageError, match="is a folder"):
        check_output_file(tmp_path, overwrite=True)
    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(UsageError, match="symbolic link"):
        check_output_file(link, overwrite=True)
    with pytest.raises(UsageError, match="already exists; pass --overwrite"):
        check_output_file(target, overwrite=False)
    assert check_output_file(target, overwrite=True) == target
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and target.read_text() == "{}"


def test_the_atomic_writer_itself_refuses_to_replace_a_special_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="refusing to replace it"):
        write_atomic(fifo, "text", overwrite=True)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary file left


def test_an_output_inside_an_input_is_refused(tmp_path: Path) -> None:
    submission = _submission(tmp_path)
    for inside in (submission / "results.json", submission / "awe" / "awe_0000.png"):
        with pytest.raises(UsageError, match="is inside the submission"):
            check_output_file(inside, overwrite=True, inputs={"the submission": submission})
    link = tmp_path / "alias"
    link.symlink_to(submission)  # the same folder under another name
    with pytest.raises(UsageError, match="is inside the submission"):
        check_output_file(link / "results.json", overwrite=True, inputs={"the submission": submission})
    assert check_output_file(tmp_path / "results.json", overwrite=False, inputs={"the submission": submission})


def test_paths_that_cannot_be_made_or_expanded(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="is a file, so no folder can be made there"):
        check_output_file(blocker / "deeper" / "results.json", overwrite=False)
    with pytest.raises(UsageError, match="no such user"):
        expand_path("~nosuchuser-emogen/x", "--out")
    with pytest.raises(UsageError, match="bytes free"):
        check_output_file(tmp_path / "r.json", overwrite=False, min_free=2**62)


@pytest.mark.parametrize("where", ["image", "inside", "fifo"])
def test_evaluate_refuses_before_any_work_and_touches_nothing(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    submission = _submission(tmp_path)
    image = submission / "awe" / "awe_0000.png"
    out = {"image": image, "inside": submission / "results.json", "fifo": tmp_path / "pipe"}[where]
    if where == "fifo":
        os.mkfifo(out)
    before = {p: p.read_bytes() for p in submission.rglob("*") if p.is_file()}
    code = main(["evaluate", str(submission), "--out", str(out), "--overwrite", "--device", "cpu"])
    assert code == ExitCode.USAGE
    assert str(out) in capsys.readouterr().err
    assert {p: p.read_bytes() for p in submission.rglob("*") if p.is_file()} == before
    if where == "fifo":
        assert stat.S_ISFIFO(os.stat(out).st_mode)
