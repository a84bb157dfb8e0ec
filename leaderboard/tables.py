"""Rankings and their Markdown and CSV renderings; pure functions of the entries.

Entries under different protocols are never ranked together: every function
here groups by protocol first, and each protocol gets its own table.  Within a
protocol the default order is Emo-A, best first (the metric every protocol
defines and the one the task is about), ties broken by method name; entries
without Emo-A come last.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from emogen_bench.protocols import PROTOCOLS
from emogen_bench.report import format_interval, format_value
from emogen_bench.results import LOWER_IS_BETTER, METRIC_LABELS
from leaderboard.entries import USER_STUDY_ASPECTS, Entry
from leaderboard.escape import csv_row, markdown_autolink, markdown_link, markdown_text

#: The metric that orders each table by default.
RANK_METRIC = "emo_a"
NONE = "—"

CSV_HEADER: tuple[str, ...] = (
    "protocol",
    "rank",
    "id",
    "method",
    "status",
    "metric",
    "value",
    "ci95_low",
    "ci95_high",
    "n",
    "official_weights",
    "benchmark_version",
    "submission_digest",
    "added",
    "verified_by",
    "citation",
)


@dataclass(frozen=True)
class Ranked:
    """One row of a protocol's table: its rank (``None`` without the ranking metric) and entry."""

    rank: int | None
    entry: Entry


def by_protocol(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Entries grouped by protocol, protocols in the order of ``emogen_bench.protocols.PROTOCOLS``."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.protocol, []).append(entry)
    order = list(PROTOCOLS)
    known = sorted(groups, key=lambda name: (order.index(name) if name in order else len(order), name))
    return {name: groups[name] for name in known}


def rank(entries: Iterable[Entry], metric: str = RANK_METRIC) -> list[Ranked]:
    """One protocol's entries, best ``metric`` first; equal values share a rank (1, 2, 2, 4).

    Raises ``ValueError`` when the entries span several protocols: rankings
    never cross protocols.
    """
    entries = list(entries)
    protocols = {entry.protocol for entry in entries}
    if len(protocols) > 1:
        raise ValueError(f"entries of several protocols ({', '.join(sorted(protocols))}) cannot share one ranking")
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0

    def order(entry: Entry) -> tuple[int, float, str, str]:
        value = entry.value(metric)
        return (value is None, 0.0 if value is None else sign * value, entry.method.lower(), entry.id)

    ranked: list[Ranked] = []
    for position, entry in enumerate(sorted(entries, key=order), start=1):
        value = entry.value(metric)
        if value is None:
            ranked.append(Ranked(None, entry))
        elif ranked and ranked[-1].rank is not None and ranked[-1].entry.value(metric) == value:
            ranked.append(Ranked(ranked[-1].rank, entry))
        else:
            ranked.append(Ranked(position, entry))
    return ranked


def rankings(entries: Iterable[Entry], metric: str = RANK_METRIC) -> dict[str, list[Ranked]]:
    """``{protocol: its ranking}``: one independent ranking per protocol."""
    return {protocol: rank(group, metric) for protocol, group in by_protocol(entries).items()}


# --- Markdown -----------------------------------------------------------------------------------------------------


def arrow(key: str) -> str:
    """``↓`` for a metric where lower is better, ``↑`` otherwise."""
    return "↓" if key in LOWER_IS_BETTER else "↑"


def metric_cell(entry: Entry, key: str) -> str:
    """The value as report.py prints it, followed by its 95% interval where the entry has one."""
    metric = entry.overall.get(key)
    if metric is None:
        return NONE
    text = format_value(key, metric["value"])
    if metric.get("ci95"):
        text += " " + format_interval(key, metric["ci95"])
    return text


def provenance_cells(entry: Entry) -> list[str]:
    """status, weights (official or —), benchmark version (— for published numbers), date added; escaped."""
    provenance = entry.provenance
    weights = "official" if provenance and provenance.get("official_weights") is True else NONE
    version = provenance.get("benchmark_version") if provenance else None
    return [markdown_text(cell) for cell in (entry.status, weights, version or NONE, entry.document["added"])]


def _method_cell(entry: Entry, marker: str) -> str:
    """The method's name, linked to its paper when that is an http(s) URL, and its citation marker."""
    cell = markdown_link(entry.method, entry.document.get("paper"))
    return cell + (f" {marker}" if marker else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _citation_key(entry: Entry) -> tuple[str, ...] | None:
    citation = entry.document.get("citation")
    if not citation:
        return None
    return (citation["reference"], *citation["where"], citation.get("url") or "")


def _footnote(entry: Entry) -> str:
    citation = entry.document["citation"]
    text = markdown_text(f"{citation['reference']}: {'; '.join(citation['where'])}")
    if citation.get("url"):
        text += f". {markdown_autolink(citation['url'])}"
    return text


def protocol_markdown(protocol: str, ranked: Sequence[Ranked]) -> str:
    """One protocol's section: ``###`` heading with its title, the ranking, citations, the user study."""
    spec = PROTOCOLS[protocol]
    keys = spec.metrics
    citations: dict[tuple[str, ...], int] = {}
    rows = []
    for row in ranked:
        key = _citation_key(row.entry)
        marker = ""
        if key is not None:
            citations.setdefault(key, len(citations) + 1)
            marker = f"[{citations[key]}]"
        rows.append(
            [NONE if row.rank is None else str(row.rank), _method_cell(row.entry, marker)]
            + [metric_cell(row.entry, k) for k in keys]
            + provenance_cells(row.entry)
        )
    header = ["#", "method", *(f"{METRIC_LABELS[k]} {arrow(k)}" for k in keys)]
    header += ["status", "weights", "benchmark", "added"]
    lines = [
        f"### {spec.title} (`{protocol}`)",
        "",
        f"Ranked by {METRIC_LABELS[RANK_METRIC]} {arrow(RANK_METRIC)}. "
        "↓ lower is better, ↑ higher is better; brackets are 95% confidence intervals. "
        "Numbers under this protocol are never compared with another protocol's.",
        "",
        *_table(header, rows),
    ]
    if citations:
        first: dict[tuple[str, ...], Entry] = {}
        for row in ranked:
            first.setdefault(_citation_key(row.entry) or (), row.entry)
        lines += ["", "Sources of the published rows:", ""]
        lines += [f"{number}. {_footnote(first[key])}" for key, number in citations.items()]
    noted = [row.entry for row in ranked if row.entry.document.get("notes")]
    if noted:
        lines += ["", "Notes:", ""]
        lines += [f"- {markdown_text(entry.method)}: {markdown_text(entry.document['notes'])}" for entry in noted]
    studies = [row.entry for row in ranked if row.entry.document.get("user_study")]
    if studies:
        lines += [
            "",
            "User study: share of participants (%, mean ± sd) who preferred the method in 'versus' over the row's "
            "method.",
            "",
        ]
        study_rows = []
        for entry in studies:
            study = entry.document["user_study"]
            cells = [f"{study[a]['mean']:.2f} ± {study[a]['sd']:.2f}" for a in USER_STUDY_ASPECTS]
            study_rows.append([markdown_text(entry.method), markdown_text(study["versus"]), *cells])
        lines += _table(["method", "versus", *USER_STUDY_ASPECTS], study_rows)
    return "\n".join(lines) + "\n"


def render_markdown(entries: Iterable[Entry], *, metric: str = RANK_METRIC) -> str:
    """Every protocol's section, ready to paste into a README; a note when there are no entries."""
    sections = [protocol_markdown(protocol, ranked) for protocol, ranked in rankings(entries, metric).items()]
    if not sections:
        return "No leaderboard entries.\n"
    return "\n".join(sections)


# --- CSV ----------------------------------------------------------------------------------------------------------


def _citation_text(entry: Entry) -> str:
    citation = entry.document.get("citation")
    if not citation:
        return ""
    return f"{citation['reference']}; {', '.join(citation['where'])}"


def render_csv(entries: Iterable[Entry], *, metric: str = RANK_METRIC) -> str:
    """One row per entry and overall metric, at full precision, with the entry's provenance.

    Empty cells where a value does not exist (no interval, no provenance for a
    published row).  Rows follow the Markdown: protocol, then rank, then the
    protocol's metric order.  Numbers are written as numbers; every text cell goes
    through :func:`leaderboard.escape.csv_cell`, so none is read as a formula.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for protocol, ranked in rankings(entries, metric).items():
        for row in ranked:
            entry = row.entry
            provenance = entry.provenance or {}
            for key in PROTOCOLS[protocol].metrics:
                value = entry.overall.get(key)
                if value is None:
                    continue
                low, high = value.get("ci95") or ("", "")
                cells = [
                    protocol,
                    "" if row.rank is None else row.rank,
                    entry.id,
                    entry.method,
                    entry.status,
                    key,
                    float(value["value"]),
                    "" if low == "" else float(low),
                    "" if high == "" else float(high),
                    "" if value.get("n") is None else value["n"],
                    "" if not provenance else str(provenance.get("official_weights") is True).lower(),
                    provenance.get("benchmark_version") or "",
                    provenance.get("submission_digest") or "",
                    entry.document["added"],
                    entry.document.get("verified_by") or "",
                    _citation_text(entry),
                ]
                writer.writerow(csv_row(cells))
    return buffer.getvalue()
