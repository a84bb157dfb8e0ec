"""The feature cache: per-image model outputs on disk, keyed by image content and extractor identity.

A feature is stored under the extractor's :attr:`ExtractorInfo.cache_key`
(name, outputs, preprocessing version, weights digests, model batch) and the
image's sha256, so a changed image, changed weights or changed preprocessing
can never hit a stale entry.  Layout under ``root`` (default
``bench_home()/"features"``)::

    v2/items/<extractor name>/<cache_key>/<sha[:2]>/<sha>.npz   one image's outputs
    v2/summaries/<key[:2]>/<key>.json                           small JSON results (LPIPS per emotion, metric values)

One uncompressed ``.npz`` per image and extractor: 8,000 images x 4 extractors
is 32,000 files of a few KiB, read back in about a second.  Every entry is
written to a temporary name and renamed into place, so readers see a whole
entry or none.  Entries are not fsynced: an entry damaged by a power cut is
simply recomputed.

The cache is a convenience, never a source of truth: every entry carries the
key it was stored under and the sha256 of its content, both checked on read.
An entry that is damaged, edited, moved under another key, not a regular file,
or not shaped as the extractor declares is a miss (recomputed), with a warning
on stderr; a number is never reported from it.  The checksum catches damage and
hand edits; it is not a signature against someone who recomputes it (the
metric values are also cross-checked where they can be, see ``evaluate``).

``emogen-bench cache info`` lists what the cache holds (:func:`inventory`) and
``emogen-bench cache prune`` removes entries by age or extractor (:func:`prune`).
Features are deliberately not packed into one file per submission: an entry per
image keeps the content-hash key (an image shared by two runs is computed once),
and each entry is complete the moment it is renamed into place, which is what
lets an interrupted run resume.

A cache folder that cannot be written (read-only, a regular file, a full disk)
never stops a run: :meth:`FeatureCache.ensure_usable` probes it before the
expensive work, and a write that fails later (``ENOSPC``, ``EROFS``, ``EACCES``)
is one warning, after which the run goes on without storing anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emogen_bench.errors import DataError
from emogen_bench.hashing import SHA256_HEX
from emogen_bench.paths import bench_home
from emogen_bench.safe_read import file_kind, read_bytes, read_json

if TYPE_CHECKING:  # torch is not imported for `emogen-bench cache info|prune`
    from emogen_bench.features.base import ExtractorInfo

#: Bumped when the on-disk layout changes; older layouts are left alone (``clear`` removes them all).
#: v2: every entry carries its key and a sha256 of its content.
LAYOUT = "v2"
_LAYOUT_DIR = re.compile(r"v[0-9]+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

#: The ``format`` of a summary entry's envelope.
SUMMARY_FORMAT = "emogen-bench-cache-summary/1"
#: The members of a feature entry that are not outputs: the key it was stored under, the sha256 of its arrays.
_KEY_MEMBER, _SUM_MEMBER = "__key__", "__sha256__"
#: How a non-finite float is written in a summary (strict JSON has no NaN; the readers refuse it).
_FLOAT_TAG = "__float__"
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_WARNING = "emogen-bench: warning: "


def default_cache_root() -> Path:
    """``bench_home()/"features"``: where features live unless a root is given."""
    return bench_home() / "features"


def _write_replace(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path`` and rename it into place (no fsync: see module doc)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)  # noqa: SIM115
    try:
        with handle:
            handle.write(payload)
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):  # on a read-only or full disk the cleanup may fail too
            Path(handle.name).unlink(missing_ok=True)
        raise


def probe_folder(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (created if absent), or ``None`` when they can.

    Creates the folder, writes a small file under a unique name and removes it:
    a read-only folder, a path through a regular file or a full disk shows here.
    """
    existing = next((p for p in (folder, *folder.parents) if os.path.lexists(p)), None)
    kind = None if existing is None else file_kind(existing)
    if existing is not None and kind != "a folder":
        what = {None: "a regular file", "missing": "a broken symbolic link"}.get(kind, kind)
        return f"{existing} is {what}, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-", suffix=".tmp") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
    except OSError as error:
        return f"a file cannot be written there ({error.strerror or error})"
    return None


# --- feature entries ------------------------------------------------------------------------------


def _arrays_digest(key: str, arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of a key and arrays: each array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256(key.encode("utf-8"))
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"\0{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def encode_outputs(outputs: Mapping[str, np.ndarray], key: str = "") -> bytes:
    """One image's outputs as the bytes of an uncompressed ``.npz`` (dtypes kept), with ``key`` and a checksum.

    ``key`` is the one the entry is stored under; a reader asking for another key treats the entry as absent.
    """
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    if {_KEY_MEMBER, _SUM_MEMBER} & set(arrays):
        raise ValueError(f"output names {_KEY_MEMBER!r} and {_SUM_MEMBER!r} are reserved by the cache")
    checks = {_KEY_MEMBER: np.array(key), _SUM_MEMBER: np.array(_arrays_digest(key, arrays))}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **checks)
    return buffer.getvalue()


def _read_member(archive: zipfile.ZipFile, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """One ``.npy`` member, its header checked before any data is read (``shape=None``: a short string)."""
    with archive.open(f"{name}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            found, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            found, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"member {name!r} has .npy format version {version}")
        if dtype.hasobject:
            raise ValueError(f"member {name!r} holds Python objects")
        if shape is None and (found != () or dtype.kind != "U" or dtype.itemsize > 4 * 256):
            raise ValueError(f"member {name!r} is not a short string")
        if shape is not None and tuple(found) != tuple(shape):
            raise ValueError(f"member {name!r} has shape {found}, not {tuple(shape)}")
        size = math.prod(found) * dtype.itemsize
        data = stream.read(size)
        if len(data) != size or stream.read(1):
            raise ValueError(f"member {name!r} does not hold {size} bytes of data")
    return np.frombuffer(data, dtype=dtype).reshape(found, order="F" if fortran else "C").copy()


def _decode_entry(data: bytes, expected: Mapping[str, tuple[int, ...]], key: str) -> dict[str, np.ndarray] | str:
    """The arrays of one ``.npz`` entry stored under ``key``, or why it cannot be used."""
    members = {f"{name}.npy": name for name in (*expected, _KEY_MEMBER, _SUM_MEMBER)}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if sorted(info.filename for info in infos) != sorted(members):
                return f"it holds {sorted(info.filename for info in infos)}, not the outputs {sorted(expected)}"
            if any(info.compress_type != zipfile.ZIP_STORED for info in infos):
                return "it holds compressed members (the cache writes none)"
            outputs = {name: _read_member(archive, name, tuple(shape)) for name, shape in expected.items()}
            stored_key = str(_read_member(archive, _KEY_MEMBER, None)[()])
            stored_sum = str(_read_member(archive, _SUM_MEMBER, None)[()])
    except Exception as problem:  # noqa: BLE001 - a damaged entry fails in many ways (zip, header, CRC): a miss
        return f"it is not a readable .npz entry ({type(problem).__name__}: {problem})"
    if stored_key != key:
        return f"it was stored under another key ({stored_key[:80]!r})"
    if stored_sum != _arrays_digest(key, outputs):
        return "its content does not match its checksum (edited or damaged)"
    return outputs


def decode_outputs(data: bytes | Path, expected: Mapping[str, tuple[int, ...]], key: str = "") -> dict | None:
    """The arrays of one ``.npz`` entry stored under ``key``, or ``None`` if it is damaged, edited or misshapen."""
    if isinstance(data, Path):
        try:
            data = read_bytes(data, "feature cache entry", DataError)
        except DataError:
            return None
    found = _decode_entry(data, expected, key)
    return None if isinstance(found, str) else found


# --- summary entries ------------------------------------------------------------------------------


def _tag_floats(value: Any) -> Any:
    """``value`` with each NaN or infinity written as ``{"__float__": "nan"}`` (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT_TAG: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, Mapping):
        return {key: _tag_floats(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_tag_floats(item) for item in value]
    return value


def _untag_floats(value: Any) -> Any:
    """The inverse of :func:`_tag_floats`."""
    if isinstance(value, dict):
        if len(value) == 1 and value.get(_FLOAT_TAG) in _NON_FINITE:
            return _NON_FINITE[value[_FLOAT_TAG]]
        return {key: _untag_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untag_floats(item) for item in value]
    return value


def _document_digest(document: Any) -> str:
    """sha256 of a (tagged) document's canonical JSON: the same before writing and after reading."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def encode_summary(key: str, document: Any) -> bytes:
    """The bytes of a summary entry: ``document`` in an envelope naming its key and its checksum."""
    tagged = _tag_floats(document)
    envelope = {"format": SUMMARY_FORMAT, "key": key, "sha256": _document_digest(tagged), "document": tagged}
    return json.dumps(envelope, sort_keys=True, allow_nan=False).encode("utf-8")


def check_summary(envelope: Any, key: str) -> str | None:
    """Why a parsed summary entry cannot be used as the one stored under ``key`` (``None`` when it can)."""
    if not isinstance(envelope, dict) or set(envelope) != {"format", "key", "sha256", "document"}:
        return "it is not a cache entry of this version (no key and checksum)"
    if envelope["format"] != SUMMARY_FORMAT:
        return f"its format is {str(envelope['format'])[:80]!r}, not {SUMMARY_FORMAT!r}"
    if envelope["key"] != key:
        return f"it was stored under another key ({str(envelope['key'])[:80]!r})"
    if envelope["sha256"] != _document_digest(envelope["document"]):
        return "its content does not match its checksum (edited or damaged)"
    return None


class FeatureCache:
    """Per-image features and small per-set summaries on disk; ``enabled=False`` makes every call a no-op.

    Keys are validated (sha256: 64 lower-case hex digits; names: plain file
    names), so no key can reach outside ``root``.  Extractors that are not
    ``cacheable`` are never stored.  A write that fails stops further writes
    (one warning); reads go on.
    """

    def __init__(self, root: str | Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.enabled = enabled
        self.write_error: str | None = None

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r}, enabled={self.enabled})"

    @property
    def _base(self) -> Path:
        return self.root / LAYOUT

    @property
    def writable(self) -> bool:
        """Whether entries are still stored (enabled, and no write has failed)."""
        return self.enabled and self.write_error is None

    def probe(self) -> str | None:
        """Why the cache folder cannot be used (it is created and a file written and removed), or ``None``."""
        return probe_folder(self._base)

    def ensure_usable(self) -> bool:
        """Probe the folder before the expensive work; if it is unusable, warn once and turn the cache off."""
        if not self.enabled:
            return False
        problem = self.probe()
        if problem is None:
            return True
        self.enabled = False
        _warn(f"the feature cache folder {self.root} cannot be used ({problem}); running without the cache "
              "(every feature is computed, nothing is stored)")  # fmt: skip
        return False

    def item_path(self, info: ExtractorInfo, sha256: str) -> Path:
        """Where the outputs of ``info``'s extractor for the image ``sha256`` are stored."""
        if not _SAFE_NAME.fullmatch(info.name):
            raise ValueError(f"extractor name {info.name!r} cannot be used as a cache folder name")
        if not SHA256_HEX.fullmatch(sha256):
            raise ValueError(f"{sha256!r} is not a sha256 (64 lower-case hex digits)")
        return self._base / "items" / info.name / info.cache_key / sha256[:2] / f"{sha256}.npz"

    @staticmethod
    def item_key(info: ExtractorInfo, sha256: str) -> str:
        """The key a feature entry carries: extractor name, its cache key and the image's sha256."""
        return f"{info.name}/{info.cache_key}/{sha256}"

    def summary_path(self, key: str) -> Path:
        """Where the summary stored under ``key`` lives."""
        if not _SAFE_NAME.fullmatch(key):
            raise ValueError(f"summary key {key!r} must be a plain name (letters, digits, '.', '_', '-')")
        return self._base / "summaries" / key[:2] / f"{key}.json"

    def _read_item(self, info: ExtractorInfo, sha: str) -> dict[str, np.ndarray] | str | None:
        """One image's cached outputs, ``None`` if absent, or why the entry there cannot be used."""
        path = self.item_path(info, sha)
        if not os.path.lexists(path):
            return None
        try:
            data = read_bytes(path, "feature cache entry", DataError)
        except DataError as problem:
            return str(problem)
        found = _decode_entry(data, info.outputs, self.item_key(info, sha))
        return f"{path}: {found}" if isinstance(found, str) else found

    def get_many(self, info: ExtractorInfo, sha256s: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
        """The cached outputs of every image in ``sha256s`` that has a sound entry (others are absent).

        Entries that cannot be used are named in one warning and recomputed by the caller.
        """
        if not self.enabled or not info.cacheable:
            return {}
        found: dict[str, dict[str, np.ndarray]] = {}
        problems: list[str] = []
        for sha in dict.fromkeys(sha256s):
            entry = self._read_item(info, sha)
            if isinstance(entry, str):
                problems.append(entry)
            elif entry is not None:
                found[sha] = entry
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            _warn(f"{len(problems)} cached {info.name} feature entr{'y' if len(problems) == 1 else 'ies'} not used, "
                  f"recomputed: {problems[0]}{more}")  # fmt: skip
        return found

    def put_many(self, info: ExtractorInfo, outputs: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Store ``{sha256: {output name: per-image array}}``; each entry is written atomically."""
        if not self.writable or not info.cacheable:
            return
        for sha, arrays in outputs.items():
            path = self.item_path(info, sha)
            if not self._write(path, encode_outputs(arrays, self.item_key(info, sha))):
                return

    def get_summary(self, key: str) -> Any | None:
        """The JSON document stored under ``key``, or ``None`` (absent, unusable, or cache disabled).

        An entry that is there but cannot be used (damaged, edited, not a regular file, too deep) is
        named in a warning.
        """
        if not self.enabled:
            return None
        path = self.summary_path(key)
        if not os.path.lexists(path):
            return None
        try:
            envelope = read_json(path, "cache entry", DataError)
        except DataError as problem:
            _warn(f"{problem}; not used, recomputed")
            return None
        problem = check_summary(envelope, key)
        if problem is not None:
            self.reject_summary(key, problem)
            return None
        return _untag_floats(envelope["document"])

    def reject_summary(self, key: str, problem: str) -> None:
        """Warn that the summary stored under ``key`` is not used because of ``problem`` (a caller's check)."""
        _warn(f"{self.summary_path(key)}: {problem}; not used, recomputed")

    def put_summary(self, key: str, document: Any) -> None:
        """Store a JSON-able ``document`` under ``key`` (NaN allowed: a jackknife may leave too few images)."""
        if not self.writable:
            return
        self._write(self.summary_path(key), encode_summary(key, document))

    def _write(self, path: Path, payload: bytes) -> bool:
        """Write one entry; on failure warn once, store nothing more, and return ``False``."""
        try:
            _write_replace(path, payload)
        except OSError as error:
            self.write_error = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
            _warn(f"cannot write to the feature cache {self.root} ({self.write_error}); the run goes on "
                  "without storing anything more in it")  # fmt: skip
            return False
        return True

    def _layouts(self) -> list[Path]:
        """The layout folders (``v1``, ...) under ``root``: the only things the cache owns there."""
        if not self.root.is_dir():
            return []
        return sorted(child for child in self.root.iterdir() if child.is_dir() and _LAYOUT_DIR.fullmatch(child.name))

    def size(self) -> int:
        """Bytes used by cached files (every layout version under ``root``)."""
        total = 0
        for layout in self._layouts():
            for folder, _, files in os.walk(layout):
                for name in files:
                    try:
                        total += os.stat(os.path.join(folder, name)).st_size
                    except OSError:
                        continue
        return total

    def clear(self) -> int:
        """Delete every cached entry (only the cache's own layout folders under ``root``); returns bytes freed."""
        freed = self.size()
        for layout in self._layouts():
            shutil.rmtree(layout)
        return freed


def _warn(message: str) -> None:
    """One warning line on stderr, as the command line writes them."""
    print(_WARNING + message, file=sys.stderr)


# --- inventory and pruning (``emogen-bench cache info|prune``) ------------------------------------

#: What a summary entry is, from the prefix of its key (``pipeline``: LPIPS; ``evaluate``: the rest).
SUMMARY_KINDS = {"lpips": "LPIPS per-emotion summaries", "metrics": "metric values",
                 "extractor": "extractor identities"}  # fmt: skip
_DAY = 86_400.0


@dataclass(frozen=True)
class CacheFile:
    """One file under the cache's layout folders: what it is, its size and when it was written.

    ``kind`` is ``features`` (one image's outputs; ``group`` is the extractor name), ``summary`` (``group`` is
    the key's prefix, see :data:`SUMMARY_KINDS`), ``partial`` (a temporary file an interrupted write left) or
    ``old-layout`` (an entry of an earlier cache layout, never read by this version).
    """

    path: Path
    kind: str
    group: str
    size: int
    mtime: float


def cache_files(root: Path) -> Iterator[CacheFile]:
    """Every file the cache owns under ``root`` (its layout folders only; links are never followed)."""
    if not root.is_dir():
        return
    for layout in sorted(child for child in root.iterdir() if child.is_dir() and not child.is_symlink()
                         and _LAYOUT_DIR.fullmatch(child.name)):  # fmt: skip
        for folder, folders, files in os.walk(layout):
            folders.sort()
            for name in sorted(files):
                path = Path(folder, name)
                try:
                    stat = path.lstat()
                except OSError:
                    continue
                yield CacheFile(path, *_classify(layout, path), stat.st_size, stat.st_mtime)


def _classify(layout: Path, path: Path) -> tuple[str, str]:
    """``(kind, group)`` of a file of the cache (see :class:`CacheFile`)."""
    if layout.name != LAYOUT:
        return "old-layout", layout.name
    parts = path.relative_to(layout).parts
    if path.name.startswith(".") and path.name.endswith(".tmp"):
        return "partial", parts[0]
    if len(parts) == 5 and parts[0] == "items" and path.suffix == ".npz":
        return "features", parts[1]
    if len(parts) == 3 and parts[0] == "summaries" and path.suffix == ".json":
        prefix = path.stem.split("-", 1)[0]
        return "summary", prefix if prefix in SUMMARY_KINDS else "other"
    return "other", parts[0]


@dataclass
class _Tally:
    entries: int = 0
    bytes: int = 0
    oldest: float | None = None
    newest: float | None = None
    models: set[str] = field(default_factory=set)

    def add(self, entry: CacheFile) -> None:
        self.entries += 1
        self.bytes += entry.size
        self.oldest = entry.mtime if self.oldest is None else min(self.oldest, entry.mtime)
        self.newest = entry.mtime if self.newest is None else max(self.newest, entry.mtime)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"entries": self.entries, "bytes": self.bytes}
        document["oldest"], document["newest"] = _iso(self.oldest), _iso(self.newest)
        return document


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def inventory(root: Path) -> dict[str, Any]:
    """What the cache at ``root`` holds: totals, feature entries per extractor (with how many distinct models,
    i.e. extractor cache keys, they come from), summaries per kind, partial writes and older layouts."""
    total = _Tally()
    tallies: dict[str, dict[str, _Tally]] = {"features": {}, "summary": {}, "partial": {}, "old-layout": {},
                                             "other": {}}  # fmt: skip
    for entry in cache_files(root):
        total.add(entry)
        tally = tallies[entry.kind].setdefault(entry.group, _Tally())
        tally.add(entry)
        if entry.kind == "features":
            tally.models.add(entry.path.parent.parent.name)
    extractors = {name: {**t.to_dict(), "models": len(t.models)} for name, t in sorted(tallies["features"].items())}
    return {
        "root": str(root),
        "layout": LAYOUT,
        **total.to_dict(),
        "extractors": extractors,
        "summaries": {kind: t.to_dict() for kind, t in sorted(tallies["summary"].items())},
        "partial": _merged(tallies["partial"]),
        "old_layouts": {name: t.to_dict() for name, t in sorted(tallies["old-layout"].items())},
        "other": _merged(tallies["other"]),
    }


def _merged(groups: Mapping[str, _Tally]) -> dict[str, Any]:
    total = _Tally()
    for tally in groups.values():
        total.entries += tally.entries
        total.bytes += tally.bytes
        for stamp in (tally.oldest, tally.newest):
            if stamp is not None:
                total.oldest = stamp if total.oldest is None else min(total.oldest, stamp)
                total.newest = stamp if total.newest is None else max(total.newest, stamp)
    return total.to_dict()


def select_for_pruning(
    files: Iterable[CacheFile], *, older_than_days: float | None, extractor: str | None, everything: bool, now: float
) -> list[CacheFile]:
    """The files a prune removes (pure): ``everything``, or those matching every criterion given.

    ``extractor`` picks that extractor's feature entries (and, for ``lpips``, its per-emotion summaries);
    ``older_than_days`` files written more than that many days before ``now``.  Metric values and extractor
    identities stay unless ``everything`` or their age says otherwise: they stay true whatever features remain.
    """
    if everything:
        return list(files)
    chosen = []
    for entry in files:
        if extractor is not None and not (
            (entry.kind == "features" and entry.group == extractor)
            or (extractor == "lpips" and entry.kind == "summary" and entry.group == "lpips")
        ):
            continue
        if older_than_days is not None and now - entry.mtime <= older_than_days * _DAY:
            continue
        chosen.append(entry)
    return chosen


def prune(
    root: Path,
    *,
    older_than_days: float | None = None,
    extractor: str | None = None,
    everything: bool = False,
    dry_run: bool = False,
    now: float | None = None,
) -> dict[str, Any]:
    """Remove (or with ``dry_run`` only count) the cache files :func:`select_for_pruning` picks; emptied folders
    go too.  Returns ``{"dry_run", "removed": {entries, bytes}, "by_kind": {...}, "failed": [...]}``.

    Only files the cache owns are touched (its layout folders under ``root``); a file that cannot be removed
    is listed under ``failed`` and the rest go on.
    """
    if not everything and older_than_days is None and extractor is None:
        raise ValueError("prune needs a criterion: older_than_days, extractor or everything")
    chosen = select_for_pruning(
        cache_files(root), older_than_days=older_than_days, extractor=extractor, everything=everything,
        now=time.time() if now is None else now,
    )  # fmt: skip
    removed, by_kind, failed = _Tally(), {}, []
    for entry in chosen:
        if not dry_run:
            try:
                entry.path.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:
                failed.append(f"{entry.path}: {error.strerror or error}")
                continue
        removed.add(entry)
        by_kind.setdefault(f"{entry.kind}:{entry.group}", _Tally()).add(entry)
    if not dry_run:
        _remove_empty_folders(root)
    return {
        "root": str(root),
        "dry_run": dry_run,
        "removed": {"entries": removed.entries, "bytes": removed.bytes},
        "by_kind": {key: {"entries": t.entries, "bytes": t.bytes} for key, t in sorted(by_kind.items())},
        "failed": failed,
    }


def _remove_empty_folders(root: Path) -> None:
    """Remove the folders left empty under the cache's layout folders (the layout folders too)."""
    if not root.is_dir():
        return
    for layout in (c for c in root.iterdir() if c.is_dir() and not c.is_symlink() and _LAYOUT_DIR.fullmatch(c.name)):
        for folder, _, _ in sorted(os.walk(layout), key=lambda walked: -len(Path(walked[0]).parts)):
            with contextlib.suppress(OSError):  # not empty, or not ours to remove: left as it is
                os.rmdir(folder)

