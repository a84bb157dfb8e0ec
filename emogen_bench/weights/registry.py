"""The pinned-weights registry: ``registry.toml`` parsed into frozen dataclasses.

The TOML file is the one place where the benchmark's weight sources and hashes
live; this module only reads and validates it.  A registry can be built from
any TOML path (tests point artifacts at a local server that way).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from emogen_bench import safe_read
from emogen_bench.errors import UsageError

PinState = Literal["sha256", "sha256-prefix", "unpinned"]
#: Pin states of a file, strongest first.
PIN_STATES: tuple[str, ...] = ("sha256", "sha256-prefix", "unpinned")
#: The pin state of a Hugging Face snapshot: a commit revision, per-file hashes from the Hub's cache.
REVISION_PIN = "revision"

LOADER_KINDS: tuple[str, ...] = (
    "torchscript",
    "torchvision-state-dict",
    "torch-checkpoint",
    "hf-snapshot",
    "lpips-package-file",
    "tensor-files",
    "pickle-table",
    "reference-stats",
)
#: The loader of reference statistics (``emogen_bench.reference_stats``): data, not a model.
REFERENCE_STATS_LOADER = "reference-stats"
#: Registry id of a protocol's official reference statistics: ``ref-stats-<protocol name>``.
REFERENCE_STATS_PREFIX = "ref-stats-"
#: What ``weights fetch --for`` selects: the metric models, what generation or training needs, or everything.
PURPOSES: tuple[str, ...] = ("evaluate", "generate", "train", "all")
Source = Literal["url", "hf", "package"]
SCHEMA_VERSION = 1

_HEX = re.compile(r"[0-9a-f]+")
_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")


@dataclass(frozen=True)
class FileSpec:
    """One file of an artifact and what its bytes must hash to."""

    name: str
    urls: tuple[str, ...]
    pin: PinState
    #: The full hex sha256 (pin "sha256"), its leading hex digits ("sha256-prefix"), or None.
    sha256: str | None = None
    size: int | None = None
    approx_size: int | None = None

    def matches_pin(self, digest: str) -> bool:
        """True when a full hex ``digest`` satisfies this file's registry pin (always for unpinned)."""
        if self.sha256 is None:
            return True
        return digest.startswith(self.sha256) if self.pin == "sha256-prefix" else digest == self.sha256


@dataclass(frozen=True)
class HfSnapshotSpec:
    """A Hugging Face Hub snapshot at a pinned revision, restricted to the files the benchmark needs."""

    repo_id: str
    revision: str
    allow_patterns: tuple[str, ...]
    required_files: tuple[str, ...]
    repo_type: str = "model"
    revision_note: str = ""
    approx_size: int | None = None

    def cache_folder(self, cache_dir: Path) -> Path:
        """Where ``huggingface_hub`` keeps this snapshot under ``cache_dir`` (its documented layout)."""
        prefix = {"model": "models", "dataset": "datasets", "space": "spaces"}[self.repo_type]
        return cache_dir / f"{prefix}--{self.repo_id.replace('/', '--')}" / "snapshots" / self.revision


@dataclass(frozen=True)
class PackageSpec:
    """A file shipped inside an installed Python package."""

    module: str
    resource: str


@dataclass(frozen=True)
class ArtifactSpec:
    """One registry entry: what it is, who uses it, and where its bytes come from."""

    id: str
    description: str
    used_by: tuple[str, ...]
    license: str
    loader: str
    files: tuple[FileSpec, ...] = ()
    hf: HfSnapshotSpec | None = None
    package: PackageSpec | None = None

    @property
    def source(self) -> Source:
        """``hf`` (Hub snapshot), ``package`` (inside an installed package) or ``url`` (downloaded files)."""
        if self.hf is not None:
            return "hf"
        return "package" if self.package is not None else "url"

    @property
    def pin(self) -> str:
        """The weakest pin state of the artifact's files, or ``revision`` for a Hub snapshot."""
        if self.hf is not None:
            return REVISION_PIN
        return max((f.pin for f in self.files), key=PIN_STATES.index)

    @property
    def pinned(self) -> bool:
        """True when the registry alone fixes the bytes: a full sha256 for every file, or a Hub commit revision.

        A commit id names the repository tree, whose LFS pointers hold each large file's sha256 and whose
        git ids hash the small files, so a revision pins every file of a snapshot.
        """
        return self.hf is not None or all(f.pin == "sha256" and f.sha256 for f in self.files)

    @property
    def published(self) -> bool:
        """True when the bytes can be obtained: a Hub snapshot, a package file, or a URL for every file."""
        return self.source != "url" or all(f.urls for f in self.files)

    @property
    def is_folder(self) -> bool:
        """True when the artifact's local path is a folder (several files or a snapshot)."""
        return self.hf is not None or len(self.files) > 1

    @property
    def size(self) -> int | None:
        """Total exact size in bytes when every file's size is known."""
        sizes = [f.size for f in self.files]
        return sum(sizes) if sizes and None not in sizes else None  # type: ignore[arg-type]

    @property
    def approx_size(self) -> int | None:
        """Exact size if known, else the registry's rough figure (display only)."""
        if self.hf is not None:
            return self.hf.approx_size
        if self.size is not None:
            return self.size
        rough = [f.size or f.approx_size for f in self.files]
        return sum(rough) if rough and None not in rough else None  # type: ignore[arg-type]

    def file(self, name: str) -> FileSpec:
        """The file spec called ``name``; ``KeyError`` if the artifact has none."""
        for spec in self.files:
            if spec.name == name:
                return spec
        raise KeyError(name)


@dataclass(frozen=True)
class Registry:
    """Every artifact of one registry file, in file order."""

    artifacts: tuple[ArtifactSpec, ...]
    source: str

    @property
    def ids(self) -> tuple[str, ...]:
        """Artifact ids in registry order."""
        return tuple(a.id for a in self.artifacts)

    def get(self, artifact_id: str) -> ArtifactSpec:
        """The artifact called ``artifact_id``; :class:`UsageError` listing the valid ids otherwise."""
        for artifact in self.artifacts:
            if artifact.id == artifact_id:
                return artifact
        raise UsageError(f"unknown weight artifact {artifact_id!r}; valid ids: {', '.join(self.ids)}")

    def __contains__(self, artifact_id: object) -> bool:
        return artifact_id in self.ids

    def for_purpose(self, purpose: str) -> tuple[str, ...]:
        """The ids ``weights fetch --for purpose`` selects, in registry order.

        ``evaluate``: the metric models (``used_by`` names a metric key; reference statistics are data, fetched
        by name with ``evaluate --reference-stats``); ``generate`` / ``train``: ``used_by`` names it; ``all``:
        every artifact.
        """
        from emogen_bench.task import METRIC_KEYS

        if purpose not in PURPOSES:
            raise UsageError(f"unknown purpose {purpose!r}; choose one of {', '.join(PURPOSES)}")
        if purpose == "all":
            return self.ids
        if purpose == "evaluate":
            return tuple(
                a.id for a in self.artifacts if set(a.used_by) & set(METRIC_KEYS) and a.loader != REFERENCE_STATS_LOADER
            )
        return tuple(a.id for a in self.artifacts if purpose in a.used_by)

    @classmethod
    def from_toml(cls, path: str | Path) -> Registry:
        """Parse and validate a registry TOML file; :class:`UsageError` naming the file and key on problems."""
        path = Path(path)
        return parse_registry(read_toml(path, "weight registry"), source=str(path))


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse the TOML file ``path``; :class:`UsageError` naming ``what`` and the file when it fails.

    Read through :mod:`emogen_bench.safe_read`: a FIFO or device is refused unopened, and a file that is
    too large, not UTF-8 or nested too deeply is an error, not a crash.
    """
    return safe_read.read_toml(path, what, UsageError)


def load_registry() -> Registry:
    """The registry shipped with the package (``emogen_bench/weights/registry.toml``)."""
    source = "emogen_bench/weights/registry.toml"
    data = resources.files("emogen_bench.weights").joinpath("registry.toml").read_bytes()
    return parse_registry(safe_read.loads_toml(data, source, "weight registry", UsageError), source=source)


def packaged_registry_path() -> Path:
    """The file :func:`load_registry` reads (the source file in a checkout or an editable install)."""
    return Path(str(resources.files("emogen_bench.weights").joinpath("registry.toml")))


def reference_stats_id(protocol: str) -> str:
    """The registry id of ``protocol``'s official reference statistics (``ref-stats-eicg-v3``)."""
    return f"{REFERENCE_STATS_PREFIX}{protocol}"


#: The command that builds reference statistics locally (``emogen_bench.reference_stats.build_hint``).
REFERENCE_BUILD_HINT = "emogen-bench reference-stats build --index DIR --emoset-root ROOT --out REF.npz"


def reference_build_hint(protocol: str | None = None) -> str:
    """The build command for ``protocol``'s reference statistics (``--protocol`` added unless the default)."""
    from emogen_bench.task import PROTOCOL

    return REFERENCE_BUILD_HINT if protocol in (None, PROTOCOL) else f"{REFERENCE_BUILD_HINT} --protocol {protocol}"


def parse_registry(data: Mapping[str, Any], *, source: str) -> Registry:
    """Build a :class:`Registry` from parsed TOML; ``source`` names the file in error messages."""
    schema = data.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise UsageError(f"{source}: schema = {schema!r} is not supported; this version reads schema {SCHEMA_VERSION}")
    table = data.get("artifacts")
    if not isinstance(table, Mapping) or not table:
        raise UsageError(f"{source}: no [artifacts.<id>] tables")
    return Registry(tuple(_parse_artifact(aid, entry, source) for aid, entry in table.items()), source)


class _Fields:
    """Typed access to one TOML table whose errors name the file and the key."""

    def __init__(self, table: Any, where: str) -> None:
        if not isinstance(table, Mapping):
            raise UsageError(f"{where} must be a table")
        self.table, self.where = table, where

    def _fail(self, key: str, problem: str) -> UsageError:
        return UsageError(f"{self.where}.{key} {problem}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or (default is None and not value):
            raise self._fail(key, "must be a non-empty string")
        return value

    def texts(self, key: str, *, allow_empty: bool = False) -> tuple[str, ...]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "must be a list of strings")
        if not value and not allow_empty:
            raise self._fail(key, "must not be empty")
        return tuple(value)

    def size(self, key: str) -> int | None:
        value = self.table.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise self._fail(key, "must be a non-negative integer (bytes)")
        return value


def _check_relative(name: str, where: str) -> None:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name or not name.strip():
        raise UsageError(f"{where}: {name!r} must be a plain relative file name")


def _parse_file(entry: Any, where: str) -> FileSpec:
    fields = _Fields(entry, where)
    name = fields.text("name")
    _check_relative(name, f"{where}.name")
    if "/" in name:
        raise UsageError(f"{where}.name {name!r} must not contain '/': artifact files sit side by side")
    pin = fields.text("pin")
    if pin not in PIN_STATES:
        raise UsageError(f"{where}.pin {pin!r} is not one of {', '.join(PIN_STATES)}")
    digest = entry.get("sha256")
    if pin == "unpinned":
        if digest is not None:
            raise UsageError(f"{where}: pin = 'unpinned' but sha256 is given; use pin = 'sha256'")
    else:
        digest = fields.text("sha256").lower()
        wanted = "64 hex digits" if pin == "sha256" else "8 to 63 hex digits"
        if not _HEX.fullmatch(digest) or not (len(digest) == 64 if pin == "sha256" else 8 <= len(digest) < 64):
            raise UsageError(f"{where}.sha256 {digest!r} must be {wanted} for pin = {pin!r}")
    urls = tuple(u for u in fields.texts("urls", allow_empty=True) if u.strip())
    return FileSpec(name, urls, pin, digest, fields.size("size"), fields.size("approx_size"))  # type: ignore[arg-type]


def _parse_hf(entry: Any, where: str) -> HfSnapshotSpec:
    fields = _Fields(entry, where)
    revision = fields.text("revision")
    if not re.fullmatch(r"[0-9a-f]{40}", revision):
        raise UsageError(f"{where}.revision {revision!r} must be a full 40-hex commit id (a branch name is not a pin)")
    required = fields.texts("required_files")
    for name in required:
        _check_relative(name, f"{where}.required_files")
    repo_type = fields.text("repo_type", "model")
    if repo_type not in ("model", "dataset", "space"):
        raise UsageError(f"{where}.repo_type {repo_type!r} must be model, dataset or space")
    return HfSnapshotSpec(
        repo_id=fields.text("repo_id"),
        revision=revision,
        allow_patterns=fields.texts("allow_patterns"),
        required_files=required,
        repo_type=repo_type,
        revision_note=fields.text("revision_note", ""),
        approx_size=fields.size("approx_size"),
    )


def _parse_artifact(artifact_id: str, entry: Any, source: str) -> ArtifactSpec:
    where = f"{source}: [artifacts.{artifact_id}]"
    nested = isinstance(entry, Mapping) and all(isinstance(v, Mapping) for v in entry.values())
    if nested and "description" not in entry:
        raise UsageError(f"{where} has no description; an id that contains a dot must be quoted: [artifacts.\"a.b\"]")
    if not _ID.fullmatch(artifact_id):
        raise UsageError(f"{where}: id must be lower-case letters, digits, '.', '_' or '-'")
    fields = _Fields(entry, where)
    loader = fields.text("loader")
    if loader not in LOADER_KINDS:
        raise UsageError(f"{where}.loader {loader!r} is not one of {', '.join(LOADER_KINDS)}")
    raw_files = entry.get("files", [])
    if not isinstance(raw_files, list):
        raise UsageError(f"{where}.files must be an array of tables [[artifacts.{artifact_id}.files]]")
    files = tuple(_parse_file(f, f"{where}.files[{i}]") for i, f in enumerate(raw_files))
    if len({f.name for f in files}) != len(files):
        raise UsageError(f"{where}.files: two files share a name")
    hf = _parse_hf(entry["hf"], f"{where}.hf") if "hf" in entry else None
    package = None
    if "package" in entry:
        pkg = _Fields(entry["package"], f"{where}.package")
        package = PackageSpec(pkg.text("module"), pkg.text("resource"))
    if hf is not None and (files or package is not None):
        raise UsageError(f"{where}: a Hugging Face snapshot ([.hf]) takes no files or package")
    if hf is None and not files:
        raise UsageError(f"{where}: needs at least one [[files]] entry or an [hf] table")
    if package is not None and (len(files) != 1 or files[0].urls):
        raise UsageError(f"{where}: a package artifact has exactly one file and no urls")
    if package is None and hf is None and loader != REFERENCE_STATS_LOADER:  # statistics may await publication
        for spec in files:
            if not spec.urls:
                raise UsageError(f"{where}: file {spec.name!r} has no url")
    return ArtifactSpec(
        id=artifact_id,
        description=fields.text("description"),
        used_by=fields.texts("used_by"),
        license=fields.text("license"),
        loader=loader,
        files=files,
        hf=hf,
        package=package,
    )
