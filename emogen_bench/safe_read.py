"""One reader for every JSON and TOML file the benchmark parses: bounded, strict, and naming the file.

Files come from users, from other people's submissions and from the network, so each one is read
under the same rules before anything looks at its content:

- it must be a regular file (a FIFO, a device or a socket is refused by type before it is opened:
  opening a FIFO would block forever);
- at most ``max_bytes`` are read (a larger file is refused, not read to the end);
- the bytes must be UTF-8 (a leading BOM is allowed), and strings must not hold lone surrogates
  (``"\\ud800"`` is valid JSON and cannot be written back as UTF-8);
- nesting is at most ``max_depth`` deep (Python's parsers otherwise fail with ``RecursionError``);
- integers fit in 64 bits (seeds are 63-bit; a 5,000-digit integer is nobody's value, and turning it
  into a float raises ``OverflowError``); JSON's ``NaN`` and ``Infinity`` are refused;
- a JSON object repeats no key (``json`` would silently keep the last one); the check is linear.

Every failure raises the caller's error class (a :class:`~emogen_bench.errors.BenchError`, so the
command exits with its documented code) with the file's path and the reason.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emogen_bench.errors import BenchError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, as a package before Python 3.11
    import tomli as tomllib


@dataclass(frozen=True)
class ReadLimits:
    """What one file may be: its size in bytes, its nesting depth, the magnitude of its integers."""

    max_bytes: int = 64 * 1024 * 1024
    max_depth: int = 64
    max_int: int = 2**64 - 1


#: The limits of every reader unless a caller says otherwise (64 MiB, depth 64, 64-bit integers).
LIMITS = ReadLimits()

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def file_kind(path: str | Path) -> str | None:
    """``None`` for a regular file (symlinks followed), else what it is ("a FIFO", "a folder", "missing")."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # absent, or a file where a folder of its path should be
        return "missing"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_regular_file(path: str | Path, what: str = "file", error: type[BenchError] = UsageError) -> Path:
    """``path`` if it is a regular file; ``error`` naming it and what it is otherwise (nothing is opened)."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "missing":
        raise error(f"{path}: no such {what}")
    if kind is not None:
        raise error(f"{path}: the {what} is {kind}, not a regular file; refusing to read it")
    return path


def read_bytes(
    path: str | Path, what: str = "file", error: type[BenchError] = UsageError, limits: ReadLimits = LIMITS
) -> bytes:
    """The bytes of a regular file of at most ``limits.max_bytes``."""
    path = check_regular_file(path, what, error)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limits.max_bytes + 1)
    except OSError as problem:
        raise error(f"{path}: cannot read the {what} ({problem.strerror or problem})") from None
    if len(data) > limits.max_bytes:
        raise error(f"{path}: the {what} is larger than {limits.max_bytes:,} bytes; refusing to read it")
    return data


def decode_text(data: bytes, source: str, what: str = "file", error: type[BenchError] = UsageError) -> str:
    """Strict UTF-8 (a leading BOM dropped); ``error`` with the byte offset otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        raise error(f"{source}: the {what} is not UTF-8 text ({problem.reason} at byte {problem.start})") from None


def check_values(document: Any, source: str, what: str, error: type[BenchError], limits: ReadLimits) -> Any:
    """Walk a parsed document (iteratively): depth, integer size and strings that UTF-8 can hold."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: list[Any] = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            children = value
        else:
            if isinstance(value, bool):
                continue
            if isinstance(value, int) and abs(value) > limits.max_int:
                raise error(f"{source}: the {what} holds an integer too large ({len(str(abs(value)))} digits)")
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise error(f"{source}: the {what} holds a string with a lone surrogate "
                                f"({value[:40]!r}); it cannot be UTF-8") from None  # fmt: skip
            continue
        if depth > limits.max_depth:
            raise error(f"{source}: the {what} is nested more than {limits.max_depth} levels deep")
        stack.extend((child, depth + 1) for child in children)
    return document


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        repeated = sorted(key for key, count in counts.items() if count > 1)
        raise _DuplicateKey(f"duplicate key(s) {', '.join(map(repr, repeated[:5]))}: each key may appear once")
    return document


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON; write a finite number")


def loads_json(
    text: str | bytes,
    source: str,
    what: str = "JSON file",
    error: type[BenchError] = UsageError,
    limits: ReadLimits = LIMITS,
) -> Any:
    """Parse JSON text under the rules of this module; ``source`` names it in errors (a path, a URL)."""
    if isinstance(text, bytes):
        text = decode_text(text, source, what, error)
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:
        raise error(f"{source}: the {what} is nested too deeply to read") from None
    except json.JSONDecodeError as problem:
        raise error(f"{source}: the {what} is not valid JSON: {problem.msg} (line {problem.lineno}, column "
                    f"{problem.colno})") from None  # fmt: skip
    except ValueError as problem:  # a duplicate key, NaN/Infinity, an integer of more than 4300 digits
        raise error(f"{source}: the {what} is not valid JSON: {problem}") from None
    return check_values(document, source, what, error, limits)


def read_json(
    path: str | Path, what: str = "JSON file", error: type[BenchError] = UsageError, limits: ReadLimits = LIMITS
) -> Any:
    """Read and parse a JSON file under the rules of this module."""
    return loads_json(read_bytes(path, what, error, limits), str(path), what, error, limits)


def loads_toml(
    text: str | bytes,
    source: str,
    what: str = "TOML file",
    error: type[BenchError] = UsageError,
    limits: ReadLimits = LIMITS,
) -> dict[str, Any]:
    """Parse TOML text under the rules of this module."""
    if isinstance(text, bytes):
        text = decode_text(text, source, what, error)
    try:
        document = tomllib.loads(text)
    except RecursionError:
        raise error(f"{source}: the {what} is nested too deeply to read") from None
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{source}: the {what} is not valid TOML: {problem}") from None
    except ValueError as problem:  # an integer of more than 4300 digits
        raise error(f"{source}: the {what} is not valid TOML: {problem}") from None
    return check_values(document, source, what, error, limits)


def read_toml(
    path: str | Path, what: str = "TOML file", error: type[BenchError] = UsageError, limits: ReadLimits = LIMITS
) -> dict[str, Any]:
    """Read and parse a TOML file under the rules of this module."""
    return loads_toml(read_bytes(path, what, error, limits), str(path), what, error, limits)


__all__ = [
    "LIMITS",
    "ReadLimits",
    "check_regular_file",
    "check_values",
    "decode_text",
    "file_kind",
    "loads_json",
    "loads_toml",
    "read_bytes",
    "read_json",
    "read_toml",
]
