"""Check a submission folder against the protocol before anything is scored.

A submission is ``DIR/<emotion>/<image>`` for the eight emotions, plus an
optional ``DIR/submission.json``.  Validation lists the tree (never following a
link out of ``DIR``), reads every image once to hash it and decode it, and
reports EVERY problem with its path, so that one run tells a method author all
there is to fix.  It only reads: nothing under ``DIR`` is ever written.

Files are hostile until checked: anything but a regular file is refused by type
before it is opened (opening a FIFO blocks forever), an image's size is checked
from its header before its pixels are decoded, and an image counts as decoded
only when its file holds every pixel (Pillow fills missing PNG rows and a JPEG
scan cut short with made-up pixels, without a word; see :func:`decode_fully`).
Pillow's warnings are kept from the terminal while images are read: what they
warn of is a problem of the file (a ``DecompressionBombWarning`` is an image
above ``task.SUBMISSION.max_side``: ``too-large``), or nothing.

Images are decoded in a small thread pool (Pillow and hashlib release the GIL);
results are sorted afterwards, so they do not depend on the number of workers
or on the order in which the file system lists the files.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageChops, ImageFile

from emogen_bench import __version__
from emogen_bench.errors import InvalidInputError, UsageError
from emogen_bench.hashing import digest_listing, sha256_bytes
from emogen_bench.progress import progress
from emogen_bench.safe_read import file_kind, read_bytes
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
    "unreadable": ("error", "a file or folder the operating system refuses to read (or too large to read)"),
    "undecodable": ("error", "an image file Pillow cannot identify or decode"),
    "truncated": ("error", "an image file that ends before its pixel data does, or holds fewer pixels than declared"),
    "unsupported-format": ("error", "an image format other than PNG/JPEG, or content not matching the extension"),
    "too-small": ("error", "an image whose shorter side is below the minimum"),
    "too-large": ("error", "an image whose longer side is above the maximum (checked before decoding)"),
    "unsupported-mode": ("error", "alpha, palette, 1-bit, 16-bit, float or CMYK pixels"),
    "duplicate": ("error", "a file with the same bytes, or the same decoded pixels, as another file of the submission"),
    "symlink-outside": ("error", "a symbolic link whose target lies outside the submission folder"),
    "broken-symlink": ("error", "a symbolic link whose target does not exist (or loops)"),
    "bad-filename": ("error", "a name that is not printable UTF-8 (it cannot be reported or hashed unambiguously)"),
    "stray-file": ("error", "a file that is not an image, a FIFO, socket or device, or anything at the top level "
                            "but submission.json"),
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


def _not_regular(path: str) -> str:
    """What a path that is not a regular file is, in words ("a FIFO (named pipe)", "a socket", ...)."""
    kind = file_kind(path)
    return kind if kind is not None and kind != "missing" else "not a regular file"


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
            message = f"is {_not_regular(real)}, not a regular file; refused without opening it: remove it"
            listing.problems.append(_problem("stray-file", rel, message))
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
                message = f"is {_not_regular(real)}; it must be a JSON file (a regular file)"
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


class ImageDefect(Exception):
    """A defect that the benchmark's own checks find in a file Pillow decodes; ``code`` is its problem code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _NotRegularFile(Exception):
    """A listed image that is no longer a regular file when it is read; the message says what it is."""


def _decode_failure(rel: str, error: Exception) -> Problem:
    if isinstance(error, ImageDefect):
        return _problem(error.code, rel, error.message)
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return _problem("too-large", rel, f"declares more pixels than can be decoded safely ({error}); the longer "
                                          f"side must be at most {SUBMISSION.max_side} pixels: generate it smaller")
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


def pixel_digest(image: Image.Image) -> str:
    """sha256 of a decoded image's pixels as the benchmark sees them (8-bit grayscale as RGB), size and mode included.

    Two files with this digest in common are the same picture, whatever their bytes.
    """
    seen = image.convert("RGB") if image.mode == "L" else image
    hasher = hashlib.sha256(f"{seen.mode} {seen.width}x{seen.height}\n".encode("ascii"))
    hasher.update(seen.tobytes())
    return hasher.hexdigest()


def _same_pixels(first: Image.Image, second: Image.Image) -> bool:
    """Whether two decoded images are equal pixel for pixel (compared inside Pillow, without copies)."""
    if (first.mode, first.size) != (second.mode, second.size):
        return False
    try:
        return ImageChops.difference(first, second).getbbox() is None
    except ValueError:  # a mode ImageChops does not handle
        return first.tobytes() == second.tobytes()


# PNG: Pillow stops at the end of the zlib stream and leaves the rows it did not get black.

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Samples per pixel of each PNG colour type: grey, RGB, palette, grey + alpha, RGBA.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: The seven Adam7 passes of an interlaced PNG: first column, first row, column step, row step.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_STEP = 1 << 20


def png_pixel_stream_size(width: int, height: int, bit_depth: int, colour_type: int, interlaced: bool) -> int:
    """Bytes a PNG's IDAT stream inflates to: one filter byte plus the packed samples per scanline (pure)."""
    bits = _PNG_CHANNELS[colour_type] * bit_depth

    def lines(columns: int, rows: int) -> int:
        return rows * (1 + (columns * bits + 7) // 8) if columns > 0 and rows > 0 else 0

    if not interlaced:
        return lines(width, height)
    return sum(lines(-(-(width - x) // dx), -(-(height - y) // dy)) for x, y, dx, dy in _ADAM7)


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """``(type, body)`` of each chunk up to IEND (checksums are :meth:`Image.verify`'s job)."""
    view, position = memoryview(data), len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body = view[position + 8 : position + 8 + length]
        if len(body) < length:
            raise OSError("image file is truncated (a chunk runs past the end of the file)")
        yield kind, body
        if kind == b"IEND":
            return
        position += 12 + length


def _inflated_size(inflater: Any, data: bytes | memoryview, limit: int) -> int:
    """Bytes ``data`` inflates to through ``inflater``, counted and dropped; stops once more than ``limit``."""
    produced = 0
    while True:
        out = len(inflater.decompress(data, _INFLATE_STEP))
        produced += out
        data = inflater.unconsumed_tail
        if produced > limit or inflater.eof or (not data and out < _INFLATE_STEP):
            return produced


def check_png_pixels(data: bytes) -> None:
    """Raise :class:`ImageDefect` unless the PNG's IDAT stream inflates to exactly what its IHDR declares.

    Memory stays small: the inflated bytes are counted, not kept.
    """
    chunks = _png_chunks(data)
    kind, body = next(chunks, (b"", memoryview(b"")))
    if kind != b"IHDR" or len(body) < 13:
        raise ImageDefect("undecodable", "does not start with a PNG header chunk (IHDR); re-save or regenerate it")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body[:13])
    if colour not in _PNG_CHANNELS or not width or not height:
        raise ImageDefect("undecodable", f"has a PNG header that no decoder reads ({width}x{height}, colour type "
                                         f"{colour}); re-save or regenerate it")
    expected = png_pixel_stream_size(width, height, depth, colour, bool(interlace))
    inflater, produced = zlib.decompressobj(), 0
    for kind, body in chunks:
        if kind == b"IDAT" and not inflater.eof:
            produced += _inflated_size(inflater, body, expected - produced)
            if produced > expected:
                raise ImageDefect("undecodable", f"its pixel stream holds more than the {expected:,} bytes its "
                                                 f"{width}x{height} header declares; re-save or regenerate it")
    if produced < expected or not inflater.eof:
        rows = "" if interlace else f" ({produced // (expected // height)} of {height} rows)"
        raise ImageDefect("truncated", f"its pixel data is incomplete: the compressed stream holds {produced:,} of "
                                       f"the {expected:,} bytes its {width}x{height} header declares{rows}, and "
                                       "Pillow would fill the rest with black; re-save or regenerate it")


# JPEG: libjpeg meets an end marker inside a scan with a warning that Pillow drops, and makes the rest up.

#: Start-of-frame markers: sequential, progressive and lossless, Huffman or arithmetic coded.
_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
#: Put after every scan to see whether the decoder reads past a scan's end. Its first bit is 1, where
#: libjpeg would make up 0s; it has no 0xFF byte (nothing in it reads as a marker) and no long run of 1s
#: (an invalid code, which libjpeg decodes as symbol 0: in some tables, what a run of 0s decodes to too).
_JPEG_PROBE = bytes((37 * i + 0xA5) % 255 for i in range(256))


@dataclass(frozen=True)
class JpegScan:
    """One scan: its component ids, spectral band ``start..end``, low bit ``low``, and where its coded data ends."""

    components: tuple[int, ...]
    start: int
    end: int
    low: int
    data_end: int


@dataclass(frozen=True)
class JpegLayout:
    """A JPEG's frame (its start-of-frame marker, component ids) and scans, read from the markers alone."""

    frame: int
    components: tuple[int, ...]
    scans: tuple[JpegScan, ...]


def _entropy_end(data: bytes, position: int) -> int:
    """Offset of the marker that ends the coded data starting at ``position`` (stuffed 0xFF and restarts skipped)."""
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            return len(data)
        following = data[position + 1]
        if following != 0 and not 0xD0 <= following <= 0xD7:
            return position
        position += 2


def jpeg_layout(data: bytes) -> JpegLayout:
    """The frame and scans of a JPEG, from its markers (pure; nothing is decoded)."""
    frame: int | None = None
    components: tuple[int, ...] = ()
    scans: list[JpegScan] = []
    position = 2
    while True:
        position = data.find(b"\xff", position)  # bytes between segments are skipped, as libjpeg does
        while 0 <= position < len(data) - 1 and data[position + 1] == 0xFF:
            position += 1  # fill bytes before a marker
        if position < 0 or position + 1 >= len(data) or data[position + 1] == _JPEG_EOI:
            break
        marker, position = data[position + 1], position + 2
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # no segment follows these
        length = int.from_bytes(data[position : position + 2], "big")
        segment = data[position + 2 : position + length]
        if length < 2 or len(segment) < length - 2:
            raise ImageDefect("truncated", f"a JPEG segment (marker 0x{marker:02X}) runs past the end of the file; "
                                           "re-save or regenerate it")
        position += length
        if marker in _JPEG_FRAMES and len(segment) >= 6:
            frame, components = marker, tuple(segment[6:][::3][: segment[5]])
        elif marker == _JPEG_SOS and segment and len(segment) >= 4 + 2 * segment[0]:
            count = segment[0]
            start, end, approximation = segment[1 + 2 * count : 4 + 2 * count]
            position = _entropy_end(data, position)
            scans.append(JpegScan(tuple(segment[1 : 1 + 2 * count : 2]), start, end, approximation & 0x0F, position))
    if frame is None or not scans:
        raise ImageDefect("undecodable", "has no JPEG frame header or no scan; re-save or regenerate it")
    return JpegLayout(frame, components, tuple(scans))


def jpeg_uncoded(layout: JpegLayout) -> list[str]:
    """What the scans never code: a component, or for a progressive JPEG coefficients at full precision (pure)."""
    missing = []
    for component in layout.components:
        scans = [scan for scan in layout.scans if component in scan.components]
        if layout.frame not in _JPEG_PROGRESSIVE:
            if not scans:
                missing.append(f"component {component}")
            continue
        done = {k for scan in scans if scan.low == 0 for k in range(scan.start, min(scan.end, 63) + 1)}
        if len(done) < 64:
            missing.append(f"{64 - len(done)} of the 64 coefficients of component {component}")
    return missing


def _with_probes(data: bytes, scans: Iterable[JpegScan]) -> bytes:
    """``data`` with :data:`_JPEG_PROBE` inserted where each scan's coded data ends."""
    parts, last = [], 0
    for scan in scans:
        parts += [data[last : scan.data_end], _JPEG_PROBE]
        last = scan.data_end
    return b"".join([*parts, data[last:]])


def check_jpeg_pixels(data: bytes, decoded: Image.Image) -> None:
    """Raise :class:`ImageDefect` unless the JPEG's scans hold every pixel of ``decoded``, its decoding.

    Two checks: the scans code every component (and, progressive, every coefficient to full
    precision); and decoding again with bytes put after each scan gives the same pixels. A complete
    scan is never read past its end, so those bytes change only an incomplete one, which libjpeg
    would otherwise finish with made-up data. Arithmetic-coded scans are read past their end by
    design, so they get the first check only.
    """
    layout = jpeg_layout(data)
    uncoded = jpeg_uncoded(layout)
    if uncoded:
        raise ImageDefect("truncated", f"its scans stop before the image is complete (never coded: "
                                       f"{'; '.join(uncoded)}); re-save or regenerate it")
    if layout.frame in _JPEG_ARITHMETIC:
        return
    try:
        with Image.open(io.BytesIO(_with_probes(data, layout.scans))) as probed:
            probed.load()
            complete = _same_pixels(decoded, probed)
    except Exception:  # noqa: BLE001 - failing only with the probes means the decoder read into them
        complete = False
    if not complete:
        raise ImageDefect("truncated", "its compressed pixel data ends early: the decoder runs out of data inside a "
                                       "scan and makes the rest of the image up (a JPEG cut short, then given an "
                                       "end marker); re-save or regenerate it")


def decode_fully(data: bytes, format_name: str | None) -> str:
    """Decode every pixel, check the file holds them all, and return their :func:`pixel_digest`.

    Raises on any defect: what Pillow raises, and :class:`ImageDefect` for what Pillow lets through
    (PNG: a missing end marker, fewer rows in the pixel stream than the header declares; JPEG: a scan
    cut short). Relies on ``ImageFile.LOAD_TRUNCATED_IMAGES`` being false.
    """
    if format_name == "PNG":
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        if data.rfind(_PNG_END) < 0:
            raise OSError("image file is truncated (no complete IEND chunk)")
        check_png_pixels(data)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if format_name == "JPEG":
            check_jpeg_pixels(data, image)
        return pixel_digest(image)


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
    if max(header.width, header.height) > SUBMISSION.max_side:
        problems.append(_problem("too-large", rel, f"is {header.width}x{header.height} by its header; the longer side "
                                                   f"must be at most {SUBMISSION.max_side} pixels (not decoded): "
                                                   "generate it smaller"))
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


@dataclass(frozen=True)
class _Inspection:
    """What reading one image found: its entry (``None`` if unread), its problems, its pixel digest (if decoded)."""

    entry: ManifestEntry | None
    problems: list[Problem]
    pixels: str | None = None


def _nonblocking(path: str, flags: int) -> int:
    """``open`` opener that never waits: a FIFO put in a listed file's place opens at once (and is then refused)."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _read_image_file(path: str) -> bytes:
    """The bytes of a listed image; :class:`_NotRegularFile` if it is no longer a regular file (checked by type)."""
    kind = file_kind(path)
    if kind is not None and kind != "missing":  # a missing file fails to open below, with the system's words
        raise _NotRegularFile(kind)
    with open(path, "rb", opener=_nonblocking) as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise _NotRegularFile(_not_regular(path))
        return handle.read()


def _inspect_image(candidate: _Candidate, decode: bool) -> _Inspection:
    """Read, hash and check one image file; no entry when the file cannot be read."""
    rel = candidate.rel
    try:
        data = _read_image_file(candidate.file)
    except _NotRegularFile as error:
        message = f"is {error}, not a regular file; refused without reading it: remove it"
        return _Inspection(None, [_problem("stray-file", rel, message)])
    except OSError as error:
        return _Inspection(None, [_problem("unreadable", rel, f"cannot be read: {error.strerror or error}")])
    sha = sha256_bytes(data)
    unknown = ManifestEntry(rel, sha, None, None, None, None)
    if not data:
        return _Inspection(unknown, [_problem("empty-file", rel, "is empty (0 bytes); regenerate it")])
    try:
        header = read_header(data)
    except Exception as error:  # noqa: BLE001 - any failure to identify is a property of the file
        return _Inspection(unknown, [_decode_failure(rel, error)])
    entry = ManifestEntry(rel, sha, header.width, header.height, header.mode, header.format)
    problems = header_problems(rel, candidate.suffix, header)
    pixels = None
    too_large = any(problem.code == "too-large" for problem in problems)
    if decode and header.format in SUBMISSION.image_formats and not too_large:
        try:
            pixels = decode_fully(data, header.format)
        except Exception as error:  # noqa: BLE001 - any decoding failure is a property of the file
            problems.append(_decode_failure(rel, error))
    return _Inspection(entry, problems, pixels)


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


def duplicate_problems(manifest: Iterable[ManifestEntry], pixels: Mapping[str, str] | None = None) -> list[Problem]:
    """One problem per file that repeats an earlier one (in path order), empty files excluded (pure).

    A repeat has the same bytes or, failing that, the same decoded pixels (``pixels`` maps a path to
    its :func:`pixel_digest`): re-encoding an image or changing its metadata does not make it new.
    """
    pixels = pixels or {}
    first_bytes: dict[str, str] = {}
    first_pixels: dict[str, str] = {}
    problems = []
    for entry in sorted(manifest, key=lambda e: e.path):
        if entry.sha256 == _EMPTY_SHA256:
            continue
        digest = pixels.get(entry.path)
        if entry.sha256 in first_bytes:
            problems.append(_problem("duplicate", entry.path, f"has exactly the same bytes as "
                                                              f"{first_bytes[entry.sha256]}; every image must be "
                                                              "generated separately"))
        elif digest is not None and digest in first_pixels:
            problems.append(_problem("duplicate", entry.path, f"decodes to exactly the same pixels as "
                                                              f"{first_pixels[digest]} (the files differ only in "
                                                              "encoding or metadata); every image must be "
                                                              "generated separately"))
        first_bytes.setdefault(entry.sha256, entry.path)
        if digest is not None:
            first_pixels.setdefault(digest, entry.path)
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


def _inspect_images(
    candidates: list[_Candidate], decode: bool, workers: int, show_progress: bool
) -> list[_Inspection]:
    """Inspect every candidate in a thread pool, with Pillow's warnings silenced meanwhile.

    What Pillow warns of is a problem of its file or nothing: a ``DecompressionBombWarning`` (at
    89 million pixels) comes from an image far above ``SUBMISSION.max_side``, which the header check
    refuses as ``too-large`` with its size (a ``DecompressionBombError`` is ``too-large`` too).
    The warning filters are global: they are set here, in the calling thread, around the whole pool.
    """
    inspections = []
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        warnings.filterwarnings("ignore", module=r"PIL\.")
        futures = [pool.submit(_inspect_image, candidate, decode) for candidate in candidates]
        try:
            for future in progress(as_completed(futures), desc="checking images", total=len(futures),
                                   enabled=show_progress, unit="img"):
                inspections.append(future.result())
        except BaseException:  # Ctrl-C or a bug: do not wait for thousands of queued images
            for future in futures:
                future.cancel()
            raise
    return inspections


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
    inspections = _inspect_images(listing.candidates, check_images, workers, show_progress)
    manifest = tuple(sorted((i.entry for i in inspections if i.entry is not None), key=lambda e: e.path))
    problems = [*listing.problems, *(problem for inspection in inspections for problem in inspection.problems)]
    pixels = {i.entry.path: i.pixels for i in inspections if i.entry is not None and i.pixels is not None}
    problems.extend(duplicate_problems(manifest, pixels))
    problems.extend(count_problems(listing.counts, count))

    metadata = metadata_sha = None
    if listing.metadata_file is not None:
        try:
            data = read_bytes(listing.metadata_file, "metadata file", InvalidInputError)
        except InvalidInputError as error:  # not a regular file any more, unreadable, or too large
            message = str(error).removeprefix(f"{listing.metadata_file}: ")
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
