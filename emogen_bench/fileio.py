"""Writing files so that a crash or Ctrl-C never leaves a half-written one in place."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from emogen_bench.errors import UsageError


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
