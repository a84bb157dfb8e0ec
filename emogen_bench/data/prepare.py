"""``prepare_emoset``: derive the EICG subset index from an EmoSet folder and write it atomically."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from emogen_bench.data.emoset import DROP_PROBLEM, EmoSetScan, Problem, check_layout, scan_emoset
from emogen_bench.data.index import INDEX_FILE, SUMMARY_FILE, SUMMARY_MD_FILE, IndexRow, index_csv_bytes
from emogen_bench.data.summary import build_summary, render_summary
from emogen_bench.errors import DataError, UsageError
from emogen_bench.hashing import sha256_bytes, sha256_file
from emogen_bench.progress import progress

#: The files of an index folder; nothing else is ever written there.
OUTPUT_FILES: tuple[str, ...] = (INDEX_FILE, SUMMARY_FILE, SUMMARY_MD_FILE)
#: Problems named in a strict-mode error message.
_PROBLEMS_IN_MESSAGE = 3


@dataclass(frozen=True)
class PrepareResult:
    """What :func:`prepare_emoset` wrote and found.

    ``counts`` and each ``dropped[reason]`` are ``{emotion: {split: n, "total": n}}``
    tables with a ``"total"`` row; ``summary`` is the ``summary.json`` document.
    """

    out_dir: Path
    index_path: Path
    summary_path: Path
    summary_md_path: Path
    rows: int
    counts: dict[str, dict[str, int]]
    dropped: dict[str, dict[str, dict[str, int]]]
    problems: tuple[Problem, ...]
    index_digest: str
    summary: dict[str, Any]

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file written."""
        return (self.index_path, self.summary_path, self.summary_md_path)


class EmoSetProblemsError(DataError):
    """Strict mode found problems; ``problems`` lists them all and nothing was written."""

    def __init__(self, root: Path, problems: list[Problem]) -> None:
        first = "; ".join(f"{p.code} {p.path} ({p.message})" for p in problems[:_PROBLEMS_IN_MESSAGE])
        more = f"; and {len(problems) - _PROBLEMS_IN_MESSAGE} more" if len(problems) > _PROBLEMS_IN_MESSAGE else ""
        super().__init__(
            f"EmoSet at {root} has {len(problems)} problem(s) and strict mode is on, so nothing was written: "
            f"{first}{more}. Fix them, or run without --strict to write the index without the affected images"
        )
        self.problems = list(problems)


def check_out_dir(out_dir: Path, *, overwrite: bool, emoset_root: Path | None = None) -> None:
    """Refuse an ``out_dir`` inside the EmoSet folder, one that is a file, holds other files, or holds an index
    without ``overwrite``."""
    if emoset_root is not None and out_dir.resolve().is_relative_to(emoset_root.resolve()):
        raise UsageError(f"--out {out_dir} is inside the EmoSet folder {emoset_root}; write the index elsewhere "
                         "(the EmoSet folder is only read)")  # fmt: skip
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file; pass a new or empty folder")
    present = sorted(child.name for child in out_dir.iterdir())
    others = [name for name in present if name not in OUTPUT_FILES]
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise UsageError(
            f"--out {out_dir} holds files that are not an index ({shown}); write the index to a new or empty "
            "folder (it never deletes other files, not even with --overwrite)"
        )
    if present and not overwrite:
        raise UsageError(
            f"--out {out_dir} already holds an index ({', '.join(present)}); pass --overwrite to replace it "
            "or choose another folder"
        )


def _hash_rows(scan: EmoSetScan, *, show_progress: bool) -> list[IndexRow]:
    """Rows with their image sha256; an unreadable image becomes a problem and leaves the subset."""
    hashed = []
    for row in progress(scan.rows, desc="hashing images", enabled=show_progress, unit="img"):
        try:
            hashed.append(replace(row, sha256=sha256_file(scan.root / row.path)))
        except OSError as error:
            scan.problems.append(Problem("image_unreadable", row.path, f"cannot be read: {error}"))
            scan.dropped[DROP_PROBLEM][(row.emotion, row.split)] += 1
    scan.problems.sort(key=lambda p: (p.path, p.code, p.message))
    return hashed


def write_index_folder(out_dir: Path, files: dict[str, bytes], *, overwrite: bool) -> None:
    """Write ``files`` into a staging folder beside ``out_dir``, then rename it into place.

    An interrupted run leaves at most a hidden ``.<name>.*.partial`` folder, never
    a half index.  A replaced index is moved aside first and deleted only once
    the new one is in place.
    """
    out_dir = Path(os.path.abspath(out_dir))  # "." or "sub/.." have no usable name to stage beside
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
    os.mkdir(staging)
    try:
        for name, content in files.items():
            (staging / name).write_bytes(content)
        check_out_dir(out_dir, overwrite=overwrite)
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:8]}.old"
            os.rename(out_dir, old)
            try:
                os.rename(staging, out_dir)
            except OSError:
                os.rename(old, out_dir)
                raise
            shutil.rmtree(old)
        else:
            os.rename(staging, out_dir)
    except OSError as error:
        raise UsageError(f"cannot write the index to {out_dir}: {error}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def prepare_emoset(
    emoset_root: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    strict: bool = False,
    hash_files: bool = True,
    show_progress: bool = True,
) -> PrepareResult:
    """Derive the EICG subset of EmoSet and write ``index.csv``, ``summary.json``, ``summary.md``.

    Images with a problem are left out and the problems reported; with
    ``strict`` any problem raises :class:`EmoSetProblemsError` (a DataError)
    and nothing is written.  Raises UsageError for a missing EmoSet folder or an
    ``out_dir`` that already holds an index (unless ``overwrite``), DataError
    for a folder that is not EmoSet.
    """
    root = Path(emoset_root)
    out = Path(out_dir)
    check_layout(root)
    check_out_dir(out, overwrite=overwrite, emoset_root=root)
    scan = scan_emoset(root, show_progress=show_progress)
    if strict and scan.problems:
        raise EmoSetProblemsError(root, scan.problems)
    rows = _hash_rows(scan, show_progress=show_progress) if hash_files else scan.rows
    if strict and scan.problems:
        raise EmoSetProblemsError(root, scan.problems)

    csv_bytes = index_csv_bytes(rows)
    csv_sha256 = sha256_bytes(csv_bytes)
    summary = build_summary(
        emoset_root=str(emoset_root),
        rows=rows,
        listed=scan.listed,
        dropped=scan.dropped,
        problems=scan.problems,
        index_sha256=csv_sha256,
        images_hashed=hash_files,
    )
    write_index_folder(
        out,
        {
            INDEX_FILE: csv_bytes,
            SUMMARY_FILE: (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
            SUMMARY_MD_FILE: render_summary(summary, markdown=True).encode("utf-8"),
        },
        overwrite=overwrite,
    )
    return PrepareResult(
        out_dir=out,
        index_path=out / INDEX_FILE,
        summary_path=out / SUMMARY_FILE,
        summary_md_path=out / SUMMARY_MD_FILE,
        rows=len(rows),
        counts=summary["counts"],
        dropped=summary["dropped"],
        problems=tuple(scan.problems),
        index_digest="sha256:" + csv_sha256,
        summary=summary,
    )
