"""Reading an EmoSet folder as the EICG subset: split files, annotations, one attribute per image.

This module only reads.  Every irregularity becomes a :class:`Problem` with the
path (relative to the EmoSet root, posix form) of the file at fault; images with
a problem are left out of the subset, never silently.  Writing the index is
:mod:`emogen_bench.data.prepare`'s job.
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emogen_bench import task
from emogen_bench.data.index import IndexRow
from emogen_bench.errors import DataError, UsageError
from emogen_bench.progress import progress
from emogen_bench.safe_read import ReadLimits, file_kind, loads_json, read_bytes, read_json

#: An EmoSet annotation is a small JSON object (about 1 KB); anything past 1 MiB is not one.
ANNOTATION_LIMITS = ReadLimits(max_bytes=1024 * 1024)

IMAGE_DIR = "image"
ANNOTATION_DIR = "annotation"

#: Every problem code, with what it means (used in reports and docs).
PROBLEM_CODES: dict[str, str] = {
    "bad_split_entry": "a split-file entry is not [emotion, id, image path, annotation path] inside the EmoSet folder",
    "unknown_emotion": "an emotion (in a split file, or a folder name) that is not one of the eight",
    "duplicate_entry": "an image listed more than once in one split file",
    "several_splits": "an image listed in more than one split file",
    "duplicate_id": "two images of one emotion share an id",
    "image_missing": "an image listed in a split file is not on disk",
    "image_empty": "an image file has 0 bytes",
    "image_not_a_file": "an image path is a FIFO, device, socket or folder (refused before it is opened)",
    "image_outside": "an image is a link to a file outside the EmoSet folder",
    "image_unreadable": "an image file could not be read",
    "annotation_missing": "the annotation file of a listed image is not on disk",
    "annotation_unreadable": "an annotation file could not be read",
    "annotation_invalid_json": "an annotation file is not valid UTF-8 JSON",
    "annotation_malformed": "an annotation is not an object, or its scene/object fields have the wrong type",
    "orphan_annotation": "an annotation file whose image is not on disk and that no split file lists",
    "unlisted_image": "an image on disk that no split file lists",
    "unexpected_file": "a file directly inside image/ or annotation/, where only emotion folders belong",
}

#: Why a listed image of a known emotion is not in the subset.
DROP_NO_ATTRIBUTE = "no_scene_or_object"
DROP_PROBLEM = "problem"
DROP_REASONS: tuple[str, ...] = (DROP_NO_ATTRIBUTE, DROP_PROBLEM)

#: Operating-system clutter skipped when listing folders.
_CLUTTER = frozenset(name.lower() for name in task.SUBMISSION.ignored_files)


@dataclass(frozen=True)
class Problem:
    """One irregularity in the EmoSet folder; ``path`` is relative to its root."""

    code: str
    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """Plain dict for JSON reports."""
        return {"code": self.code, "path": self.path, "message": self.message}


@dataclass(frozen=True)
class Attribute:
    """The one attribute of an image: its kind, normalised name and original spelling."""

    kind: str
    name: str
    original: str


@dataclass(frozen=True)
class SplitEntry:
    """One valid entry of a split file, paths normalised (posix, relative to the root)."""

    split: str
    emotion: str
    id: str
    image_path: str
    annotation_path: str
    source: str  # e.g. "train.json entry 12", for messages


@dataclass
class EmoSetScan:
    """What :func:`scan_emoset` found: the subset rows (unhashed), tallies and problems.

    ``listed`` and the ``dropped`` counters count split-file entries of known
    emotions by ``(emotion, split)``; for each such pair
    ``listed == kept + dropped[no_scene_or_object] + dropped[problem]``.
    """

    root: Path
    rows: list[IndexRow]
    listed: Counter[tuple[str, str]] = field(default_factory=Counter)
    dropped: dict[str, Counter[tuple[str, str]]] = field(
        default_factory=lambda: {reason: Counter() for reason in DROP_REASONS}
    )
    problems: list[Problem] = field(default_factory=list)


class AnnotationError(ValueError):
    """An annotation whose fields have the wrong type; the message says which."""


class EntryError(ValueError):
    """A split-file entry that cannot be used; ``code`` is the problem code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def normalise_attribute(label: str) -> str:
    """Attribute name as the released code spells it: lower case, spaces -> ``_``."""
    return label.strip().lower().replace(" ", "_")


def choose_attribute(annotation: Any) -> Attribute | None:
    """The image's one attribute: its scene if it has one, else its first object, else ``None``.

    ``scene`` must be a string and ``object`` a list of non-empty strings; absent,
    ``null``, blank and ``[]`` mean "no label".  Raises :class:`AnnotationError`.
    """
    if not isinstance(annotation, dict):
        raise AnnotationError(f"the annotation is a JSON {type(annotation).__name__}, not an object")
    scene = annotation.get("scene")
    if scene is not None and not isinstance(scene, str):
        raise AnnotationError(f"'scene' is {scene!r} ({type(scene).__name__}), expected a string")
    objects = annotation.get("object")
    if objects is not None:
        if not isinstance(objects, list):
            raise AnnotationError(f"'object' is {objects!r} ({type(objects).__name__}), expected a list of strings")
        for item in objects:
            if not isinstance(item, str) or not item.strip():
                raise AnnotationError(f"'object' holds {item!r}, expected non-empty strings")
    if scene is not None and scene.strip():
        return Attribute("scene", normalise_attribute(scene), scene)
    if objects:
        return Attribute("object", normalise_attribute(objects[0]), objects[0])
    return None


def _clean_relative(value: Any) -> str | None:
    """A normalised relative posix path inside the root, or ``None`` if ``value`` is not one."""
    if not isinstance(value, str) or not value or "\\" in value:
        return None
    path = posixpath.normpath(value)
    if path.startswith("/") or path == "." or path.split("/")[0] == "..":
        return None
    return path


def parse_split_entry(entry: Any, split: str, position: int) -> SplitEntry:
    """Check one split-file entry ``[emotion, id, image path, annotation path]``; raises :class:`EntryError`."""
    source = f"{split}.json entry {position}"
    if not isinstance(entry, (list, tuple)) or len(entry) != 4:
        raise EntryError(
            "bad_split_entry", f"{source} is {entry!r}, expected [emotion, id, image path, annotation path]"
        )
    emotion, raw_id, image_value, annotation_value = entry
    if not isinstance(emotion, str):
        raise EntryError("bad_split_entry", f"{source}: emotion {emotion!r} is not a string")
    if emotion not in task.EMOTION_IDS:
        raise EntryError(
            "unknown_emotion",
            f"{source} has emotion {emotion!r}, not one of {', '.join(task.EMOTION_NAMES)}",
        )
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id).strip() == "":
        raise EntryError("bad_split_entry", f"{source}: id {raw_id!r} is not a non-empty string or integer")
    paths = []
    for what, value, folder in (("image", image_value, IMAGE_DIR), ("annotation", annotation_value, ANNOTATION_DIR)):
        path = _clean_relative(value)
        if path is None or not path.startswith(f"{folder}/{emotion}/"):
            raise EntryError(
                "bad_split_entry",
                f"{source}: {what} path {value!r} is not a relative path under {folder}/{emotion}/",
            )
        paths.append(path)
    return SplitEntry(split, emotion, str(raw_id).strip(), paths[0], paths[1], source)


def check_layout(root: Path) -> None:
    """Raise unless ``root`` looks like EmoSet: UsageError if absent, DataError naming what is missing."""
    if not root.exists():
        raise UsageError(f"EmoSet folder {root} does not exist; pass the folder that holds train.json and image/")
    if not root.is_dir():
        raise UsageError(f"{root} is a file; pass the EmoSet folder that holds train.json and image/")
    expected = [(name, root / name, "file") for name in task.DATA.split_files]
    expected += [(f"{name}/", root / name, "folder") for name in (IMAGE_DIR, ANNOTATION_DIR)]
    missing = [name for name, path, kind in expected if not (path.is_file() if kind == "file" else path.is_dir())]
    if missing:
        raise DataError(
            f"{root} is not an EmoSet folder: {', '.join(missing)} missing. Expected "
            f"{', '.join(task.DATA.split_files)}, {IMAGE_DIR}/<emotion>/ and {ANNOTATION_DIR}/<emotion>/ "
            "(download EmoSet-118K from its authors and pass the unpacked folder)"
        )


def read_split_file(root: Path, split: str) -> list[Any]:
    """The raw entries of ``<split>.json``; DataError if it is not a JSON list."""
    path = root / f"{split}.json"
    try:
        entries = read_json(path, "split file", DataError)
    except DataError as error:
        raise DataError(f"{error}; restore it from the EmoSet download") from None
    if not isinstance(entries, list):
        raise DataError(f"split file {path} holds a JSON {type(entries).__name__}, expected a list of entries")
    return entries


def _list_files(folder: Path, relative_to: Path) -> list[str]:
    """Every file under ``folder`` (recursively, clutter skipped) as a relative posix path."""
    found = []
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower() not in _CLUTTER:
                found.append(Path(directory, name).relative_to(relative_to).as_posix())
    return sorted(found)


def _scan_tree(root: Path, top: str, problems: list[Problem]) -> set[str]:
    """Files under ``top/<emotion>/``; unknown emotion folders and stray files become problems."""
    files: set[str] = set()
    for child in sorted((root / top).iterdir()):
        name = child.name
        if name.startswith(".") or name.lower() in _CLUTTER:
            continue
        relative = f"{top}/{name}"
        if not child.is_dir():
            message = f"a file in {top}/, where only emotion folders belong"
            problems.append(Problem("unexpected_file", relative, message))
        elif name not in task.EMOTION_IDS:
            count = len(_list_files(child, root))
            problems.append(
                Problem(
                    "unknown_emotion",
                    relative,
                    f"folder {relative}/ is not one of the eight emotions ({', '.join(task.EMOTION_NAMES)}); "
                    f"its {count} file(s) are not used",
                )
            )
        else:
            files.update(_list_files(child, root))
    return files


def _stem_key(path: str) -> str:
    """``image/awe/x/awe_1.jpg`` and ``annotation/awe/x/awe_1.json`` both give ``awe/x/awe_1``."""
    return posixpath.splitext(path.split("/", 1)[1])[0]


def _read_annotation(root: Path, entry: SplitEntry) -> Attribute | None:
    """The attribute of a listed image; raises EntryError with the problem code."""
    path = root / entry.annotation_path
    kind = file_kind(path)
    if kind is not None:  # a FIFO would block the scan forever: refused by type before it is opened
        raise EntryError("annotation_unreadable", f"the annotation of {entry.image_path} is {kind}, not a file")
    try:
        raw = read_bytes(path, "annotation", DataError, ANNOTATION_LIMITS)
    except DataError as error:
        message = f"cannot read the annotation of {entry.image_path}: {error}"
        raise EntryError("annotation_unreadable", message) from None
    try:
        annotation = loads_json(raw, entry.annotation_path, "annotation", DataError, ANNOTATION_LIMITS)
    except DataError as error:
        raise EntryError("annotation_invalid_json", f"annotation of {entry.image_path}: {error}") from None
    try:
        return choose_attribute(annotation)
    except AnnotationError as error:
        raise EntryError("annotation_malformed", str(error)) from None


def _entries(root: Path, problems: list[Problem], mentioned: set[str]) -> list[SplitEntry]:
    """Every valid entry of the three split files; bad entries become problems.

    ``mentioned`` collects each path a split file names, valid entry or not, so
    that a file is reported once (as a bad entry), not again as unlisted.
    """
    entries = []
    for split, split_file in zip(task.DATA.splits, task.DATA.split_files):
        for position, raw in enumerate(read_split_file(root, split)):
            if isinstance(raw, (list, tuple)):
                mentioned.update(p for p in map(_clean_relative, raw[2:4]) if p is not None)
            try:
                entries.append(parse_split_entry(raw, split, position))
            except EntryError as error:
                problems.append(Problem(error.code, split_file, str(error)))
    return entries


def _duplicates(entries: Iterable[SplitEntry], problems: list[Problem]) -> set[str]:
    """Image paths listed more than once, or sharing an (emotion, id) with another image."""
    by_image: dict[str, list[SplitEntry]] = {}
    for entry in entries:
        by_image.setdefault(entry.image_path, []).append(entry)
    bad: set[str] = set()
    for image_path, listed in by_image.items():
        if len(listed) > 1:
            where = " and ".join(entry.source for entry in listed)
            several = len({entry.split for entry in listed}) > 1
            code = "several_splits" if several else "duplicate_entry"
            problems.append(Problem(code, image_path, f"listed {len(listed)} times: {where}"))
            bad.add(image_path)
    by_id: dict[tuple[str, str], set[str]] = {}
    for image_path, listed in by_image.items():
        by_id.setdefault((listed[0].emotion, listed[0].id), set()).add(image_path)
    for (emotion, image_id), paths in by_id.items():
        if len(paths) > 1:
            for image_path in sorted(paths):
                others = ", ".join(sorted(paths - {image_path}))
                message = f"{emotion} id {image_id!r} is also used by {others}"
                problems.append(Problem("duplicate_id", image_path, message))
            bad.update(paths)
    return bad


def scan_emoset(emoset_root: str | Path, *, show_progress: bool = True) -> EmoSetScan:
    """Read an EmoSet folder and derive the EICG subset (rows without hashes).

    Raises UsageError if the folder does not exist and DataError if it is not
    EmoSet (a split file, ``image/`` or ``annotation/`` missing, or a split file
    that is not a JSON list).  Everything else is a :class:`Problem`.
    """
    root = Path(emoset_root)
    check_layout(root)
    problems: list[Problem] = []
    mentioned: set[str] = set()
    entries = _entries(root, problems, mentioned)
    images_on_disk = _scan_tree(root, IMAGE_DIR, problems)
    annotations_on_disk = _scan_tree(root, ANNOTATION_DIR, problems)
    scan = EmoSetScan(root=root, rows=[], problems=problems)
    for entry in entries:
        scan.listed[(entry.emotion, entry.split)] += 1
    excluded = _duplicates(entries, problems)

    for entry in progress(entries, desc="reading annotations", enabled=show_progress, unit="img"):
        cell = (entry.emotion, entry.split)
        if entry.image_path in excluded:
            scan.dropped[DROP_PROBLEM][cell] += 1
            continue
        found = []
        image = root / entry.image_path
        if entry.image_path not in images_on_disk:
            found.append(Problem("image_missing", entry.image_path, f"listed in {entry.source} but not on disk"))
        elif file_kind(image) is not None:
            found.append(Problem("image_not_a_file", entry.image_path, f"is {file_kind(image)}, not an image file"))
        elif not image.resolve().is_relative_to(root.resolve()):
            found.append(Problem("image_outside", entry.image_path,
                                 f"is a link to {image.resolve()}, outside the EmoSet folder"))  # fmt: skip
        elif image.stat().st_size == 0:
            found.append(Problem("image_empty", entry.image_path, f"listed in {entry.source} but the file is empty"))
        if entry.annotation_path not in annotations_on_disk:
            found.append(
                Problem("annotation_missing", entry.annotation_path, f"annotation of {entry.image_path} is not on disk")
            )
        attribute = None
        if not found:
            try:
                attribute = _read_annotation(root, entry)
            except EntryError as error:
                found.append(Problem(error.code, entry.annotation_path, str(error)))
        if found:
            problems.extend(found)
            scan.dropped[DROP_PROBLEM][cell] += 1
        elif attribute is None:
            scan.dropped[DROP_NO_ATTRIBUTE][cell] += 1
        else:
            scan.rows.append(
                IndexRow(
                    id=entry.id,
                    emotion=entry.emotion,
                    emotion_id=task.EMOTION_IDS[entry.emotion],
                    split=entry.split,
                    attribute=attribute.name,
                    attribute_kind=attribute.kind,
                    attribute_original=attribute.original,
                    path=entry.image_path,
                )
            )

    image_keys = {_stem_key(path) for path in images_on_disk}
    for path in sorted(images_on_disk - mentioned):
        problems.append(Problem("unlisted_image", path, "on disk but listed in no split file"))
    for path in sorted(annotations_on_disk - mentioned):
        if _stem_key(path) not in image_keys:
            problems.append(Problem("orphan_annotation", path, "annotation without an image, listed in no split file"))
    problems.sort(key=lambda p: (p.path, p.code, p.message))
    return scan
