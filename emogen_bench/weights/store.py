"""The local weight store: resolve, verify and fetch the registry's artifacts.

Layout of the store folder (``emogen_bench.paths.weights_dir()`` by default)::

    <home>/<artifact id>/<file>   files downloaded from the registry's URLs
    <home>/hf/                    Hub snapshots fetched by earlier versions (still read, never written)
    <home>/recorded.json          full sha256s recorded at the first verified fetch (unpinned and
                                  prefix-pinned files, Hub snapshot files): later checks compare to them
    <home>/verified.json          hash cache: (real path, size, mtime_ns, ctime_ns, inode) -> sha256,
                                  so a large snapshot is hashed once, not at every run

Hugging Face snapshots live in the user's own Hugging Face cache (``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``: :func:`hf_hub_cache`), at the pinned revision,
so a model the user already has is not downloaded or stored twice.

``resolve`` never touches the network; ``fetch`` and ``fetch_each`` are the only methods that do.

Both JSON files are read through :mod:`emogen_bench.safe_read`.  A damaged ``verified.json``
(not JSON, not UTF-8, too deep, a FIFO, malformed entries) is only a cache: it is ignored and the
files are hashed again (a regular file is then rewritten; anything else is left alone).  A damaged
``recorded.json`` is a :class:`WeightsError` naming it, the first time a record is needed: it holds
trust-on-first-use hashes that exist nowhere else, so it is never dropped or replaced silently.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from emogen_bench import paths
from emogen_bench.errors import BenchError, WeightsError
from emogen_bench.fileio import write_json_atomic
from emogen_bench.hashing import SHA256_HEX, digest_listing, sha256_file
from emogen_bench.progress import progress
from emogen_bench.safe_read import file_kind, read_json
from emogen_bench.weights.download import RetryPolicy, digest_matches, download
from emogen_bench.weights.override import Override, Overrides
from emogen_bench.weights.registry import (
    REFERENCE_STATS_LOADER,
    REFERENCE_STATS_PREFIX,
    ArtifactSpec,
    FileSpec,
    Registry,
    load_registry,
    reference_build_hint,
)

State = Literal["ok", "missing", "corrupt", "unverified-unpinned", "overridden"]
Source = Literal["cache", "override", "package"]
#: States that make ``verify`` fail (exit code 3 on the command line).
FAILING_STATES: tuple[str, ...] = ("missing", "corrupt")

RECORDS_FILE = "recorded.json"
HASH_CACHE_FILE = "verified.json"
#: Where earlier versions kept Hub snapshots inside the store; still read so copied folders keep working.
HF_CACHE_FOLDER = "hf"
_SHA1 = re.compile(r"[0-9a-f]{40}")
#: A download of a file whose exact size the registry does not record stops at this many times its rough size.
ROUGH_SIZE_FACTOR = 2
Records = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class ResolvedFile:
    """One local file of an artifact, its full sha256 and what it was checked against."""

    name: str
    path: Path
    sha256: str
    verified_by: tuple[str, ...]


@dataclass(frozen=True)
class ResolvedArtifact:
    """An artifact found locally and checked: what a loader needs, and whether it is the official one.

    ``official`` is true when the bytes equal the registry's pin (a full
    sha256, a prefix, the hash recorded at the first verified fetch of an
    unpinned file, or the Hub's own blob hashes at the pinned revision).  An
    override whose bytes equal the pin is official too (``overridden`` says so).
    """

    id: str
    path: Path
    files: tuple[ResolvedFile, ...]
    pin: str
    official: bool
    overridden: bool
    source: Source
    loader: str
    #: True when the registry fixes these bytes by a full sha256 (or a Hub revision) and they match it.
    pinned: bool = False

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` over the (name, sha256) listing: one citable hash for the whole artifact."""
        return digest_listing([(f.name, f.sha256) for f in self.files])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (for result provenance)."""
        return {
            "id": self.id,
            "path": str(self.path),
            "pin": self.pin,
            "official": self.official,
            "pinned": self.pinned,
            "overridden": self.overridden,
            "source": self.source,
            "loader": self.loader,
            "digest": self.digest,
            "files": {f.name: f.sha256 for f in self.files},
        }


@dataclass(frozen=True)
class ArtifactStatus:
    """What ``verify`` found for one artifact; ``detail`` says it in words, with the fix where one is needed."""

    id: str
    state: State
    detail: str
    path: Path
    official: bool
    overridden: bool
    resolved: ResolvedArtifact | None = None

    @property
    def failed(self) -> bool:
        """True for missing or corrupt artifacts."""
        return self.state in FAILING_STATES

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return {
            "id": self.id,
            "state": self.state,
            "official": self.official,
            "overridden": self.overridden,
            "path": str(self.path),
            "detail": self.detail,
            "digest": self.resolved.digest if self.resolved else None,
            "files": {f.name: f.sha256 for f in self.resolved.files} if self.resolved else {},
        }


@dataclass(frozen=True)
class _Check:
    """One expectation on a file's bytes.

    ``binding``: a mismatch makes the artifact corrupt.  ``pin``: a match
    counts towards ``official``.  In the cache every pin is binding; under an
    override only the override's own sha256 is binding and the registry's pin
    decides ``official`` alone.
    """

    label: str
    expected: str
    binding: bool
    pin: bool
    algo: Literal["sha256", "git-sha1"] = "sha256"


@dataclass(frozen=True)
class _FileResult:
    name: str
    path: Path
    sha256: str | None
    passed: tuple[_Check, ...] = ()
    failed: tuple[tuple[_Check, str], ...] = ()


@dataclass(frozen=True)
class _Location:
    path: Path
    source: Source
    override: Override | None
    files: tuple[tuple[str, Path], ...]
    absent_reason: str | None = None


@dataclass(frozen=True)
class _Assessment:
    spec: ArtifactSpec
    path: Path
    source: Source
    override: Override | None
    files: tuple[_FileResult, ...]
    absent_reason: str | None = None
    digest_failure: tuple[str, str] | None = None  # (expected, found) of a folder override's sha256

    @property
    def missing(self) -> tuple[_FileResult, ...]:
        return tuple(f for f in self.files if f.sha256 is None)

    @property
    def binding_failures(self) -> tuple[tuple[_FileResult, _Check, str], ...]:
        return tuple((f, c, found) for f in self.files for c, found in f.failed if c.binding)

    @property
    def unverified(self) -> tuple[_FileResult, ...]:
        return tuple(f for f in self.files if f.sha256 is not None and not f.passed and not f.failed)

    @property
    def official(self) -> bool:
        if self.missing or self.absent_reason or self.binding_failures or self.digest_failure:
            return False
        return all(any(c.pin for c in f.passed) and not any(c.pin for c, _ in f.failed) for f in self.files)

    @property
    def state(self) -> State:
        if self.absent_reason or self.missing:
            return "missing"
        if self.binding_failures or self.digest_failure:
            return "corrupt"
        if self.override is not None:
            return "overridden"
        return "unverified-unpinned" if self.unverified else "ok"


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _records_problem(document: Any) -> str | None:
    """What is wrong with a parsed ``recorded.json`` (``{"artifacts": {id: {file: {"sha256": hex}}}}``), if anything."""
    if not isinstance(document, dict):
        return "it is not a JSON object"
    artifacts = document.get("artifacts", {})
    if not isinstance(artifacts, dict):
        return "its 'artifacts' is not an object"
    for artifact_id, files in artifacts.items():
        if not isinstance(files, dict):
            return f"artifacts.{artifact_id} is not an object"
        for name, entry in files.items():
            digest = entry.get("sha256") if isinstance(entry, dict) else None
            if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
                return f"artifacts.{artifact_id}.{name} has no sha256 of 64 lower-case hex digits"
    return None


def load_records(path: Path) -> Records:
    """The hashes recorded at first fetch (empty when the file does not exist); :class:`WeightsError` if damaged."""
    if file_kind(path) == "missing":
        return {}
    fix = (
        "It holds the sha256s recorded at the first verified fetch of unpinned and prefix-pinned files, so it is "
        "not replaced: restore it from a backup, or move it aside, delete the affected artifacts' files and fetch "
        "them again to record new hashes."
    )
    try:
        document = read_json(path, "record of first-fetch hashes", WeightsError)
    except WeightsError as error:
        raise WeightsError(f"{error}. {fix}") from None
    problem = _records_problem(document)
    if problem is not None:
        raise WeightsError(f"{path}: the record of first-fetch hashes is damaged: {problem}. {fix}")
    return document.get("artifacts", {})


#: The ``os.stat`` fields a hash cache entry is keyed by (besides the real path): a file whose bytes may have
#: changed differs in one of them.  ``mtime_ns`` alone can be set back (``os.utime``, ``cp -p``, ``rsync -t``,
#: ``tar x``); ``ctime_ns`` cannot (only the system clock sets it) and moves with every write (and with chmod,
#: chown, a new hard link: a harmless re-hash); ``ino`` changes when another file takes the path (``os.replace``,
#: a copy).  The device number is left out: it is assigned at mount time, so a store on a volume mounted again
#: (another boot, another container) would be hashed again for nothing, and ctime already tells the files apart.
STAT_FIELDS: tuple[str, ...] = ("size", "mtime_ns", "ctime_ns", "ino")


def _stat_key(stat: os.stat_result) -> dict[str, int]:
    """The :data:`STAT_FIELDS` of ``stat`` (``size`` is ``st_size`` and so on)."""
    return {name: int(getattr(stat, f"st_{name}")) for name in STAT_FIELDS}


def _cache_entry_ok(entry: Any) -> bool:
    """True for a well-formed hash cache entry: an integer for each of :data:`STAT_FIELDS`, a hex sha256.

    Entries of older versions (``size`` and ``mtime_ns`` only) are not: they are dropped, so their files are
    hashed again once.
    """
    if not isinstance(entry, dict):
        return False
    digest = entry.get("sha256")
    return all(type(entry.get(name)) is int for name in STAT_FIELDS) and isinstance(digest, str) and bool(
        SHA256_HEX.fullmatch(digest)
    )


def hf_hub_cache() -> Path:
    """The Hugging Face Hub cache ``huggingface_hub`` uses by default, read from the environment as it reads it.

    ``$HF_HUB_CACHE`` (or the older ``$HUGGINGFACE_HUB_CACHE``), else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub`` or ``~/.cache/huggingface/hub``; computed here without importing
    ``huggingface_hub`` (``weights list`` stays fast).
    """
    configured = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if configured:
        return Path(os.path.expandvars(configured)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(home)).expanduser() / "hub"


@dataclass(frozen=True)
class FetchOutcome:
    """What ``fetch_each`` did for one artifact: ``ok`` (resolved), ``failed`` (reason) or ``skipped`` (reason)."""

    id: str
    outcome: Literal["ok", "failed", "skipped"]
    resolved: ResolvedArtifact | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        resolved = self.resolved
        return {
            "id": self.id,
            "outcome": self.outcome,
            "path": None if resolved is None else str(resolved.path),
            "bytes": None if resolved is None else resolved_size(resolved),
            "official": None if resolved is None else resolved.official,
            "pinned": None if resolved is None else resolved.pinned,
            "reason": self.reason or None,
        }


def resolved_size(resolved: ResolvedArtifact) -> int:
    """Total bytes of a resolved artifact's files."""
    return sum(f.path.stat().st_size for f in resolved.files if f.path.is_file())


def download_size_cap(spec: FileSpec) -> int | None:
    """The most bytes a download of ``spec`` may bring when its exact size is unknown: twice its rough size."""
    return None if spec.size is not None or spec.approx_size is None else ROUGH_SIZE_FACTOR * spec.approx_size


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file (how the Hub names the blobs of small, non-LFS files)."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _HashCache:
    """sha256 of files keyed by real path, reused while the file's :data:`STAT_FIELDS` are unchanged.

    ``hashed`` lists the real paths this instance read and hashed (a miss each), in order.
    """

    path: Path
    entries: dict[str, Any] = field(default_factory=dict)
    dirty: bool = False
    hashed: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> _HashCache:
        """The cache in ``path``; empty when it is absent or damaged (the files are then hashed again)."""
        try:
            document = read_json(path, "hash cache", WeightsError) if file_kind(path) != "missing" else {}
        except WeightsError:
            document = {}
        entries = document.get("files", {}) if isinstance(document, dict) else {}
        return cls(path, {k: v for k, v in entries.items() if _cache_entry_ok(v)} if isinstance(entries, dict) else {})

    def sha256(self, file: Path) -> str:
        """The sha256 of ``file``: the cached one while its stat key is unchanged, else read and hashed.

        The stat is taken before reading, so a file changed while it is hashed is hashed again next time.
        """
        real = os.path.realpath(file)
        key = _stat_key(os.stat(real))
        entry = self.entries.get(real)
        if isinstance(entry, dict) and all(entry.get(name) == value for name, value in key.items()):
            return str(entry["sha256"])
        digest = sha256_file(real)
        self.hashed.append(real)
        self.entries[real] = {**key, "sha256": digest}
        self.dirty = True
        return digest

    def save(self) -> None:
        """Write the cache back; skipped where that is impossible (a read-only store, a FIFO in its place)."""
        if not self.dirty or file_kind(self.path) not in (None, "missing"):
            return
        self.entries = {path: entry for path, entry in self.entries.items() if os.path.exists(path)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, {"version": 2, "files": self.entries}, sort_keys=True)
            self.dirty = False
        except (OSError, BenchError):
            pass  # a read-only store only costs re-hashing next time


class WeightStore:
    """The benchmark's weight artifacts on this machine.

    ``home`` defaults to ``emogen_bench.paths.weights_dir()``, ``offline`` to
    ``$EMOGEN_BENCH_OFFLINE``; ``overrides`` redirects artifacts to local copies;
    ``registry`` defaults to the shipped one; ``retry`` tunes downloads.
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        offline: bool | None = None,
        overrides: Overrides | None = None,
        registry: Registry | None = None,
        retry: RetryPolicy = RetryPolicy(),
        hf_cache: Path | None = None,
    ) -> None:
        self.home = Path(home) if home is not None else paths.weights_dir()
        #: The Hugging Face cache of Hub snapshots; ``None``: huggingface_hub's own (:func:`hf_hub_cache`).
        self.hf_cache = None if hf_cache is None else Path(hf_cache)
        self.offline = paths.offline_from_env() if offline is None else offline
        self.overrides = overrides or Overrides()
        self.registry = registry or load_registry()
        self.retry = retry
        self._hashes = _HashCache.load(self.home / HASH_CACHE_FILE)
        self._loaded_records: Records | None = None  # read at first need: a damaged file is an error only then

    # ---- public API -------------------------------------------------------------------------

    def resolve(self, artifact_id: str) -> ResolvedArtifact:
        """The local, checked artifact; :class:`WeightsError` if missing or corrupt.  Never downloads."""
        assessment = self._assess(self.registry.get(artifact_id))
        self._hashes.save()
        if assessment.state in FAILING_STATES:
            raise WeightsError(self._problem(assessment))
        return self._resolved(assessment)

    def path(self, artifact_id: str) -> Path:
        """Local path of a checked artifact: a file, or a folder for multi-file and Hub snapshot artifacts."""
        return self.resolve(artifact_id).path

    def verify(self, artifact_ids: Iterable[str] | None = None) -> list[ArtifactStatus]:
        """The state of each artifact (all by default); reports missing and corrupt ones instead of raising."""
        specs = [self.registry.get(i) for i in (self.registry.ids if artifact_ids is None else artifact_ids)]
        statuses = [self._status(self._assess(spec)) for spec in specs]
        self._hashes.save()
        return statuses

    def fetch(
        self, artifact_ids: Iterable[str], *, show_progress: bool = True, force: bool = False
    ) -> list[ResolvedArtifact]:
        """Download what is missing, verify it, record first-fetch hashes; return the resolved artifacts.

        Overridden and already present artifacts are checked, not downloaded.
        ``force`` moves a corrupt cached file aside (``<name>.corrupt-<sha8>``)
        and downloads it again; without it a corrupt file is an error.
        """
        specs = [self.registry.get(i) for i in artifact_ids]
        resolved = []
        for spec in specs:
            if not spec.published and self.overrides.get(spec.id) is None:
                raise WeightsError(unpublished_reason(spec))
            if self.overrides.get(spec.id) is None:
                if spec.source == "hf":
                    self._fetch_snapshot(spec)
                elif spec.source == "url":
                    self._fetch_files(spec, show_progress=show_progress, force=force)
            assessment = self._assess(spec)
            if assessment.state in FAILING_STATES:
                raise WeightsError(self._problem(assessment))
            if assessment.override is None and spec.source == "package":
                self._record(spec, assessment, origin=f"package {spec.package.module}")  # type: ignore[union-attr]
            resolved.append(self._resolved(assessment))
        self._hashes.save()
        return resolved

    def fetch_each(
        self, artifact_ids: Iterable[str], *, show_progress: bool = True, force: bool = False
    ) -> list[FetchOutcome]:
        """:meth:`fetch` each artifact in turn, going on past a failure; one outcome per artifact.

        An artifact that is not published (reference statistics before their release) is ``skipped``
        with the reason, unless an override gives a local copy.
        """
        outcomes = []
        for artifact_id in artifact_ids:
            spec = self.registry.get(artifact_id)
            if not spec.published and self.overrides.get(spec.id) is None:
                outcomes.append(FetchOutcome(spec.id, "skipped", reason=unpublished_reason(spec)))
                continue
            try:
                [resolved] = self.fetch([spec.id], show_progress=show_progress, force=force)
            except WeightsError as error:
                outcomes.append(FetchOutcome(spec.id, "failed", reason=str(error)))
                continue
            outcomes.append(FetchOutcome(spec.id, "ok", resolved))
        return outcomes

    # ---- fetching ---------------------------------------------------------------------------

    def _fetch_files(self, spec: ArtifactSpec, *, show_progress: bool, force: bool) -> None:
        assessment = self._assess(spec)
        broken = {f.name: f for f, _, _ in assessment.binding_failures}
        if broken and not force:
            hint = " (Or rerun fetch with --force: it keeps the bad file aside.)"
            raise WeightsError(self._problem(assessment) + hint)
        todo = [spec.file(r.name) for r in assessment.files if r.sha256 is None or r.name in broken]
        if todo and self.offline:
            raise WeightsError(
                f"offline mode ($EMOGEN_BENCH_OFFLINE or --offline): not downloading {spec.id} "
                f"({todo[0].name}{f' and {len(todo) - 1} more' if len(todo) > 1 else ''}). Copy the files to "
                f"{self.home / spec.id}, use --weights-override, or fetch without --offline."
            )
        for result in broken.values():
            os.replace(result.path, result.path.with_name(f"{result.name}.corrupt-{str(result.sha256)[:8]}"))
        folder = self.home / spec.id
        for file_spec in progress(todo, desc=f"fetch {spec.id}", enabled=show_progress and len(todo) > 1, unit="file"):
            recorded = self._recorded(spec.id, file_spec.name) if file_spec.pin != "sha256" else None
            result = download(
                file_spec.urls,
                folder / file_spec.name,
                expected_sha256=recorded or file_spec.sha256,
                expected_size=file_spec.size,
                size_cap=download_size_cap(file_spec),
                policy=self.retry,
                show_progress=show_progress,
                desc=f"{spec.id}/{file_spec.name}",
            )
            if file_spec.pin != "sha256" and recorded is None:
                self._put_record(spec.id, file_spec.name, result.sha256, origin=result.url)
        self._record(spec, self._assess(spec), origin="verified fetch")

    def _fetch_snapshot(self, spec: ArtifactSpec) -> None:
        hf = spec.hf
        assert hf is not None
        if self._assess(spec).state == "ok":
            return  # present and verified: no need to ask the Hub
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        # huggingface_hub's own cache ($HF_HOME / $HF_HUB_CACHE): no private copy beside the user's
        where = {} if self.hf_cache is None else {"cache_dir": self.hf_cache}
        try:
            snapshot_download(
                hf.repo_id,
                repo_type=hf.repo_type,
                revision=hf.revision,
                allow_patterns=list(hf.allow_patterns),
                local_files_only=self.offline,
                **where,
            )
        except LocalEntryNotFoundError:
            raise WeightsError(
                f"offline mode ($EMOGEN_BENCH_OFFLINE or --offline): {spec.id} ({hf.repo_id}@{hf.revision}) is not "
                f"in the Hugging Face cache {self._hf_cache()}; fetch it online once, copy that cache (or set "
                "HF_HOME to a copy), or use --weights-override."
            ) from None
        except Exception as error:  # noqa: BLE001 - every Hub failure becomes one actionable message
            note = f" Note: {hf.revision_note}." if hf.revision_note else ""
            raise WeightsError(
                f"could not download {spec.id} from the Hugging Face Hub ({hf.repo_id} at revision {hf.revision}): "
                f"{type(error).__name__}: {error}.{note} Check the network and the revision, or use --weights-override."
            ) from None
        assessment = self._assess(spec)
        self._record(spec, assessment, origin=f"hf {hf.repo_id}@{hf.revision}", trust_unverified=True)

    # ---- records ----------------------------------------------------------------------------

    @property
    def _records(self) -> Records:
        """``recorded.json``'s artifacts, read once (:func:`load_records`: a damaged file is a WeightsError)."""
        if self._loaded_records is None:
            self._loaded_records = load_records(self.home / RECORDS_FILE)
        return self._loaded_records

    def _recorded(self, artifact_id: str, name: str) -> str | None:
        entry = self._records.get(artifact_id, {}).get(name)
        return str(entry["sha256"]) if entry is not None else None

    def _put_record(self, artifact_id: str, name: str, digest: str, *, origin: str) -> None:
        entry = {"sha256": digest, "source": origin, "recorded_at": _utc_now()}
        self._records.setdefault(artifact_id, {})[name] = entry
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.home / RECORDS_FILE, {"version": 1, "artifacts": self._records}, sort_keys=True)
        except OSError as error:
            raise WeightsError(
                f"cannot record the hash of {artifact_id}/{name} in {self.home / RECORDS_FILE}: "
                f"{error.strerror or error}; the weights folder must be writable (set EMOGEN_BENCH_HOME)"
            ) from None

    def _record(
        self, spec: ArtifactSpec, assessment: _Assessment, *, origin: str, trust_unverified: bool = False
    ) -> None:
        """Record the full hash of each checked file whose registry pin is not a full sha256.

        Files that nothing could check are recorded only with ``trust_unverified``
        (a Hub snapshot just fetched at its pinned revision: trust on first use).
        """
        if assessment.state in FAILING_STATES:
            return
        unverified = {f.name for f in assessment.unverified}
        for result in assessment.files:
            pinned_fully = spec.hf is None and spec.file(result.name).pin == "sha256"
            trusted = trust_unverified or result.name not in unverified
            if not pinned_fully and trusted and result.sha256 and self._recorded(spec.id, result.name) is None:
                self._put_record(spec.id, result.name, result.sha256, origin=origin)

    # ---- assessment -------------------------------------------------------------------------

    def _pin_checks(self, spec: ArtifactSpec, name: str, *, binding: bool) -> list[_Check]:
        """The registry's expectations on one file: its pin, and the hash recorded at first fetch."""
        checks = []
        if spec.hf is None:
            file_spec = spec.file(name)
            if file_spec.sha256 is not None:
                label = "registry sha256" if file_spec.pin == "sha256" else "registry sha256 prefix"
                checks.append(_Check(label, file_spec.sha256, binding, True))
            if file_spec.pin == "sha256":
                return checks
        recorded = self._recorded(spec.id, name)
        if recorded is not None:
            checks.append(_Check("sha256 recorded at first fetch", recorded, binding, True))
        return checks

    def _check_file(self, name: str, path: Path, checks: Sequence[_Check]) -> _FileResult:
        if not path.is_file():
            return _FileResult(name, path, None)
        found = self._hashes.sha256(path)
        passed: list[_Check] = []
        failed: list[tuple[_Check, str]] = []
        for check in checks:
            actual = git_blob_sha1(path) if check.algo == "git-sha1" else found
            ok = actual == check.expected if check.algo == "git-sha1" else digest_matches(actual, check.expected)
            if ok:
                passed.append(check)
            else:
                failed.append((check, actual))
        return _FileResult(name, path, found, tuple(passed), tuple(failed))

    def _locate(self, spec: ArtifactSpec) -> _Location:
        """Where the artifact's files should be, without reading them."""
        override = self.overrides.get(spec.id)
        if override is not None:
            root = override.path
            if spec.hf is not None:
                names = _snapshot_names(root, spec.hf.required_files)
                return _Location(root, "override", override, _listing(root, names))
            if spec.is_folder:
                return _Location(root, "override", override, _listing(root, [f.name for f in spec.files]))
            path = root / spec.files[0].name if root.is_dir() else root
            return _Location(path, "override", override, ((spec.files[0].name, path),))
        if spec.hf is not None:
            folder = self._snapshot_folder(spec)
            return _Location(folder, "cache", None, _listing(folder, _snapshot_names(folder, spec.hf.required_files)))
        if spec.package is not None:
            return _locate_package(spec)
        folder = self.home / spec.id
        files = _listing(folder, [f.name for f in spec.files])
        return _Location(folder if spec.is_folder else files[0][1], "cache", None, files)

    def _hf_cache(self) -> Path:
        return self.hf_cache if self.hf_cache is not None else hf_hub_cache()

    def _snapshot_folder(self, spec: ArtifactSpec) -> Path:
        """The snapshot in the Hugging Face cache; else one an earlier version kept in ``<home>/hf`` (if there)."""
        assert spec.hf is not None
        folder = spec.hf.cache_folder(self._hf_cache())
        legacy = spec.hf.cache_folder(self.home / HF_CACHE_FOLDER)
        return legacy if not folder.is_dir() and legacy.is_dir() else folder

    def is_present(self, artifact_id: str) -> bool:
        """True when every file of the artifact exists locally (nothing is hashed: use ``verify`` for that)."""
        location = self._locate(self.registry.get(artifact_id))
        return location.absent_reason is None and all(path.is_file() for _, path in location.files)

    def _assess(self, spec: ArtifactSpec) -> _Assessment:
        """Hash every file and hold it against the registry pin, the records and the override."""
        location = self._locate(spec)
        override = location.override
        results = []
        for name, path in location.files:
            checks = self._pin_checks(spec, name, binding=override is None)
            if spec.hf is not None and override is None:
                checks.extend(_hub_blob_checks(path))
            if override is not None and override.sha256 is not None and not spec.is_folder:
                checks.append(_Check(f"override sha256 ({override.source})", override.sha256, True, False))
            results.append(self._check_file(name, path, checks))
        digest_failure = None
        if override is not None and override.sha256 is not None and spec.is_folder and all(r.sha256 for r in results):
            found = digest_listing([(r.name, str(r.sha256)) for r in results])[len("sha256:") :]
            if found != override.sha256:
                digest_failure = (override.sha256, found)
        return _Assessment(
            spec, location.path, location.source, override, tuple(results), location.absent_reason, digest_failure
        )

    # ---- reporting --------------------------------------------------------------------------

    def _resolved(self, assessment: _Assessment) -> ResolvedArtifact:
        files = tuple(
            ResolvedFile(f.name, f.path, f.sha256 or "", tuple(c.label for c in f.passed)) for f in assessment.files
        )
        return ResolvedArtifact(
            id=assessment.spec.id,
            path=assessment.path,
            files=files,
            pin=assessment.spec.pin,
            official=assessment.official,
            overridden=assessment.override is not None,
            source=assessment.source,
            loader=assessment.spec.loader,
            pinned=assessment.official and assessment.spec.pinned,
        )

    def _status(self, assessment: _Assessment) -> ArtifactStatus:
        state = assessment.state
        resolved = None if state in FAILING_STATES else self._resolved(assessment)
        if state in FAILING_STATES:
            detail = self._problem(assessment)
        elif state == "overridden":
            override = assessment.override
            assert override is not None
            verdict = "official: the bytes equal the registry pin" if assessment.official else (
                "not official: the bytes differ from the registry pin or there is no pin to compare"
            )
            checked = " (its sha256 matches the override file)" if override.sha256 else ""
            detail = f"overridden by {override.source}: {assessment.path}{checked}; {verdict}"
        elif state == "unverified-unpinned":
            names = ", ".join(f.name for f in assessment.unverified)
            detail = (
                f"present at {assessment.path}, but {names} has no pinned hash and none was recorded at a fetch, so it "
                f"cannot be checked; delete it and run `emogen-bench weights fetch {assessment.spec.id}`, or give its "
                "sha256 in a --weights-override file"
            )
        else:
            labels = sorted({c.label for f in assessment.files for c in f.passed})
            detail = f"{len(assessment.files)} file(s) at {assessment.path} match the {' and '.join(labels)}"
        return ArtifactStatus(
            id=assessment.spec.id,
            state=state,
            detail=detail,
            path=assessment.path,
            official=assessment.official,
            overridden=assessment.override is not None,
            resolved=resolved,
        )

    def _problem(self, assessment: _Assessment) -> str:
        """The message of a missing or corrupt artifact: what, where, which hash, and the fix."""
        spec = assessment.spec
        fix_override = f"or point --weights-override at a local copy ([artifacts.\"{spec.id}\"] path = \"...\")"
        fix = f"Run `emogen-bench weights fetch {spec.id}`, {fix_override}."
        if assessment.override is not None:
            fix = f"Fix [artifacts.\"{spec.id}\"] in {assessment.override.source}."
        elif spec.source == "package":
            fix = f"Reinstall the {spec.package.module} package, {fix_override}."  # type: ignore[union-attr]
        if assessment.absent_reason:
            return f"weight artifact {spec.id} is missing: {assessment.absent_reason}, {fix_override}."
        if assessment.missing:
            missing = assessment.missing
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            if spec.hf is not None:
                names = ", ".join(f.name for f in missing[:3])
                snapshot = f"{spec.hf.repo_id}@{spec.hf.revision}"
                what = f"the Hugging Face snapshot {snapshot} in {assessment.path} ({names}{more})"
            elif spec.is_folder:
                wanted = ", ".join(f"{f.name} (sha256 {self._expected_text(spec, f.name)})" for f in missing[:3])
                what = f"{len(missing)} of {len(assessment.files)} files in {assessment.path}: {wanted}{more}"
            else:
                what = f"{assessment.path} (sha256 {self._expected_text(spec, missing[0].name)})"
            return f"weight artifact {spec.id} is missing: expected {what}. {fix}"
        if assessment.digest_failure is not None:
            expected, found = assessment.digest_failure
            return (
                f"weight artifact {spec.id} is corrupt: the files in {assessment.path} have listing digest "
                f"sha256:{found}, the override expects sha256:{expected}. {fix}"
            )
        problems = "; ".join(
            f"{f.path} has {'git sha1' if c.algo == 'git-sha1' else 'sha256'} {found}, "
            f"expected {c.expected} ({c.label})"
            for f, c, found in assessment.binding_failures[:3]
        )
        if assessment.override is None:
            fix = f"Delete the file and run `emogen-bench weights fetch {spec.id}`, {fix_override}."
        return f"weight artifact {spec.id} is corrupt: {problems}. {fix}"

    def _expected_text(self, spec: ArtifactSpec, name: str) -> str:
        file_spec = spec.file(name)
        recorded = self._recorded(spec.id, name)
        if file_spec.pin == "sha256":
            return str(file_spec.sha256)
        if recorded:
            return f"{recorded}, recorded at first fetch"
        if file_spec.pin == "sha256-prefix":
            return f"{file_spec.sha256}..."
        return "unpinned: recorded at the first verified fetch"


def unpublished_reason(spec: ArtifactSpec) -> str:
    """Why ``spec`` cannot be fetched: no URL yet; for reference statistics, the command that builds them."""
    if spec.loader == REFERENCE_STATS_LOADER:
        protocol = spec.id.removeprefix(REFERENCE_STATS_PREFIX)
        return (
            f"the official reference statistics {spec.id} (protocol {protocol}) are not published yet (the registry "
            f"has no download URL for them). Build them locally from EmoSet with `{reference_build_hint(protocol)}` "
            "and pass the file with --reference-stats REF.npz"
        )
    return f"weight artifact {spec.id} is not published yet: the registry has no download URL for it"


def _snapshot_names(folder: Path, required: Sequence[str]) -> list[str]:
    """Relative names of a snapshot's files: the required ones (present or not) plus every other file there."""
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()
    return sorted(present | set(required))


def _listing(folder: Path, names: Iterable[str]) -> tuple[tuple[str, Path], ...]:
    return tuple((name, folder / name) for name in names)


def _locate_package(spec: ArtifactSpec) -> _Location:
    """The package file, found without importing the package (importing lpips would import torch)."""
    package = spec.package
    assert package is not None
    try:
        found = importlib.util.find_spec(package.module)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        reason = f"the Python package {package.module!r} is not installed (pip install {package.module})"
        return _Location(Path(package.resource), "package", None, (), reason)
    path = Path(list(found.submodule_search_locations)[0]) / package.resource
    return _Location(path, "package", None, ((spec.files[0].name, path),))


def _hub_blob_checks(path: Path) -> list[_Check]:
    """A Hub cache file is a link to a blob named by its hash: sha256 for LFS files, git sha1 for others."""
    blob = Path(os.path.realpath(path)).name if path.is_symlink() else ""
    if SHA256_HEX.fullmatch(blob):
        return [_Check("Hub blob sha256", blob, True, True)]
    if _SHA1.fullmatch(blob):
        return [_Check("Hub git blob sha1", blob, True, True, "git-sha1")]
    return []
