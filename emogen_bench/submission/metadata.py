"""``submission.json``: how a submission's images were made (schema version 1).

The file is optional; when present it is validated field by field so that a
typo or a wrong type is caught before results are published.  Every check is a
pure function over the parsed JSON document; reading and writing the file are
the only I/O here.  The file is read and parsed by :mod:`emogen_bench.safe_read`
(a regular file only, bounded size, depth and integers, no repeated key, no lone
surrogate).  The schema is documented in ``docs/submission.md``.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from emogen_bench.errors import BenchError, InvalidInputError, UsageError
from emogen_bench.fileio import write_atomic
from emogen_bench.safe_read import loads_json, read_bytes
from emogen_bench.task import EMOTION_NAMES, SUBMISSION

SCHEMA_VERSION = 1

Severity = Literal["error", "warning"]

#: Optional free-text fields; each is a string (or null / absent).
_TEXT_FIELDS: tuple[str, ...] = ("method_version", "base_model", "seed_policy", "sampler", "notes")

#: Every key of schema version 1, in the order ``to_dict`` writes them.
KNOWN_KEYS: tuple[str, ...] = (
    "schema_version",
    "method",
    "method_version",
    "base_model",
    "seed_policy",
    "seeds",
    "sampler",
    "steps",
    "guidance",
    "resolution",
    "notes",
)

#: Keys people write for a known one, where spelling alone points elsewhere ("version" is closest to
#: "schema_version", the format's own version, but means the method's): checked before the fuzzy match.
KEY_CONFUSIONS: dict[str, str] = {
    "version": "method_version",
    "model_version": "method_version",
    "method_name": "method",
    "name": "method",
    "model": "base_model",
    "base": "base_model",
    "checkpoint": "base_model",
    "scheduler": "sampler",
    "num_inference_steps": "steps",
    "num_steps": "steps",
    "guidance_scale": "guidance",
    "cfg": "guidance",
    "cfg_scale": "guidance",
    "size": "resolution",
    "image_size": "resolution",
    "comment": "notes",
    "comments": "notes",
    "description": "notes",
}


def suggest_key(key: str) -> str | None:
    """The known key an unknown ``key`` most likely stands for: a known confusion first, else the closest name."""
    folded = key.strip().lower().replace("-", "_").replace(" ", "_")
    if folded in KEY_CONFUSIONS:
        return KEY_CONFUSIONS[folded]
    if folded in KNOWN_KEYS:  # "Method", "method-version": only the spelling differs
        return folded
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
    return close[0] if close else None


@dataclass(frozen=True)
class MetadataIssue:
    """One problem found in a metadata document; ``key`` is ``None`` for the document as a whole."""

    key: str | None
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


@dataclass(frozen=True)
class SubmissionMetadata:
    """The content of ``submission.json``; only ``method`` is required.

    ``seeds`` maps a relative image path (``"<emotion>/<file>"``) to the integer
    seed that produced it; ``seed_policy`` states the rule in words instead (or
    as well).  ``resolution`` is ``(width, height)`` of the generated images.
    Construction checks every field and raises :class:`InvalidInputError`.
    """

    method: str
    method_version: str | None = None
    base_model: str | None = None
    seed_policy: str | None = None
    seeds: dict[str, int] | None = None
    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    resolution: tuple[int, int] | None = None
    notes: str | None = None
    schema_version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self) -> None:
        _raise_on_errors(check_metadata(self._fields_as_json()))
        if self.resolution is not None:
            object.__setattr__(self, "resolution", (int(self.resolution[0]), int(self.resolution[1])))
        if self.guidance is not None:
            object.__setattr__(self, "guidance", float(self.guidance))
        if self.seeds is not None:
            object.__setattr__(self, "seeds", dict(sorted(self.seeds.items())))

    def _fields_as_json(self) -> dict[str, Any]:
        values = {key: getattr(self, key) for key in KNOWN_KEYS}
        if isinstance(values["resolution"], tuple):
            values["resolution"] = list(values["resolution"])
        if isinstance(values["seeds"], Mapping):
            values["seeds"] = dict(values["seeds"])
        return {key: value for key, value in values.items() if value is not None}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> SubmissionMetadata:
        """Build from a parsed JSON object; raises :class:`InvalidInputError` naming every bad key.

        Unknown keys are dropped; use :func:`parse_metadata` to see them as warnings.
        """
        metadata, issues = parse_metadata(document)
        _raise_on_errors(issues)
        assert metadata is not None  # no errors means it was built
        return metadata

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the documented key order; absent optional fields are left out."""
        return self._fields_as_json()


def _raise_on_errors(issues: list[MetadataIssue]) -> None:
    errors = [str(issue) for issue in issues if issue.severity == "error"]
    if errors:
        raise InvalidInputError("invalid submission metadata: " + "; ".join(errors))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _check_seed_path(key: str) -> str | None:
    """Why ``key`` is not a valid ``"<emotion>/<file>"`` image path, or ``None``."""
    if "\\" in key:
        return "use '/' as the separator"
    parts = PurePosixPath(key).parts
    if key.startswith("/") or len(parts) != 2 or any(part in (".", "..") for part in parts):
        return "must be a relative path '<emotion>/<file>'"
    if parts[0] not in EMOTION_NAMES:
        return f"{parts[0]!r} is not an emotion folder ({', '.join(EMOTION_NAMES)})"
    if PurePosixPath(parts[1]).suffix.lower() not in SUBMISSION.image_extensions:
        return f"not an image file name ({', '.join(SUBMISSION.image_extensions)})"
    return None


def _check_seeds(value: object) -> list[tuple[str, str]]:
    if not isinstance(value, Mapping):
        return [("seeds", f"must be an object mapping '<emotion>/<file>' to an integer seed, got {_describe(value)}")]
    errors = []
    for path, seed in sorted(value.items(), key=lambda item: str(item[0])):
        key = f"seeds[{str(path)!r}]"
        reason = _check_seed_path(path) if isinstance(path, str) else "the key must be a string path"
        if reason:
            errors.append((key, reason))
        if not _is_int(seed):
            errors.append((key, f"the seed must be an integer, got {_describe(seed)}"))
    return errors


def _check_field(key: str, value: object) -> list[tuple[str, str]]:
    """``(key, message)`` errors for one known key's non-null value."""
    if key == "seeds":
        return _check_seeds(value)
    if key == "schema_version":
        if not _is_int(value):
            message = f"must be the integer {SCHEMA_VERSION}, got {_describe(value)}"
        elif value > SCHEMA_VERSION:
            message = f"version {value} is newer than this emogen-bench reads ({SCHEMA_VERSION}); upgrade emogen-bench"
        elif value != SCHEMA_VERSION:
            message = f"must be {SCHEMA_VERSION}, got {value}"
        else:
            return []
    elif key == "method":
        if isinstance(value, str) and value.strip():
            return []
        message = f"must be a non-empty string naming the method, got {_describe(value)}"
    elif key in _TEXT_FIELDS:
        if isinstance(value, str):
            return []
        message = f"must be a string, got {_describe(value)}"
    elif key == "steps":
        if _is_int(value) and value >= 1:
            return []
        message = f"must be an integer >= 1, got {_describe(value)}"
    elif key == "guidance":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return []
        message = f"must be a finite number, got {_describe(value)}"
    elif key == "resolution":
        if isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v >= 1 for v in value):
            return []
        message = f"must be [width, height], two integers >= 1, got {_describe(value)}"
    else:
        raise AssertionError(f"unhandled key {key!r}")
    return [(key, message)]


def check_metadata(document: object) -> list[MetadataIssue]:
    """Every problem of a parsed metadata document: wrong types are errors, unknown keys warnings."""
    if not isinstance(document, Mapping):
        return [MetadataIssue(None, "error", f"must be a JSON object {{...}}, got {type(document).__name__}")]
    issues: list[MetadataIssue] = []
    if document.get("method") is None:
        issues.append(MetadataIssue("method", "error", "is required: the name of the method that made the images"))
    for key in KNOWN_KEYS:
        value = document.get(key)
        if value is None:
            continue
        issues.extend(MetadataIssue(name, "error", message) for name, message in _check_field(key, value))
    for key in sorted(str(k) for k in document if k not in KNOWN_KEYS):
        suggestion = suggest_key(key)
        hint = f"did you mean {suggestion!r}?" if suggestion else f"known keys: {', '.join(KNOWN_KEYS)}"
        issues.append(MetadataIssue(key, "warning", f"unknown key, ignored ({hint})"))
    return issues


def parse_metadata(document: object) -> tuple[SubmissionMetadata | None, list[MetadataIssue]]:
    """Check a parsed document and build the metadata when it has no errors.

    Returns ``(metadata or None, issues)``; never raises for bad content.
    """
    issues = check_metadata(document)
    if any(issue.severity == "error" for issue in issues):
        return None, issues
    assert isinstance(document, Mapping)
    known = {key: document[key] for key in KNOWN_KEYS if document.get(key) is not None}
    if "resolution" in known:
        known["resolution"] = tuple(known["resolution"])
    if "seeds" in known:
        known["seeds"] = dict(known["seeds"])
    return SubmissionMetadata(**known), issues


#: How :func:`parse_metadata_json` names the document to :func:`~emogen_bench.safe_read.loads_json`; the
#: prefix is dropped from its messages, which the caller puts after the file's own name.
_SOURCE = "submission.json"


def parse_metadata_json(data: bytes) -> tuple[SubmissionMetadata | None, list[MetadataIssue]]:
    """Parse the bytes of a ``submission.json`` (UTF-8, optional BOM) and check them; never raises for bad bytes.

    What :func:`~emogen_bench.safe_read.loads_json` refuses (invalid JSON or UTF-8, a repeated key,
    NaN/Infinity, nesting deeper than 64, an integer beyond 64 bits, a lone surrogate) is one error issue.
    """
    try:
        document = loads_json(data, _SOURCE, "file", InvalidInputError)
    except BenchError as error:
        return None, [MetadataIssue(None, "error", str(error).removeprefix(f"{_SOURCE}: "))]
    return parse_metadata(document)


def read_metadata(path: str | Path) -> SubmissionMetadata:
    """Read and check a ``submission.json``; raises :class:`InvalidInputError` naming the file.

    A path that is missing, unreadable, too large or not a regular file (a FIFO, a device: refused by
    type before it is opened) is a :class:`UsageError`.
    """
    path = Path(path)
    data = read_bytes(path, "submission metadata file", UsageError)
    metadata, issues = parse_metadata_json(data)
    errors = [str(issue) for issue in issues if issue.severity == "error"]
    if errors:
        raise InvalidInputError(f"{path}: " + "; ".join(errors) + " (see docs/submission.md for the schema)")
    assert metadata is not None
    return metadata


def metadata_to_json(metadata: SubmissionMetadata) -> bytes:
    """The exact bytes :func:`write_metadata` writes: indented UTF-8 JSON with a final newline."""
    return (json.dumps(metadata.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_metadata(directory: str | Path, metadata: SubmissionMetadata, *, overwrite: bool = False) -> Path:
    """Write ``directory/submission.json`` atomically (temporary file, then rename) and return its path.

    Refuses to replace an existing file unless ``overwrite`` is true.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory; create the submission folder first")
    target = directory / SUBMISSION.metadata_file
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise UsageError(f"{target} already exists; refusing to overwrite it (pass overwrite=True to replace it)")
    write_atomic(target, metadata_to_json(metadata))
    return target
