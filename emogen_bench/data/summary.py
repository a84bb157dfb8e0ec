"""The summary of an index: built from a scan (``summary.json``), rendered as text or Markdown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emogen_bench import __version__, task
from emogen_bench.data.emoset import DROP_NO_ATTRIBUTE, DROP_PROBLEM, DROP_REASONS, Problem
from emogen_bench.data.index import ATTRIBUTE_KINDS, INDEX_FILE, INDEX_FORMAT, IndexRow
from emogen_bench.errors import DataError

#: How many problems the printed summary lists before pointing to summary.json.
MAX_PRINTED_PROBLEMS = 20

_DROP_TITLES = {
    DROP_NO_ATTRIBUTE: "Dropped: no scene or object label",
    DROP_PROBLEM: "Dropped: left out for a problem",
}


def emotion_split_table(counter: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """``{emotion: {split: n, "total": n}}`` for every emotion, plus a ``"total"`` row."""
    columns = (*task.DATA.splits, "total")
    table: dict[str, dict[str, int]] = {}
    for emotion in task.EMOTION_NAMES:
        cells = {split: int(counter.get((emotion, split), 0)) for split in task.DATA.splits}
        table[emotion] = {**cells, "total": sum(cells.values())}
    table["total"] = {column: sum(table[emotion][column] for emotion in task.EMOTION_NAMES) for column in columns}
    return table


def attribute_vocabulary(rows: Sequence[IndexRow]) -> dict[str, Any]:
    """Per kind, how many images carry each attribute name; plus names shared by both kinds."""
    counts = {kind: Counter(row.attribute for row in rows if row.attribute_kind == kind) for kind in ATTRIBUTE_KINDS}
    vocabulary: dict[str, Any] = {
        kind: {
            "vocabulary_size": len(counts[kind]),
            "images": sum(counts[kind].values()),
            "counts": dict(sorted(counts[kind].items())),
        }
        for kind in ATTRIBUTE_KINDS
    }
    names = [set(counts[kind]) for kind in ATTRIBUTE_KINDS]
    vocabulary["vocabulary_size"] = len(set.union(*names))
    vocabulary["shared"] = sorted(set.intersection(*names))
    return vocabulary


def build_summary(
    *,
    emoset_root: str,
    rows: Sequence[IndexRow],
    listed: Mapping[tuple[str, str], int],
    dropped: Mapping[str, Mapping[tuple[str, str], int]],
    problems: Sequence[Problem],
    index_sha256: str,
    images_hashed: bool,
) -> dict[str, Any]:
    """The ``summary.json`` document of an index (plain JSON types only)."""
    kept = Counter((row.emotion, row.split) for row in rows)
    return {
        "format": INDEX_FORMAT,
        "format_version": task.DATA.index_format_version,
        "protocol": task.PROTOCOL,
        "benchmark_version": __version__,
        "emoset_root": emoset_root,
        "paths_relative_to": "emoset_root",
        "index": {"file": INDEX_FILE, "sha256": index_sha256, "rows": len(rows), "images_hashed": images_hashed},
        "emotions": list(task.EMOTION_NAMES),
        "splits": list(task.DATA.splits),
        "counts": emotion_split_table(kept),
        "listed": emotion_split_table(listed),
        "dropped": {reason: emotion_split_table(dropped.get(reason, {})) for reason in DROP_REASONS},
        "attributes": attribute_vocabulary(rows),
        "problem_counts": dict(sorted(Counter(problem.code for problem in problems).items())),
        "problems": [problem.to_dict() for problem in problems],
    }


def _table_lines(
    first: str, table: Mapping[str, Mapping[str, int]], columns: Sequence[str], markdown: bool
) -> list[str]:
    """An emotion x column table, aligned text or a Markdown table."""
    header = [first, *columns]
    body = [[name, *(str(table[name][column]) for column in columns)] for name in table]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(columns)]
        return lines + ["| " + " | ".join(cells) + " |" for cells in body]
    widths = [max(len(cells[i]) for cells in (header, *body)) for i in range(len(header))]
    return [
        "  ".join([cells[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))])
        for cells in (header, *body)
    ]


def render_summary(
    summary: Mapping[str, Any], *, markdown: bool = False, max_problems: int = MAX_PRINTED_PROBLEMS
) -> str:
    """A human-readable report of ``summary``: tables, vocabulary, the first problems."""
    columns = [*summary["splits"], "total"]
    index = summary["index"]

    def heading(text: str) -> str:
        return f"## {text}" if markdown else f"{text}:"

    title = (
        f"EICG subset of EmoSet at {summary['emoset_root']}: {index['rows']} images kept "
        f"(protocol {summary['protocol']}, index format {summary['format_version']}, "
        f"emogen-bench {summary['benchmark_version']})"
    )
    lines = [f"# {title}" if markdown else title, "", heading("Kept images, one attribute each"), ""]
    lines += _table_lines("emotion", summary["counts"], columns, markdown)
    for reason in DROP_REASONS:
        table = summary["dropped"][reason]
        total = table["total"]["total"]
        lines += ["", heading(f"{_DROP_TITLES[reason]} ({total})")]
        if total:
            lines += [""] + _table_lines("emotion", table, columns, markdown)
    attributes = summary["attributes"]
    lines += [
        "",
        heading("Attributes"),
        "",
        f"{attributes['scene']['vocabulary_size']} scene names on {attributes['scene']['images']} images, "
        f"{attributes['object']['vocabulary_size']} object names on {attributes['object']['images']} images "
        f"({attributes['vocabulary_size']} unique names, {len(attributes['shared'])} used as both).",
    ]
    problems = summary["problems"]
    lines += ["", heading(f"Problems ({len(problems)}; paths relative to the EmoSet root)")]
    if problems:
        by_code = ", ".join(f"{code} {count}" for code, count in summary["problem_counts"].items())
        lines += ["", f"by kind: {by_code}", ""]
        bullet = "- " if markdown else "  "
        lines += [f"{bullet}{p['code']}  {p['path']}: {p['message']}" for p in problems[:max_problems]]
        if len(problems) > max_problems:
            lines.append(f"{bullet}... and {len(problems) - max_problems} more (all listed in summary.json)")
    hashes = "image sha256 recorded" if index["images_hashed"] else "image hashes not computed (--no-hash)"
    lines += ["", f"Index: {index['file']}, {index['rows']} rows, sha256 {index['sha256']}; {hashes}."]
    return "\n".join(lines) + "\n"


def check_summary(summary: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """``summary`` if it renders (the fields this module reads have their types); DataError naming ``source``."""
    try:
        render_summary(summary)
        len(summary["problems"])
    except (TypeError, KeyError, ValueError, AttributeError, IndexError) as error:
        raise DataError(
            f"{source}: a field is missing or has the wrong type ({type(error).__name__}: {error}); re-create the "
            "index with `emogen-bench data prepare EMOSET_ROOT --out DIR --overwrite`"
        ) from None
    return summary

