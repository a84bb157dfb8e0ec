"""Writing files so that a crash or Ctrl-C never leaves a half-written one in place, and only where allowed.

The one output rule every command follows (:func:`check_output_file`): the target is a regular
file or does not exist (a folder, FIFO, device or socket is never replaced), it is not inside an
input the command reads (the submission, the EmoSet root), it is replaced only when the user asked
for it (``--overwrite``), and there is room for it.  :func:`atomic_writer` enforces the first rule
again at the moment of writing, for every file the package writes.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from emogen_bench.errors import UsageError
from emogen_bench.safe_read import file_kind, read_bytes

#: Free space an output file's folder must have before a command starts its work (results, tables: small files).
MIN_FREE_BYTES = 16 * 1024 * 1024


@contextmanager
def atomic_writer(path: str | Path, *, overwrite: bool = True) -> Iterator[IO[bytes]]:
    """Yield a binary handle on a temporary file beside ``path``; on success move it into place.

    The file is fsynced, gets the usual permissions (0666 less the umask), and
    appears under its name atomically: readers see the old file or the new one,
    never a mix.  With ``overwrite=False`` the last step is a hard link, which
    fails if the name was taken meanwhile (a rename would silently replace it).
    The temporary file is removed whatever happens.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind not in (None, "missing"):
        raise UsageError(f"{path} is {kind}; refusing to replace it with a file (nothing was written)")
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    handle = os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, path)
            return
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise UsageError(f"{path} appeared while it was being written; nothing was overwritten") from None
        except OSError:  # a file system without hard links: check, then rename
            if path.exists():
                raise UsageError(f"{path} already exists; nothing was overwritten") from None
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes | str, *, overwrite: bool = True) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` through :func:`atomic_writer`."""
    with atomic_writer(path, overwrite=overwrite) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json_atomic(
    path: str | Path, document: Any, *, indent: int | None = 2, sort_keys: bool = False, overwrite: bool = True
) -> Path:
    """``write_atomic`` of a JSON document (strict: NaN and infinities are refused)."""
    text = json.dumps(document, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    return write_atomic(path, text, overwrite=overwrite)


def check_generated_page(target: Path, generator: str) -> None:
    """Refuse to replace ``target`` unless it is missing or a page ``generator`` wrote.

    A page is ours when it holds ``<meta name="generator" content="GENERATOR">``: the report and the
    leaderboard pages are regenerated in place, but a user's own ``index.html`` (or a FIFO, which would
    block the read) is never overwritten.  Raises :class:`UsageError` naming the file.
    """
    kind = file_kind(target)
    if kind == "missing":
        return
    if kind is not None:
        raise UsageError(f"{target} is {kind}, not a page this generator wrote; nothing was overwritten")
    try:
        ours = f'<meta name="generator" content="{generator}">'.encode() in read_bytes(target, "page")
    except UsageError:
        ours = False
    if not ours:
        raise UsageError(
            f"{target} exists and was not written by '{generator}'; nothing was overwritten. "
            "Move that file away or choose another output folder."
        )


def expand_path(value: str | Path, option: str = "path") -> Path:
    """``~`` expanded; a ``~user`` that does not exist is a usage error naming the option, not a crash."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        raise UsageError(f"{option} {value}: cannot expand {str(value).split('/')[0]!r} (no such user)") from None


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def check_output_file(
    path: str | Path,
    *,
    overwrite: bool,
    option: str = "--out",
    inputs: Mapping[str, str | Path] | None = None,
    min_free: int = MIN_FREE_BYTES,
) -> Path:
    """Check, before any work, that a command may write its output file at ``path``; returns the path.

    ``inputs`` names the folders the command reads (``{"the submission": SUB}``): the output may not
    land inside one of them (a results file inside a submission becomes a stray file of it, and
    ``--overwrite`` could replace one of its images).  Raises :class:`UsageError` naming the path.
    """
    path = expand_path(path, option)
    kind = file_kind(path)
    if path.is_symlink():
        raise UsageError(f"{option} {path} is a symbolic link; give the path of the file itself (nothing was written)")
    if kind == "a folder":
        raise UsageError(f"{option} {path} is a folder; give the path of the file to write")
    if kind not in (None, "missing"):
        raise UsageError(f"{option} {path} is {kind}; refusing to replace it with a file (nothing was written)")
    if kind is None and not overwrite:
        raise UsageError(f"{option} {path} already exists; pass --overwrite to replace it or choose another path")
    for what, folder in (inputs or {}).items():
        if _inside(path, Path(folder)):
            raise UsageError(f"{option} {path} is inside {what} ({folder}); write it elsewhere (nothing was written)")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if file_kind(existing) is None:
        raise UsageError(f"{option} {path}: {existing} is a file, so no folder can be made there")
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        free = None
    if free is not None and free < min_free:
        raise UsageError(f"{option} {path}: only {free:,} bytes free in {existing}; at least {min_free:,} are needed")
    return path

