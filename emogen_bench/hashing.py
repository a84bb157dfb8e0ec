"""Content hashes: the one way files are hashed across the benchmark."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_CHUNK = 1 << 20

#: A full hex sha256 (lower case), as every file hash in the benchmark is written.
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of an in-memory byte string."""
    return hashlib.sha256(data).hexdigest()


def digest_listing(entries: list[tuple[str, str]]) -> str:
    """Digest of a set of ``(relative_path, sha256)`` pairs, independent of order.

    The pairs are sorted, written one per line as ``path<TAB>sha256`` and hashed;
    the result is prefixed ``sha256:`` so it reads unambiguously when cited.
    """
    lines = "".join(f"{path}\t{sha}\n" for path, sha in sorted(entries))
    return "sha256:" + sha256_bytes(lines.encode("utf-8"))
