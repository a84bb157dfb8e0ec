"""The EICG subset index: its row type, its file format, reading it back, and oversampling.

An index is a folder holding ``index.csv`` (one row per kept EmoSet image) and
``summary.json`` (format version, counts, problems, and the sha256 of
``index.csv``).  Rows are always written in one canonical order, so two runs on
the same EmoSet give byte-identical files and :func:`index_digest` identifies
the reference set wherever it is cited.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from emogen_bench import task
from emogen_bench.errors import DataError, UsageError
from emogen_bench.hashing import SHA256_HEX, sha256_bytes, sha256_file
from emogen_bench.safe_read import read_json

INDEX_FILE = "index.csv"
SUMMARY_FILE = "summary.json"
SUMMARY_MD_FILE = "summary.md"
#: Value of ``format`` in ``summary.json``; the version is ``task.DATA.index_format_version``.
INDEX_FORMAT = "emogen-bench-eicg-index"
ATTRIBUTE_KINDS: tuple[str, ...] = ("scene", "object")

_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class IndexRow:
    """One kept image: its emotion, split, single attribute and file.

    ``path`` is relative to the EmoSet root (posix form); ``sha256`` is the hex
    digest of the image file, or empty when the index was prepared without hashing.
    """

    id: str
    emotion: str
    emotion_id: int
    split: str
    attribute: str
    attribute_kind: str
    attribute_original: str
    path: str
    sha256: str = ""


#: Columns of ``index.csv``, in order: the fields of :class:`IndexRow`.
INDEX_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(IndexRow))


def _natural_key(text: str) -> tuple[Any, ...]:
    """``"x_9" < "x_10"``: digit runs compare as numbers (ids may be unpadded integers)."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(_DIGITS.split(text)))


def row_sort_key(row: IndexRow) -> tuple[Any, ...]:
    """Canonical order: emotion id, split (train, val, test), id, then path as a tie-break."""
    return (row.emotion_id, task.DATA.splits.index(row.split), _natural_key(row.id), row.path)


def index_csv_bytes(rows: Sequence[IndexRow]) -> bytes:
    """The canonical ``index.csv`` content for ``rows`` (sorted, UTF-8, ``\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    writer.writerows(astuple(row) for row in sorted(rows, key=row_sort_key))
    return buffer.getvalue().encode("utf-8")


def _index_paths(source: str | Path) -> tuple[Path, Path]:
    """``(index.csv, summary.json)`` for a folder or for the path of its ``index.csv``."""
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{path} does not exist; pass the --out folder of `emogen-bench data prepare`")
    if path.is_dir():
        return path / INDEX_FILE, path / SUMMARY_FILE
    if path.name == INDEX_FILE and path.parent.is_dir():
        return path, path.parent / SUMMARY_FILE
    raise UsageError(
        f"{path} is neither an index folder nor its {INDEX_FILE}; "
        "pass the --out folder of `emogen-bench data prepare`"
    )


def read_summary(source: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """Read and check ``summary.json`` of an index folder (or of the folder of an ``index.csv``).

    Checks the format name and version, and with ``verify`` that ``index.csv``
    still has the sha256 recorded when it was written.
    """
    csv_path, summary_path = _index_paths(source)
    if not summary_path.is_file() and not csv_path.is_file():
        raise UsageError(
            f"{csv_path.parent} holds no index ({INDEX_FILE} and {SUMMARY_FILE} are missing); "
            "create one with `emogen-bench data prepare EMOSET_ROOT --out DIR`"
        )
    rerun = "re-create it with `emogen-bench data prepare EMOSET_ROOT --out DIR --overwrite`"
    for required in (summary_path, csv_path):
        if not required.is_file():
            raise DataError(f"index at {csv_path.parent} is incomplete: {required.name} is missing; {rerun}")
    try:
        summary = read_json(summary_path, "index summary", DataError)
    except DataError as error:
        raise DataError(f"{error}; {rerun}") from None
    if not isinstance(summary, dict) or summary.get("format") != INDEX_FORMAT:
        raise DataError(f"{summary_path} is not an emogen-bench index summary (format is not {INDEX_FORMAT!r})")
    version = summary.get("format_version")
    if version != task.DATA.index_format_version:
        raise DataError(
            f"{summary_path} has index format version {version!r}, but this emogen-bench reads version "
            f"{task.DATA.index_format_version}; {rerun}"
        )
    if verify:
        recorded = summary.get("index", {}).get("sha256") if isinstance(summary.get("index"), dict) else None
        actual = sha256_file(csv_path)
        if recorded != actual:
            raise DataError(
                f"{csv_path} was changed after it was written (sha256 {actual}, summary.json records "
                f"{recorded}); {rerun}"
            )
    return summary


def _parse_row(record: list[str], line: int, csv_path: Path) -> IndexRow:
    """One CSV record as an :class:`IndexRow`, or :class:`DataError` naming the line and field."""

    def bad(what: str) -> DataError:
        return DataError(f"{csv_path}, line {line}: {what}; the index is damaged, re-create it with data prepare")

    if len(record) != len(INDEX_COLUMNS):
        raise bad(f"{len(record)} fields instead of {len(INDEX_COLUMNS)}")
    values = dict(zip(INDEX_COLUMNS, record))
    emotion = values["emotion"]
    if emotion not in task.EMOTION_IDS:
        raise bad(f"unknown emotion {emotion!r}")
    if values["emotion_id"] != str(task.EMOTION_IDS[emotion]):
        raise bad(f"emotion_id {values['emotion_id']!r} does not match emotion {emotion!r}")
    if values["split"] not in task.DATA.splits:
        raise bad(f"split {values['split']!r} is not one of {', '.join(task.DATA.splits)}")
    if values["attribute_kind"] not in ATTRIBUTE_KINDS:
        raise bad(f"attribute_kind {values['attribute_kind']!r} is not one of {', '.join(ATTRIBUTE_KINDS)}")
    for name in ("id", "attribute", "attribute_original", "path"):
        if not values[name]:
            raise bad(f"empty {name}")
    if values["sha256"] and not SHA256_HEX.fullmatch(values["sha256"]):
        raise bad(f"sha256 {values['sha256']!r} is not 64 lower-case hex digits")
    return IndexRow(**{**values, "emotion_id": task.EMOTION_IDS[emotion]})  # type: ignore[arg-type]


def load_index(source: str | Path, *, verify: bool = True) -> list[IndexRow]:
    """The rows of an index folder (or of its ``index.csv``), in file order.

    Validates the format version (``summary.json``), the header and every row;
    with ``verify`` also that ``index.csv`` is unchanged since it was written.
    """
    read_summary(source, verify=verify)
    csv_path, _ = _index_paths(source)
    with open(csv_path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != INDEX_COLUMNS:
            raise DataError(
                f"{csv_path} has header {header!r}; expected the columns {', '.join(INDEX_COLUMNS)}. "
                "Re-create the index with data prepare"
            )
        return [_parse_row(record, reader.line_num, csv_path) for record in reader]


def index_digest(source: str | Path | Sequence[IndexRow]) -> str:
    """``sha256:<hex>`` of the canonical ``index.csv`` of a set of rows (order does not matter).

    For a prepared index this equals ``"sha256:" + summary["index"]["sha256"]``.
    """
    rows = load_index(source) if isinstance(source, (str, Path)) else source
    return "sha256:" + sha256_bytes(index_csv_bytes(rows))


def balanced_order(
    rows: Sequence[IndexRow], *, split: str | None = "train", seed: int = task.DEFAULT_SEED
) -> list[int]:
    """Indices into ``rows`` that oversample every emotion to the size of the largest one.

    Only rows of ``split`` are used (``None``: all rows).  Each emotion with
    ``n`` rows, the largest having ``m``, contributes ``m // n`` whole copies of
    its rows plus a seeded random subset of ``m % n`` of them (without
    replacement); the whole order is then shuffled.  Every present emotion thus
    appears exactly ``m`` times, and a seed always gives the same order.
    """
    if split is not None and split not in task.DATA.splits:
        raise UsageError(f"unknown split {split!r}; expected one of {', '.join(task.DATA.splits)} (or None for all)")
    by_emotion: dict[int, list[int]] = {}
    for position, row in enumerate(rows):
        if split is None or row.split == split:
            by_emotion.setdefault(row.emotion_id, []).append(position)
    if not by_emotion:
        return []
    rng = random.Random(seed)
    largest = max(len(indices) for indices in by_emotion.values())
    order: list[int] = []
    for emotion_id in sorted(by_emotion):
        indices = by_emotion[emotion_id]
        copies, remainder = divmod(largest, len(indices))
        order.extend(indices * copies)
        order.extend(rng.sample(indices, remainder))
    rng.shuffle(order)
    return order
