"""The weights override file: point registry artifacts at local copies.

Format (TOML)::

    [artifacts.resnet50-places365]
    path = "/data/weights/resnet50_places365.pth.tar"
    sha256 = "..."             # optional; checked when given

    [artifacts."sd-1.5"]       # ids that contain a dot are quoted
    path = "models/sd15"       # relative paths are relative to this file's folder

``path`` is a file for a one-file artifact (or a folder holding that file
under its registry name) and a folder for multi-file and Hugging Face snapshot
artifacts.  For a folder, ``sha256`` is the listing digest printed by
``emogen-bench weights verify --json`` (``sha256:<hex>``).

The file is read through :mod:`emogen_bench.safe_read` (a FIFO or device is refused
unopened; non-UTF-8 or deeply nested TOML is an error), and every problem with it,
including a ``~user`` that does not exist, is a :class:`UsageError` naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError
from emogen_bench.safe_read import file_kind
from emogen_bench.weights.registry import Registry, load_registry, read_toml

_DIGEST = re.compile(r"(?:sha256:)?([0-9a-f]{64})")


@dataclass(frozen=True)
class Override:
    """One redirected artifact: an existing local ``path`` and an optional expected ``sha256`` (hex)."""

    artifact_id: str
    path: Path
    sha256: str | None
    source: Path


@dataclass(frozen=True)
class Overrides:
    """Every override of one file (or none)."""

    entries: tuple[Override, ...] = ()
    source: Path | None = None

    def get(self, artifact_id: str) -> Override | None:
        """The override of ``artifact_id``, if the file has one."""
        for entry in self.entries:
            if entry.artifact_id == artifact_id:
                return entry
        return None

    @classmethod
    def from_toml(cls, path: str | Path, registry: Registry | None = None) -> Overrides:
        """Read and check an override file against ``registry`` (the shipped one by default)."""
        path = expand_user(path, "weights override file").absolute()
        data = read_toml(path, "weights override file")
        return parse_overrides(data, source=path, registry=registry or load_registry())


def expand_user(value: str | Path, what: str) -> Path:
    """``value`` with a leading ``~`` or ``~user`` expanded; :class:`UsageError` naming it when that cannot be done.

    ``Path.expanduser`` raises ``RuntimeError`` for a user that does not exist (or a home it cannot find).
    """
    try:
        return Path(value).expanduser()
    except RuntimeError:
        head = str(value).replace("\\", "/").split("/")[0]
        raise UsageError(f"{what} {value}: cannot expand {head!r} (no such user, or no home folder)") from None


def load_overrides(path: str | Path | None, registry: Registry | None = None) -> Overrides:
    """Overrides from ``path``, or an empty set when ``path`` is None."""
    return Overrides() if path is None else Overrides.from_toml(path, registry)


def parse_overrides(data: Mapping[str, Any], *, source: Path, registry: Registry) -> Overrides:
    """Validate parsed override TOML: known ids, existing paths of the right kind, well-formed hashes."""
    unknown_top = sorted(set(data) - {"artifacts"})
    if unknown_top:
        raise UsageError(f"{source}: unexpected key(s) {', '.join(unknown_top)}; expected [artifacts.<id>] tables")
    table = data.get("artifacts", {})
    if not isinstance(table, Mapping):
        raise UsageError(f"{source}: 'artifacts' must be a table of [artifacts.<id>] entries")
    return Overrides(tuple(_parse_entry(aid, entry, source, registry) for aid, entry in table.items()), source)


def _parse_entry(artifact_id: str, entry: Any, source: Path, registry: Registry) -> Override:
    where = f"{source}: [artifacts.{artifact_id}]"
    if artifact_id not in registry:
        dotted = isinstance(entry, Mapping) and "path" not in entry
        hint = " (an id that contains a dot must be quoted: [artifacts.\"sd-1.5\"])" if dotted else ""
        raise UsageError(f"{where}: unknown artifact id{hint}; valid ids: {', '.join(registry.ids)}")
    if not isinstance(entry, Mapping):
        raise UsageError(f"{where} must be a table with path = \"...\"")
    extra = sorted(set(entry) - {"path", "sha256"})
    if extra:
        raise UsageError(f"{where}: unexpected key(s) {', '.join(extra)}; only path and sha256 are read")
    raw_path = entry.get("path")
    if not isinstance(raw_path, str) or not raw_path or "\0" in raw_path:
        raise UsageError(f"{where}.path must be a non-empty string (without NUL characters)")
    path = expand_user(raw_path, f"{where}.path")
    if not path.is_absolute():
        path = source.parent / path
    _check_kind(path, where, folder=registry.get(artifact_id).is_folder)
    digest = entry.get("sha256")
    if digest is not None:
        match = _DIGEST.fullmatch(digest.lower()) if isinstance(digest, str) else None
        if match is None:
            raise UsageError(f"{where}.sha256 must be 64 hex digits (optionally prefixed 'sha256:')")
        digest = match.group(1)
    return Override(artifact_id, path, digest, source)


def _check_kind(path: Path, where: str, *, folder: bool) -> None:
    """A folder where the artifact needs one, else a regular file or a folder holding it (a FIFO would hang)."""
    kind = file_kind(path)
    if kind == "missing":
        raise UsageError(f"{where}.path: {path} does not exist; fix the path or remove the entry")
    if kind not in (None, "a folder") or (folder and kind is None):
        wanted = "a folder holding the artifact's files" if folder else "a regular file or a folder holding it"
        raise UsageError(f"{where}.path: {path} is {kind or 'a regular file'}; it must be {wanted}")
