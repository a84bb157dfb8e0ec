"""Render a results document for people (text table, Markdown) and spreadsheets (CSV).

Everything here works on the JSON document (``EvaluationResult.to_dict()`` or a
file read back), so the leaderboard and scripts render exactly what was saved.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from emogen_bench.protocols import PAPER_CODE, PROTOCOLS
from emogen_bench.results import (
    LOWER_IS_BETTER,
    METRIC_LABELS,
    PERCENT_METRICS,
    emotions_in,
    metric_keys_in,
)

#: Written after an interval one of whose bounds was clipped to the metric's range (``clipped`` in the JSON).
CLIPPED_MARK = "~"
SMOKE_BANNER = "SMOKE RUN: tiny random models built in code; these numbers mean nothing about any method"
#: Printed under the header of a paper-code result: it sits beside the published numbers, never beside eicg-v3.
PAPER_CODE_BANNER = (
    f"{PAPER_CODE}: released-code compatibility (quirks included, docs/paper_code.md); "
    "comparable with the published EmoGen numbers, not comparable with eicg-v3"
)


def protocol_line(protocol: str) -> str | None:
    """The line that labels a protocol whose numbers must not be read as the benchmark's own, else ``None``."""
    known = PROTOCOLS.get(protocol)
    if known is not None and known.name == PAPER_CODE:
        return PAPER_CODE_BANNER
    return None


def format_value(key: str, value: float | None) -> str:
    """A metric value at the precision a paper would print (accuracies in percent)."""
    if value is None:
        return "-"
    if key in PERCENT_METRICS:
        return f"{100 * value:.2f}%"
    if key == "kid":
        return f"{value:.5f}"
    if key == "fid":
        return f"{value:.2f}"
    return f"{value:.4f}"


def format_interval(key: str, ci95: list[float] | None) -> str:
    """``[lo, hi]`` at the value's precision, or ``-`` where no interval is defined."""
    if not ci95:
        return "-"
    return f"[{format_value(key, ci95[0])}, {format_value(key, ci95[1])}]"


def _interval_cell(key: str, entry: dict[str, Any]) -> str:
    """The interval of a metric's entry, marked when a bound was clipped to the metric's range."""
    return format_interval(key, entry.get("ci95")) + (CLIPPED_MARK if entry.get("clipped") else "")


def _clipped_notes(document: dict[str, Any]) -> list[str]:
    """One line per headline interval that was clipped: which bound, to what."""
    overall = document["metrics"]["overall"]
    notes = []
    for key in metric_keys_in(document):
        clipped, ci95 = overall[key].get("clipped"), overall[key].get("ci95")
        if clipped and ci95:
            bound = {"low": ci95[0], "high": ci95[1]}
            ends = ", ".join(f"{name} end set to {format_value(key, bound[name])}" for name in clipped)
            notes.append(f"{CLIPPED_MARK} {METRIC_LABELS[key]}: interval clipped to the metric's range ({ends}; "
                         '"clipped" in the JSON).')  # fmt: skip
    return notes


def _direction(key: str) -> str:
    return "lower" if key in LOWER_IS_BETTER else "higher"


def _headline_rows(document: dict[str, Any]) -> list[list[str]]:
    overall = document["metrics"]["overall"]
    rows = []
    for key in metric_keys_in(document):
        entry = overall[key]
        rows.append(
            [
                METRIC_LABELS[key],
                format_value(key, entry.get("value")),
                _interval_cell(key, entry),
                str(entry.get("n", "")),
                _direction(key),
            ]
        )
    return rows


def _per_emotion_rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    keys = metric_keys_in(document)
    per_emotion = document["metrics"]["per_emotion"]
    header = ["emotion"] + [METRIC_LABELS[k] + ("*" if k == "fid" else "") for k in keys]
    rows = []
    for emotion in emotions_in(document):
        values = per_emotion[emotion]
        rows.append([emotion] + [format_value(k, values.get(k, {}).get("value")) for k in keys])
    return header, rows


def _grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _context_lines(document: dict[str, Any]) -> list[str]:
    submission = document["submission"]
    reference = document.get("reference")
    lines = [
        f"emogen-bench {document['benchmark_version']}  protocol {document['protocol']}  {document['run']['label']}",
        f"submission {submission['path']}  digest {submission['digest']}  ({submission['n_images']} images)",
        "reference  "
        + (
            f"{reference['path']} (sha256 {reference['sha256'][:16]}..., split {reference.get('split')})"
            if reference
            else "none: FID and KID not computed"
        ),
        "weights    "
        + ("all official" if document["official_weights"] else "NOT all official (see artifacts in the JSON)")
        + f"  seed {document['seed']}  device {document['environment']['device']}",
    ]
    unpinned = sorted(key for key, record in document.get("artifacts", {}).items() if record.get("pinned") is False)
    if unpinned and not document.get("smoke"):
        lines.append(f"unpinned weights (no full sha256 in the registry; trusted on first use): {', '.join(unpinned)}")
    label = protocol_line(document["protocol"])
    if label is not None:
        lines.insert(1, label)
    if document.get("smoke"):
        lines.insert(0, SMOKE_BANNER)
    return lines


def render_table(document: dict[str, Any]) -> str:
    """The human-readable report: headline metrics with 95% CIs, then the per-emotion breakdown."""
    parts = ["\n".join(_context_lines(document)), ""]
    parts.append(_grid(["metric", "value", "95% CI", "n", "better"], _headline_rows(document)))
    header, rows = _per_emotion_rows(document)
    if rows:
        parts += ["", "per emotion:", _grid(header, rows)]
    notes = _clipped_notes(document)
    if "fid" in metric_keys_in(document) and document["protocol"] == PAPER_CODE:
        notes.append("* FID per emotion is biased at this number of images (the released code reports it anyway).")
    elif "fid" in metric_keys_in(document):
        notes.append("* FID per emotion is biased at this number of images; compare methods per emotion with KID.")
    if document["protocol"] == PAPER_CODE and {"lpips", "sem_d"} & set(metric_keys_in(document)):
        pairs = document.get("config", {}).get("pairs")
        notes.append(
            f"LPIPS and Sem-D: {pairs} seeded random pairs per emotion from a pool never reset (emotion k draws from "
            "emotions 1..k), *jpg files only, as the released code; n = distinct images in the pairs."
        )
    for key, reason in document.get("not_computed", {}).items():
        notes.append(f"{METRIC_LABELS.get(key, key)} not computed: {reason}")
    if notes:
        parts += [""] + notes
    if document.get("smoke"):
        parts += ["", SMOKE_BANNER]
    return "\n".join(parts)


def render_markdown(document: dict[str, Any]) -> str:
    """The same report as Markdown tables, ready to paste into a README."""

    def table(header: list[str], rows: list[list[str]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)

    parts = [f"- {line}" for line in _context_lines(document)] + [""]
    parts.append(table(["metric", "value", "95% CI", "n", "better"], _headline_rows(document)))
    header, rows = _per_emotion_rows(document)
    if rows:
        parts += ["", table(header, rows)]
    parts += [line for note in _clipped_notes(document) for line in ("", note)]
    for key, reason in document.get("not_computed", {}).items():
        parts += ["", f"{METRIC_LABELS.get(key, key)} not computed: {reason}"]
    return "\n".join(parts) + "\n"


def render_csv(document: dict[str, Any]) -> str:
    """One row per (scope, metric): scope is ``overall`` or an emotion; full-precision values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["protocol", "run", "submission_digest", "scope", "metric", "value", "ci95_low", "ci95_high", "n"])
    prefix = [document["protocol"], document["run"]["label"], document["submission"]["digest"]]
    scopes = [("overall", document["metrics"]["overall"])]
    scopes += [(e, document["metrics"]["per_emotion"][e]) for e in emotions_in(document)]
    for scope, values in scopes:
        for key in metric_keys_in(document):
            entry = values.get(key)
            if entry is None:
                continue
            ci = entry.get("ci95") or [None, None]
            writer.writerow(prefix + [scope, key, repr(entry["value"]), ci[0], ci[1], entry.get("n")])
    return buffer.getvalue()


def render(document: dict[str, Any], output_format: str) -> str:
    """Dispatch on ``table`` / ``markdown`` / ``csv`` / ``json``."""
    if output_format == "json":
        return json.dumps(document, indent=2)
    return {"table": render_table, "markdown": render_markdown, "csv": render_csv}[output_format](document)
