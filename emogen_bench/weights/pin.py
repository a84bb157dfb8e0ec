"""``weights pin``: fetch an artifact through every mirror, check the bytes agree, write the sha256 into the registry.

Trust on first use lets two users' "official" runs use different bytes.  Pinning closes that: a
maintainer downloads each file from every URL the registry lists (primary and mirrors), refuses to
go on unless all of them serve the same bytes (and match any prefix or hash the registry already
holds), and then edits the registry file in place: ``pin = "sha256"``, the full ``sha256`` and the
exact ``size`` of each file.  Only those lines change; comments, order and formatting stay.  The
edited text is parsed again and checked before it replaces the file atomically; on any failure the
registry is left untouched.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emogen_bench import safe_read
from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.fileio import write_atomic
from emogen_bench.weights.download import RetryPolicy, download
from emogen_bench.weights.registry import ArtifactSpec, parse_registry
from emogen_bench.weights.store import download_size_cap

#: ``[[artifacts.<id>.files]]`` or ``[[artifacts."<id>".files]]`` at the start of a line.
_FILES_HEADER = re.compile(r'^\[\[\s*artifacts\.(?:"(?P<quoted>[^"]+)"|(?P<bare>[A-Za-z0-9_-]+))\.files\s*\]\]')
_KEY = re.compile(r"^(?P<key>[A-Za-z_]+)\s*=")


@dataclass(frozen=True)
class MirrorCopy:
    """What one URL served for one file."""

    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class FilePin:
    """The agreed bytes of one file: its full sha256 and size, and every URL that served them."""

    name: str
    sha256: str
    size: int
    copies: tuple[MirrorCopy, ...]


def fetch_every_mirror(
    spec: ArtifactSpec, *, policy: RetryPolicy = RetryPolicy(), show_progress: bool = True
) -> list[FilePin]:
    """Download each file of ``spec`` from each of its URLs and return the agreed hashes.

    :class:`WeightsError` (nothing pinned) when a URL fails, serves bytes that differ from another
    URL's (both URLs and hashes named), or differ from the prefix or hash the registry already holds.
    """
    if spec.source != "url":
        how = "a Hub commit revision" if spec.source == "hf" else "the sha256 of a file in an installed package"
        raise UsageError(f"{spec.id} is not downloaded from URLs (it is pinned by {how}); `weights pin` pins URL files")
    if not spec.published:
        raise WeightsError(f"{spec.id} has a file without any URL; add its download URL(s) to the registry first")
    pins = []
    with tempfile.TemporaryDirectory(prefix="emogen-bench-pin-") as folder:
        for file in spec.files:
            copies = []
            for index, url in enumerate(file.urls):
                result = download(
                    [url],
                    Path(folder) / f"{index}-{file.name}",
                    expected_sha256=file.sha256,
                    expected_size=file.size,
                    size_cap=download_size_cap(file),
                    policy=policy,
                    show_progress=show_progress,
                    desc=f"{spec.id}/{file.name} from mirror {index + 1} of {len(file.urls)}",
                )
                result.path.unlink()
                copies.append(MirrorCopy(url, result.sha256, result.size))
            first = copies[0]
            for other in copies[1:]:
                if (other.sha256, other.size) != (first.sha256, first.size):
                    raise WeightsError(
                        f"the mirrors of {spec.id}/{file.name} disagree: {first.url} serves sha256 {first.sha256} "
                        f"({first.size} bytes), {other.url} serves sha256 {other.sha256} ({other.size} bytes). "
                        "Nothing was pinned; find out which copy is right before pinning"
                    )
            pins.append(FilePin(file.name, first.sha256, first.size, tuple(copies)))
    return pins


def _block_ends(lines: Sequence[str], start: int) -> int:
    """Index of the first line after the table that starts at ``start`` (the next header at column 0)."""
    for index in range(start + 1, len(lines)):
        if lines[index].startswith("["):
            return index
    return len(lines)


def _file_name(lines: Sequence[str], start: int, end: int, source: str) -> str | None:
    for line in lines[start + 1 : end]:
        match = _KEY.match(line)
        if match and match.group("key") == "name":
            value = safe_read.loads_toml(line.encode(), source, "weight registry", UsageError).get("name")
            return value if isinstance(value, str) else None
    return None


def pin_lines(text: str, artifact_id: str, pins: Mapping[str, tuple[str, int]], *, source: str) -> str:
    """``text`` (a registry file) with ``pin``, ``sha256`` and ``size`` set for each file of ``artifact_id``.

    ``pins`` maps file names to ``(sha256, size)``.  Only those lines change (``approx_size`` becomes the
    exact ``size``); everything else, comments included, is kept byte for byte.  :class:`UsageError` when
    a file's table cannot be found.
    """
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    done: set[str] = set()
    index = 0
    while index < len(lines):
        header = _FILES_HEADER.match(lines[index])
        if not header or (header.group("quoted") or header.group("bare")) != artifact_id:
            index += 1
            continue
        end = _block_ends(lines, index)
        name = _file_name(lines, index, end, source)
        if name not in pins:
            index = end
            continue
        digest, size = pins[name]
        block = _pinned_block(lines[index + 1 : end], digest, size, newline)
        lines[index + 1 : end] = block
        done.add(name)
        index += 1 + len(block)
    missing = sorted(set(pins) - done)
    if missing:
        raise UsageError(f"{source}: no [[artifacts.{artifact_id}.files]] table for {', '.join(missing)}")
    return "".join(lines)


def _pinned_block(body: Sequence[str], digest: str, size: int, newline: str) -> list[str]:
    """The key lines of one file's table with the pin written in: replaced where present, added after ``pin``."""
    wanted = {"pin": 'pin = "sha256"', "sha256": f'sha256 = "{digest}"', "size": f"size = {size}"}
    keys = {}
    for position, line in enumerate(body):
        match = _KEY.match(line)
        if match:
            keys.setdefault(match.group("key"), position)
    out = list(body)
    if "size" not in keys and "approx_size" in keys:
        out[keys["approx_size"]] = wanted["size"] + newline
        keys["size"] = keys.pop("approx_size")
    elif "approx_size" in keys:
        out[keys["approx_size"]] = ""
    for key in ("pin", "sha256", "size"):
        if key in keys:
            out[keys[key]] = wanted[key] + newline
    last = keys.get("pin", max(keys.values(), default=-1))
    additions = [wanted[key] + newline for key in ("pin", "sha256", "size") if key not in keys]
    out[last + 1 : last + 1] = additions
    return [line for line in out if line]


def write_pins(path: Path, artifact_id: str, pins: Sequence[FilePin]) -> str:
    """Pin ``artifact_id``'s files in the registry file ``path`` in place; returns the new text.

    The new text is parsed and every pin checked before the file is replaced (atomically); on any
    problem the file is left as it was.
    """
    source = str(path)
    data = safe_read.read_bytes(path, "weight registry", UsageError)
    text = safe_read.decode_text(data, source, "weight registry", UsageError)
    new_text = pin_lines(text, artifact_id, {p.name: (p.sha256, p.size) for p in pins}, source=source)
    document = safe_read.loads_toml(new_text.encode(), source, "weight registry", UsageError)
    registry = parse_registry(document, source=source)
    spec = registry.get(artifact_id)
    for pin in pins:
        written = spec.file(pin.name)
        if (written.pin, written.sha256, written.size) != ("sha256", pin.sha256, pin.size):
            raise UsageError(f"{source}: could not write the pin of {artifact_id}/{pin.name}; the file is unchanged")
    write_atomic(path, new_text)
    return new_text
