"""Writing files so that a crash or Ctrl-C never leaves a half-written one in place."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    The rename is atomic on one file system: readers see the old file or the new
    one, never a mix.  The temporary file is removed if anything fails.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)  # noqa: SIM115
    try:
        with handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, document: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """``write_atomic`` of a JSON document (strict: NaN and infinities are refused)."""
    text = json.dumps(document, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    return write_atomic(path, text)
