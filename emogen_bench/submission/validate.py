"""Check a submission folder against the protocol before anything is scored.

A submission is ``DIR/<emotion>/<image>`` for the eight emotions, plus an
optional ``DIR/submission.json``.  Validation lists the tree (never following a
link out of ``DIR``), reads every image once to hash it and decode it, and
reports EVERY problem with its path, so that one run tells a method author all
there is to fix.  It only reads: nothing under ``DIR`` is ever written.

Images are decoded in a small thread pool (Pillow and hashlib release the GIL);
results are sorted afterwards, so they do not depend on the number of workers
or on the order in which the file system lists the files.
"""

from __future__ import annotations

import io
import os
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageFile

from emogen_bench import __version__
from emogen_bench.errors import UsageError
from emogen_bench.hashing import digest_listing, sha256_bytes
from emogen_bench.progress import progress
from emogen_bench.submission.metadata import SubmissionMetadata, parse_metadata_json
from emogen_bench.task import EMOTION_NAMES, PROTOCOL, SUBMISSION

Severity = Literal["error", "warning"]
RunKind = Literal["official", "reduced"]

#: Every problem code, its severity and what it means; stable across releases.
PROBLEM_CODES: dict[str, tuple[Severity, str]] = {
    "not-a-directory": ("error", "an emotion name at the top level is a file, not a folder"),
    "missing-emotion": ("error", "an emotion folder is absent"),
    "unknown-folder": ("error", "a top-level folder that is not one of the eight emotions"),
    "nested-folder": ("error", "a folder inside an emotion folder (images must sit directly in it)"),
    "too-few-images": ("error", "an emotion folder holds fewer images than the run requires"),
    "too-many-images": ("error", "an emotion folder holds more images than the run requires"),
    "empty-file": ("error", "an image file of zero bytes"),
    "unreadable": ("error", "a file or folder the operating system refuses to read"),
    "undecodable": ("error", "an image file Pillow cannot identify or decode"),
    "truncated": ("error", "an image file that ends before its pixel data does"),
    "unsupported-format": ("error", "an image format other than PNG/JPEG, or content not matching the extension"),
    "too-small": ("error", "an image whose shorter side is below the minimum"),
    "unsupported-mode": ("error", "alpha, palette, 1-bit, 16-bit, float or CMYK pixels"),
    "duplicate": ("error", "a file with exactly the same bytes as another file of the submission"),
    "symlink-outside": ("error", "a symbolic link whose target lies outside the submission folder"),
    "broken-symlink": ("error", "a symbolic link whose target does not exist (or loops)"),
    "bad-filename": ("error", "a name that is not printable UTF-8 (it cannot be reported or hashed unambiguously)"),
    "stray-file": ("error", "a file that is not an image, or anything at the top level but submission.json"),
    "bad-metadata": ("error", "submission.json is not valid JSON or breaks the schema (unknown keys: warning)"),
    "ignored-file": ("warning", "an operating-system file (.DS_Store, Thumbs.db, desktop.ini), ignored"),
    "grayscale": ("warning", "an 8-bit grayscale image; accepted and converted to RGB"),
}

#: Threads that read, hash and decode images; decoding releases the GIL.
DEFAULT_WORKERS = 4

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_PNG_END = b"IEND\xaeB`\x82"
_EMPTY_SHA256 = sha256_bytes(b"")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a submission; ``path`` is relative to the submission folder (posix)."""

    code: str
    severity: Severity
    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "path": self.path, "message": self.message}


def _problem(code: str, path: str, message: str, severity: Severity | None = None) -> Problem:
    return Problem(code, severity or PROBLEM_CODES[code][0], path, message)


@dataclass(frozen=True)
class ManifestEntry:
    """One image file of the submission; size, mode and format are ``None`` when it is not a readable image."""

    path: str
    sha256: str
    width: int | None
    height: int | None
    mode: str | None
    format: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "format": self.format,
        }


@dataclass(frozen=True)
class ValidationReport:
    """Everything validation found; ``valid`` means no problem of severity ``error``.

    ``digest`` identifies the image files (path and bytes; see
    :func:`emogen_bench.hashing.digest_listing`), independent of listing order.
    """

    path: Path
    protocol: str
    run_kind: RunKind
    per_emotion: int
    decoded: bool
    problems: tuple[Problem, ...]
    counts: dict[str, int]
    manifest: tuple[ManifestEntry, ...]
    digest: str
    metadata_sha256: str | None = None
    metadata: SubmissionMetadata | None = None
    tool_version: str = field(default=__version__)

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def run_label(self) -> str:
        return run_label(self.per_emotion)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys (documented in docs/submission.md)."""
        return {
            "protocol": self.protocol,
            "tool_version": self.tool_version,
            "path": str(self.path),
            "valid": self.valid,
            "run": {"kind": self.run_kind, "per_emotion": self.per_emotion, "label": self.run_label},
            "decoded": self.decoded,
            "counts": dict(self.counts),
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "problems": [p.to_dict() for p in self.problems],
            "digest": self.digest,
            "metadata_sha256": self.metadata_sha256,
            "metadata": self.metadata.to_dict() if self.metadata else None,
            "manifest": [entry.to_dict() for entry in self.manifest],
        }


def resolve_run(per_emotion: int | None) -> tuple[RunKind, int]:
    """``("official", 1000)`` for ``None``, else ``("reduced", N)``; raises :class:`UsageError` for a bad N."""
    official = SUBMISSION.images_per_emotion
    if per_emotion is None:
        return "official", official
    lowest = SUBMISSION.min_images_per_emotion
    if isinstance(per_emotion, bool) or not isinstance(per_emotion, int) or not lowest <= per_emotion <= official:
        raise UsageError(
            f"--per-emotion must be an integer from {lowest} to {official} (got {per_emotion!r}); "
            f"leave it out for the official run of {official} images per emotion"
        )
    return ("official" if per_emotion == official else "reduced"), per_emotion


def run_label(per_emotion: int) -> str:
    """How a run is labelled everywhere: official, or a reduced run that is not the protocol."""
    if per_emotion == SUBMISSION.images_per_emotion:
        return f"official run: {per_emotion} images per emotion"
    return f"reduced run: {per_emotion} images per emotion (not the official protocol)"


# --- listing the tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """An image file to read: its path in the report and the real file behind it."""

    rel: str
    file: str
    suffix: str


@dataclass
class _Listing:
    candidates: list[_Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    metadata_file: str | None = None


def _display_name(name: str) -> str:
    """``name`` as printable text: undecodable bytes as ``\\xNN``, control characters escaped."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _classify(entry: os.DirEntry[str], rel: str, root: str) -> tuple[str, str] | Problem:
    """``(kind, real path)`` with kind ``file``/``dir``/``other``, or the link problem of ``entry``."""
    path = entry.path
    if entry.is_symlink():
        try:
            path = os.path.realpath(entry.path, strict=True)
        except (OSError, RuntimeError):
            target = os.readlink(entry.path) if os.path.islink(entry.path) else "?"
            return _problem("broken-symlink", rel, f"is a symbolic link to {target!r}, which does not exist; "
                                                  "replace it with the file itself")
        if not _is_within(path, root):
            return _problem("symlink-outside", rel, f"is a symbolic link to {path}, outside the submission "
                                                    "folder; copy the file into the submission instead")
    try:
        if entry.is_symlink():
            is_dir, is_file = os.path.isdir(path), os.path.isfile(path)
        else:
            is_dir, is_file = entry.is_dir(follow_symlinks=False), entry.is_file(follow_symlinks=False)
    except OSError as error:
        return _problem("unreadable", rel, f"cannot be inspected: {error.strerror or error}")
    return ("dir" if is_dir else "file" if is_file else "other"), path


def _sorted_entries(folder: str) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as iterator:
        return sorted(iterator, key=lambda entry: entry.name)


def _unknown_folder_hint(name: str) -> str:
    lowered = name.strip().lower()
    if lowered in EMOTION_NAMES:
        return f"emotion folders are spelled exactly {lowered!r} (lower case, no spaces): rename it"
    return f"a submission holds only the emotion folders ({', '.join(EMOTION_NAMES)}): move it out"


def _list_emotion(emotion: str, folder: str, root: str, listing: _Listing) -> None:
    """Sort the entries of one emotion folder into image candidates and problems."""
    image_formats = Image.registered_extensions()
    accepted = f"{', '.join(SUBMISSION.image_formats)} ({' '.join(SUBMISSION.image_extensions)})"
    try:
        entries = _sorted_entries(folder)
    except OSError as error:
        listing.problems.append(_problem("unreadable", emotion, f"cannot be listed: {error.strerror or error}"))
        return
    count = 0
    for entry in entries:
        shown = _display_name(entry.name)
        rel = f"{emotion}/{shown}"
        if shown != entry.name:
            listing.problems.append(_problem("bad-filename", rel, "the file name is not printable UTF-8 text; "
                                                                  "rename it (e.g. 0000.png)"))
            continue
        if entry.name in SUBMISSION.ignored_files:
            listing.problems.append(_problem("ignored-file", rel, "operating-system file, ignored; you may delete it"))
            continue
        classified = _classify(entry, rel, root)
        if isinstance(classified, Problem):
            listing.problems.append(classified)
            continue
        kind, real = classified
        suffix = os.path.splitext(entry.name)[1].lower()
        if kind == "dir":
            listing.problems.append(_problem("nested-folder", rel, f"is a folder; images must sit directly in "
                                                                   f"{emotion}/, move them up"))
        elif kind == "other":
            listing.problems.append(_problem("stray-file", rel, "is not a regular file; remove it"))
        elif suffix in SUBMISSION.image_extensions:
            listing.candidates.append(_Candidate(rel, real, suffix))
            count += 1
        elif suffix in image_formats:
            message = f"is a {image_formats[suffix]} file by its extension; the protocol accepts {accepted}: convert it"
            listing.problems.append(_problem("unsupported-format", rel, message))
        else:
            message = f"is not an image ({accepted}); remove it or move it out of the submission"
            listing.problems.append(_problem("stray-file", rel, message))
    listing.counts[emotion] = count


def _list_submission(root: str) -> _Listing:
    """Walk the top level and the emotion folders of ``root`` (a real path); reads no file content."""
    listing = _Listing()
    seen: set[str] = set()
    for entry in _sorted_entries(root):
        name = entry.name
        rel = _display_name(name)
        if rel != name:
            message = "the name is not printable UTF-8 text; rename or remove it"
            listing.problems.append(_problem("bad-filename", rel, message))
            continue
        if name in SUBMISSION.ignored_files:
            listing.problems.append(_problem("ignored-file", rel, "operating-system file, ignored; you may delete it"))
            continue
        if name in EMOTION_NAMES:
            seen.add(name)
        classified = _classify(entry, rel, root)
        if isinstance(classified, Problem):
            listing.problems.append(classified)
            continue
        kind, real = classified
        if name == SUBMISSION.metadata_file:
            if kind == "file":
                listing.metadata_file = real
            else:
                message = "must be a JSON file, not a folder or special file"
                listing.problems.append(_problem("bad-metadata", rel, message))
        elif name in EMOTION_NAMES:
            if kind == "dir":
                _list_emotion(name, real, root, listing)
            else:
                message = f"must be a folder holding the {name} images"
                listing.problems.append(_problem("not-a-directory", rel, message))
        elif kind == "dir":
            listing.problems.append(_problem("unknown-folder", rel, _unknown_folder_hint(name)))
        else:
            listing.problems.append(_problem(
                "stray-file", rel,
                f"only {SUBMISSION.metadata_file} and the emotion folders may sit at the top level: remove it",
            ))
    for emotion in EMOTION_NAMES:
        if emotion not in seen:
            listing.problems.append(_problem("missing-emotion", emotion, f"the folder {emotion}/ is missing; "
                                                                         "every emotion needs one"))
    return listing


# --- reading one image ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageHeader:
    """What an image file says about itself, read without decoding the pixels."""

    format: str | None
    mode: str
    width: int
    height: int
    frames: int = 1


def _decode_failure(rel: str, error: Exception) -> Problem:
    if isinstance(error, Image.UnidentifiedImageError):
        return _problem("undecodable", rel, "is not an image file Pillow recognises; re-save or regenerate it")
    text = str(error) or type(error).__name__
    if isinstance(error, EOFError) or (isinstance(error, OSError) and "truncated" in text.lower()):
        return _problem("truncated", rel, f"the file ends early ({text}); re-save or regenerate it")
    return _problem("undecodable", rel, f"cannot be decoded ({type(error).__name__}: {text}); re-save or regenerate it")


def read_header(data: bytes) -> ImageHeader:
    """Identify an image from its bytes without decoding pixels; raises what Pillow raises."""
    with Image.open(io.BytesIO(data)) as image:
        return ImageHeader(image.format, image.mode, image.width, image.height, getattr(image, "n_frames", 1))


def decode_fully(data: bytes, format_name: str | None) -> None:
    """Decode every pixel; for PNG also check every chunk checksum and the end marker.

    Raises on any defect.  Relies on ``ImageFile.LOAD_TRUNCATED_IMAGES`` being false.
    """
    if format_name == "PNG":
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        if data.rfind(_PNG_END) < 0:
            raise OSError("image file is truncated (no complete IEND chunk)")
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def header_problems(rel: str, suffix: str, header: ImageHeader) -> list[Problem]:
    """Format, size and mode problems of one image (pure)."""
    problems = []
    expected = Image.registered_extensions().get(suffix)
    accepted = ", ".join(SUBMISSION.image_formats)
    if header.format not in SUBMISSION.image_formats:
        problems.append(_problem("unsupported-format", rel, f"is a {header.format} file; the protocol accepts "
                                                            f"{accepted}: convert it to PNG"))
    elif header.format != expected:
        fix = {"PNG": ".png", "JPEG": ".jpg"}.get(header.format, "")
        problems.append(_problem("unsupported-format", rel, f"is a {header.format} file named {suffix}: "
                                                            f"rename it to {fix or 'match its format'}"))
    if header.frames > 1:
        message = f"is animated ({header.frames} frames); save one still image"
        problems.append(_problem("unsupported-format", rel, message))
    if min(header.width, header.height) < SUBMISSION.min_side:
        problems.append(_problem("too-small", rel, f"is {header.width}x{header.height}; the shorter side must be at "
                                                   f"least {SUBMISSION.min_side} pixels"))
    if header.mode == "L":
        problems.append(_problem("grayscale", rel, "is 8-bit grayscale (L): accepted and converted to RGB; "
                                                   "save RGB if the method makes colour images"))
    elif header.mode not in SUBMISSION.accepted_modes:
        problems.append(_problem("unsupported-mode", rel, _mode_reason(header.mode)))
    return problems


def _mode_reason(mode: str) -> str:
    if mode in _ALPHA_MODES:
        why = "has an alpha channel; the benchmark will not guess a background: composite it and save RGB"
    elif mode in ("P", "PA"):
        why = "is a palette image; save it as RGB (image.convert('RGB'))"
    elif mode == "1":
        why = "is a 1-bit image; save it as 8-bit RGB"
    elif mode.startswith("I;16") or mode == "I":
        why = "has 16/32-bit integer pixels; save it as 8-bit RGB"
    elif mode == "F":
        why = "has floating-point pixels; save it as 8-bit RGB"
    elif mode == "CMYK":
        why = "is CMYK; convert it to RGB"
    else:
        why = "is not 8-bit RGB or grayscale; save it as 8-bit RGB"
    return f"mode {mode} {why}"


def _inspect_image(candidate: _Candidate, decode: bool) -> tuple[ManifestEntry | None, list[Problem]]:
    """Read, hash and check one image file; ``None`` entry when the file cannot be read."""
    rel = candidate.rel
    try:
        with open(candidate.file, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return None, [_problem("unreadable", rel, f"cannot be read: {error.strerror or error}")]
    sha = sha256_bytes(data)
    unknown = ManifestEntry(rel, sha, None, None, None, None)
    if not data:
        return unknown, [_problem("empty-file", rel, "is empty (0 bytes); regenerate it")]
    try:
        header = read_header(data)
    except Exception as error:  # noqa: BLE001 - any failure to identify is a property of the file
        return unknown, [_decode_failure(rel, error)]
    entry = ManifestEntry(rel, sha, header.width, header.height, header.mode, header.format)
    problems = header_problems(rel, candidate.suffix, header)
    if decode and header.format in SUBMISSION.image_formats:
        try:
            decode_fully(data, header.format)
        except Exception as error:  # noqa: BLE001 - any decoding failure is a property of the file
            problems.append(_decode_failure(rel, error))
    return entry, problems


# --- whole-submission checks ------------------------------------------------------------------


def count_problems(counts: dict[str, int], per_emotion: int) -> list[Problem]:
    """Too few or too many images in each listed emotion folder (pure)."""
    expected = f"expected exactly {per_emotion} ({run_label(per_emotion)})"
    official = per_emotion == SUBMISSION.images_per_emotion
    problems = []
    for emotion, count in counts.items():
        if count < per_emotion:
            hint = "; declare a smaller run with --per-emotion N" if official else ""
            problems.append(_problem("too-few-images", emotion, f"holds {count} image(s); {expected}{hint}"))
        elif count > per_emotion:
            message = (f"holds {count} images; {expected}: the count is exact, do not generate more and keep "
                       f"the best; remove {count - per_emotion}")
            problems.append(_problem("too-many-images", emotion, message))
    return problems


def duplicate_problems(manifest: Iterable[ManifestEntry]) -> list[Problem]:
    """One problem per file whose bytes equal an earlier file's (by path order); empty files excluded (pure)."""
    by_hash: dict[str, list[str]] = defaultdict(list)
    for entry in manifest:
        if entry.sha256 != _EMPTY_SHA256:
            by_hash[entry.sha256].append(entry.path)
    problems = []
    for paths in by_hash.values():
        first, *others = sorted(paths)
        problems.extend(_problem("duplicate", other, f"has exactly the same bytes as {first}; every image must be "
                                                     "generated separately") for other in others)
    return problems


def _metadata_problems(data: bytes, manifest_paths: set[str]) -> tuple[SubmissionMetadata | None, list[Problem]]:
    name = SUBMISSION.metadata_file
    metadata, issues = parse_metadata_json(data)
    problems = [_problem("bad-metadata", name, str(issue), issue.severity) for issue in issues]
    if metadata is not None and metadata.seeds:
        absent = sorted(set(metadata.seeds) - manifest_paths)
        if absent:
            shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
            problems.append(_problem("bad-metadata", name, f"seeds: {len(absent)} path(s) are not images of this "
                                                           f"submission: {shown}"))
    return metadata, problems


def _severity_order(problem: Problem) -> tuple[int, str, str, str]:
    return (0 if problem.severity == "error" else 1, problem.code, problem.path, problem.message)


def validate_submission(
    path: str | Path,
    *,
    per_emotion: int | None = None,
    check_images: bool = True,
    show_progress: bool = True,
    workers: int = DEFAULT_WORKERS,
) -> ValidationReport:
    """Check the submission folder ``path`` and report every problem.

    ``per_emotion=None`` is the official run (exactly ``task.SUBMISSION.images_per_emotion``
    images per emotion); an integer N declares a reduced run, labelled as such.
    ``check_images=False`` reads only image headers (format, size, mode), not the pixels.
    Raises :class:`UsageError` when ``path`` is not a folder or N is out of range.
    """
    run_kind, count = resolve_run(per_emotion)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer (got {workers!r})")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise UsageError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process (another library set it), so "
                         "truncated images cannot be detected; set it to False before validating")
    given = Path(path)
    if not given.exists():
        raise UsageError(f"submission folder {given} does not exist; pass the folder that holds the emotion folders")
    if not given.is_dir():
        raise UsageError(f"{given} is not a folder; pass the folder that holds the emotion folders")
    root = os.path.realpath(given)
    try:
        listing = _list_submission(root)
    except OSError as error:
        raise UsageError(f"cannot list {given}: {error.strerror or error}") from None

    Image.init()  # register every plugin once, before threads open images concurrently
    entries: list[ManifestEntry] = []
    problems = list(listing.problems)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_inspect_image, candidate, check_images) for candidate in listing.candidates]
        try:
            for future in progress(as_completed(futures), desc="checking images", total=len(futures),
                                   enabled=show_progress, unit="img"):
                entry, found = future.result()
                if entry is not None:
                    entries.append(entry)
                problems.extend(found)
        except BaseException:  # Ctrl-C or a bug: do not wait for thousands of queued images
            for future in futures:
                future.cancel()
            raise
    manifest = tuple(sorted(entries, key=lambda e: e.path))
    problems.extend(duplicate_problems(manifest))
    problems.extend(count_problems(listing.counts, count))

    metadata = metadata_sha = None
    if listing.metadata_file is not None:
        try:
            data = Path(listing.metadata_file).read_bytes()
        except OSError as error:
            message = f"cannot be read: {error.strerror or error}"
            problems.append(_problem("unreadable", SUBMISSION.metadata_file, message))
        else:
            metadata_sha = sha256_bytes(data)
            metadata, found = _metadata_problems(data, {entry.path for entry in manifest})
            problems.extend(found)

    return ValidationReport(
        path=Path(os.path.abspath(given)),
        protocol=PROTOCOL,
        run_kind=run_kind,
        per_emotion=count,
        decoded=check_images,
        problems=tuple(sorted(problems, key=_severity_order)),
        counts={emotion: listing.counts.get(emotion, 0) for emotion in EMOTION_NAMES},
        manifest=manifest,
        digest=digest_listing([(entry.path, entry.sha256) for entry in manifest]),
        metadata_sha256=metadata_sha,
        metadata=metadata,
    )
