"""The leaderboard's static site: one self-contained ``index.html`` (inline CSS, JS and SVG; nothing fetched).

:func:`render_page` is pure (entry documents in, HTML text out, the same bytes
for the same input, build date and commit); :func:`render_site` writes it,
filling in today's date and the git commit when the caller does not pass them.
Each known protocol gets its own section and table (an empty one says why),
because numbers computed under different protocols are never ranked together;
the rank column is :func:`leaderboard.tables.rank`'s, as in the Markdown.  The
tables are complete HTML, readable with scripts off; the inline script only
sorts columns and opens the per-entry drill-down.  A Content-Security-Policy
with the hashes of the inline style and script lets the browser refuse
anything else, so the page works offline from a file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from emogen_bench import __version__
from emogen_bench.errors import UsageError
from emogen_bench.fileio import check_generated_page, write_atomic
from emogen_bench.protocols import PROTOCOLS
from emogen_bench.results import LOWER_IS_BETTER, METRIC_LABELS, PERCENT_METRICS
from emogen_bench.task import EMOTION_NAMES
from leaderboard.entries import PROVENANCE_FIELDS, Entry
from leaderboard.plots import Bar, Point, Series, bar_chart, method_bars, scatter_plot
from leaderboard.tables import RANK_METRIC, rank

GENERATOR = "emogen-bench leaderboard build"
PAGE_TITLE = "emogen-bench leaderboard"
DOCS = "docs/leaderboard.md"
#: The project's home; the one place the page takes its links to the repository from (pyproject's URLs agree).
PROJECT_URL = "https://github.com/emogen-bench/emogen-bench"
PULL_REQUEST_URL = f"{PROJECT_URL}/compare"
#: What the footer says for a commit it cannot know (no git, not a checkout, or not passed).
UNKNOWN = "unknown"

#: Display order of the statuses, most trusted first, with what each one means.
STATUS_TEXT: dict[str, str] = {
    "verified": "the maintainers re-ran evaluate on the submitted images",
    "self-reported": "the authors' own results JSON of an official run",
    "published": "numbers copied from a paper, with a citation",
}
#: The headline metric: the rank column and the tables' first order follow it, and the scatter plot's y axis.
HEADLINE = RANK_METRIC
#: Diversity metrics drawn per method.
DIVERSITY = ("lpips", "sem_d")

# --- formatting (pure) --------------------------------------------------------------------------------------------


def better_arrow(key: str) -> str:
    """``↓`` for metrics where lower is better (FID, KID), ``↑`` otherwise."""
    return "↓" if key in LOWER_IS_BETTER else "↑"


def metric_label(key: str) -> str:
    """The display name of a metric key (the key itself when unknown)."""
    return METRIC_LABELS.get(key, key)


def format_number(key: str, value: float) -> str:
    """A metric value as shown: accuracies as percent (``0.7077`` -> ``70.77%``), 2 or 4 decimals otherwise."""
    if key in PERCENT_METRICS:
        return f"{value * 100:.2f}%"
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4f}"


def format_interval(key: str, ci95: Sequence[float] | None) -> str:
    """A 95% confidence interval as ``"67.23–74.31%"`` (``"0.6650–0.7350"``), or ``""`` without one."""
    if not ci95:
        return ""
    low, high = format_number(key, ci95[0]), format_number(key, ci95[1])
    return f"{low.removesuffix('%')}–{high}"


def plural(count: int, singular: str, many: str) -> str:
    """``"1 entry"``, ``"7 entries"``: a count with its noun in the right number."""
    return f"{count} {singular if count == 1 else many}"


def dom_ids(entry_ids: Iterable[str]) -> list[str]:
    """Safe, unique HTML ids for entry ids (letters, digits, ``-`` and ``_`` only; a suffix separates clashes)."""
    seen: set[str] = set()
    out = []
    for entry_id in entry_ids:
        base = "entry-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", entry_id).strip("-") or "x")
        candidate, n = base, 2
        while candidate in seen:
            candidate, n = f"{base}-{n}", n + 1
        seen.add(candidate)
        out.append(candidate)
    return out


def _safe_url(url: Any) -> str | None:
    """``url`` when it is an http(s) URL (never ``javascript:`` and the like), else ``None``."""
    return url if isinstance(url, str) and re.fullmatch(r"https?://\S+", url) else None


def _link(url: Any, text: str) -> str:
    safe = _safe_url(url)
    if safe is None:
        return escape(text)
    return f'<a href="{escape(safe)}" rel="noopener noreferrer">{escape(text)}</a>'


def overall_value(document: Mapping[str, Any], key: str) -> float | None:
    """The overall value of ``key`` in an entry document, or ``None`` where it is not reported."""
    metric = document["metrics"]["overall"].get(key)
    return None if metric is None else float(metric["value"])


def emotion_value(document: Mapping[str, Any], emotion: str, key: str) -> float | None:
    """The value of ``key`` for one emotion, or ``None``."""
    metric = document["metrics"].get("per_emotion", {}).get(emotion, {}).get(key)
    return None if metric is None else float(metric["value"])


def has_per_emotion(document: Mapping[str, Any], key: str | None = None) -> bool:
    """Whether the entry reports per-emotion numbers (of ``key``, when given)."""
    per_emotion = document["metrics"].get("per_emotion") or {}
    if key is None:
        return any(per_emotion.values())
    return any(key in block for block in per_emotion.values())


def result_date(document: Mapping[str, Any]) -> str | None:
    """The day an evaluated entry's results were made (``provenance.created``), ``None`` without one."""
    created = (document.get("provenance") or {}).get("created")
    if isinstance(created, str) and re.match(r"\d{4}-\d{2}-\d{2}", created):
        return created[:10]
    return None


def publication_year(document: Mapping[str, Any]) -> str | None:
    """The year of a published entry's paper, read from its citation (``"..., CVPR 2024 (arXiv:2401.04608)"``).

    The first four-digit year 1900-2099 standing on its own, so arXiv numbers such as ``2001.01234`` never count.
    """
    reference = (document.get("citation") or {}).get("reference")
    if not isinstance(reference, str):
        return None
    match = re.search(r"(?<![\w.:/-])(?:19|20)\d{2}(?![\w.])", reference)
    return match.group(0) if match else None


def unpinned_artifacts(document: Mapping[str, Any]) -> list[str]:
    """Ids of the weights an entry's run trusted on first use (``unpinned_artifacts``, at the top or in provenance)."""
    for holder in (document, document.get("provenance") or {}):
        value = holder.get("unpinned_artifacts") if isinstance(holder, Mapping) else None
        if isinstance(value, Mapping) and value:
            return sorted(str(key) for key in value)
        if isinstance(value, (list, tuple)) and value:
            return [str(item) for item in value]
    return []


def split_sentences(text: str) -> list[str]:
    """``text`` cut after each ``.``, ``!`` or ``?`` that a space and a capital letter follow."""
    return [part for part in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip()) if part]


def shared_notes(documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences in the notes of two or more entries, in order of first use: shown once under the table."""
    uses: dict[str, int] = {}
    for document in documents:
        for sentence in dict.fromkeys(split_sentences(document.get("notes") or "")):
            uses[sentence] = uses.get(sentence, 0) + 1
    return [sentence for sentence, count in uses.items() if count > 1]


def entry_ranks(documents: Sequence[Mapping[str, Any]]) -> dict[str, int | None]:
    """``{entry id: rank}`` of one protocol's entries: the Markdown table's ranking (equal values share a rank)."""
    return {ranked.entry.id: ranked.rank for ranked in rank([Entry(document) for document in documents])}


def order_entries(documents: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Entries in the tables' initial order: headline metric better-first, entries without it last, then by name."""
    sign = 1.0 if HEADLINE in LOWER_IS_BETTER else -1.0

    def key(document: Mapping[str, Any]) -> tuple[int, float, str, str]:
        value = overall_value(document, HEADLINE)
        return (value is None, 0.0 if value is None else sign * value, document["method"].lower(), document["id"])

    return sorted(documents, key=key)


def group_by_protocol(documents: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Entries per protocol: the known protocols in their order, then any other protocol by name."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for document in documents:
        groups.setdefault(document["protocol"], []).append(document)
    known = [name for name in PROTOCOLS if name in groups]
    return {name: order_entries(groups[name]) for name in [*known, *sorted(set(groups) - set(known))]}


def protocol_metrics(protocol: str, documents: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The protocol's metric keys in table order (for an unknown protocol, the keys its entries report)."""
    if protocol in PROTOCOLS:
        return PROTOCOLS[protocol].metrics
    keys = {key for document in documents for key in document["metrics"]["overall"]}
    return tuple(key for key in METRIC_LABELS if key in keys) + tuple(sorted(keys - set(METRIC_LABELS)))


# --- table --------------------------------------------------------------------------------------------------------


def _metric_cell(key: str, metric: Mapping[str, Any] | None) -> str:
    if metric is None:
        return '<td class="num" data-sort-value=""><span class="missing" title="not reported">—</span></td>'
    value = float(metric["value"])
    interval = format_interval(key, metric.get("ci95"))
    ci = f'<span class="ci" title="95% confidence interval">{escape(interval)}</span>' if interval else ""
    return f'<td class="num" data-sort-value="{value!r}">{escape(format_number(key, value))}{ci}</td>'


def _status_rank(status: str) -> int:
    """Sort key of a status: most trusted first (a text sort of ``"0-verified"``, ``"1-self-reported"``, ...)."""
    order = list(STATUS_TEXT)
    return order.index(status) if status in order else len(order)


def weights_cell(document: Mapping[str, Any]) -> tuple[str, str, str]:
    """(css word, what the Weights cell says, the line under it) in plain words."""
    unpinned = unpinned_artifacts(document)
    if unpinned:
        return "unpinned", "unpinned weights", "no pinned sha256 for " + ", ".join(unpinned)
    provenance = document.get("provenance")
    if provenance is None:
        return "unchecked", "not checked", "numbers copied from the paper"
    if provenance.get("official_weights") is True:
        return "official", "official", "pinned, checked by sha256"
    return "not-official", "not official", "other weights than the pinned ones"


def scored_with(document: Mapping[str, Any]) -> str:
    """What computed the numbers: ``"emogen-bench 0.1.0"``, or the paper's own code for a published entry."""
    version = (document.get("provenance") or {}).get("benchmark_version")
    return f"emogen-bench {version}" if version else "the paper's own code"


def _cell(main: str, sub: str = "", *, sort: str | None = None, css: str = "", title: str = "") -> str:
    """A ``<td>`` with a main line and a small line under it, all escaped."""
    attributes = "" if sort is None else f' data-sort-value="{escape(sort)}"'
    attributes += f' class="{css}"' if css else ""
    attributes += f' title="{escape(title)}"' if title else ""
    under = f'<span class="sub">{escape(sub)}</span>' if sub else ""
    return f"<td{attributes}>{escape(main)}{under}</td>"


def _date_cell(document: Mapping[str, Any]) -> str:
    """The publication year or the day the results were made, then the day the entry was added, each labelled."""
    added = document["added"]
    year, made = publication_year(document), result_date(document)
    main = f"published {year}" if year else f"results {made}" if made else f"added {added}"
    sub = f"added to the leaderboard {added}" if (year or made) else "to the leaderboard"
    return _cell(main, sub, sort=f"{year or made or added}|{added}", css="date")


def _header_cell(
    label: str, sort: str, *, key: str = "", better: str = "", sorted_as: str = "none", css: str = "", title: str = ""
) -> str:
    attributes = f' data-sort="{sort}" aria-sort="{sorted_as}"'
    if key:
        attributes += f' data-key="{escape(key)}"'
    if better:
        attributes += f' data-better="{better}"'
    if css:
        attributes += f' class="{css}"'
    if title:
        attributes += f' title="{escape(title)}"'
    return f'<th scope="col"{attributes}><button type="button" class="sort">{label}</button></th>'


RANK_TITLE = f"Rank by {METRIC_LABELS[RANK_METRIC]}, best first; equal values share a rank"


def _table_head(metrics: Sequence[str]) -> str:
    cells = [
        _header_cell('#<span class="visually-hidden"> rank</span>', "number", better="lower", css="rank",
                     title=RANK_TITLE),
        _header_cell("Method", "text", css="method"),
        _header_cell("Status", "text"),
    ]  # fmt: skip
    for key in metrics:
        better = "lower" if key in LOWER_IS_BETTER else "higher"
        direction = "lower is better" if better == "lower" else "higher is better"
        label = (
            f'{escape(metric_label(key))} <span class="arrow" title="{direction}" aria-label="{direction}">'
            f"{better_arrow(key)}</span>"
        )
        sorted_as = ("ascending" if better == "lower" else "descending") if key == HEADLINE else "none"
        cells.append(_header_cell(label, "number", key=key, better=better, sorted_as=sorted_as))
    cells += [
        _header_cell("Weights", "text", title="the model weights the metrics were computed with"),
        _header_cell("Scored with", "text", title="the code that computed the numbers"),
        _header_cell("Date", "text", title="when the paper was published or the results were made"),
    ]
    cells.append('<th scope="col"><span class="visually-hidden">Details</span></th>')
    return "<thead><tr>" + "".join(cells) + "</tr></thead>"


def _entry_row(document: Mapping[str, Any], metrics: Sequence[str], row_id: str, place: int | None) -> str:
    method = document["method"]
    name = _link(document.get("paper"), method)
    code = _safe_url(document.get("code"))
    if code:
        name += f' <a class="code" href="{escape(code)}" rel="noopener noreferrer">code</a>'
    status = document["status"]
    if place is None:
        ranked = (
            f'<td class="rank num" data-sort-value=""><span class="missing" title="not ranked: no '
            f'{escape(metric_label(HEADLINE))}">—</span></td>'
        )
    else:
        ranked = f'<td class="rank num" data-sort-value="{place}">{place}</td>'
    cells = [
        ranked,
        f'<th scope="row" class="method" data-sort-value="{escape(method.casefold())}">{name}</th>',
        f'<td data-sort-value="{_status_rank(status)}-{escape(status)}"><span class="badge badge-{escape(status)}" '
        f'title="{escape(STATUS_TEXT.get(status, status))}">{escape(status)}</span></td>',
    ]
    overall = document["metrics"]["overall"]
    cells += [_metric_cell(key, overall.get(key)) for key in metrics]
    css, weights, why = weights_cell(document)
    cells.append(
        f'<td data-sort-value="{escape(weights)}"><span class="weights weights-{css}">{escape(weights)}</span>'
        f'<span class="sub">{escape(why)}</span></td>'
    )
    cells.append(_cell(scored_with(document), sort=scored_with(document)))
    cells.append(_date_cell(document))
    cells.append(
        f'<td><button type="button" class="toggle" aria-expanded="true" aria-controls="{row_id}-details" '
        f'aria-label="Details of {escape(method)}">Details</button></td>'
    )
    return f'<tr class="entry" id="{row_id}" data-entry="{escape(document["id"])}">' + "".join(cells) + "</tr>"


# --- drill-down ---------------------------------------------------------------------------------------------------


def _per_emotion_table(document: Mapping[str, Any], metrics: Sequence[str]) -> str:
    per_emotion = document["metrics"].get("per_emotion") or {}
    keys = [key for key in metrics if any(key in block for block in per_emotion.values())]
    head = "".join(f'<th scope="col">{escape(metric_label(key))} {better_arrow(key)}</th>' for key in keys)
    rows = []
    for emotion in [e for e in EMOTION_NAMES if e in per_emotion] + sorted(set(per_emotion) - set(EMOTION_NAMES)):
        block = per_emotion[emotion]
        cells = "".join(_metric_cell(key, block.get(key)) for key in keys)
        rows.append(f'<tr><th scope="row">{escape(emotion)}</th>{cells}</tr>')
    return (
        f'<table class="per-emotion"><caption>Per emotion: {escape(document["method"])}</caption>'
        f'<thead><tr><th scope="col">Emotion</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


#: A digest as entries hold it: 32 to 128 hex digits, optionally after ``sha256:``.
HASH = re.compile(r"(?:sha256:)?[0-9a-f]{32,128}")
#: Plain names of the provenance fields in the drill-down.
PROVENANCE_LABELS: dict[str, str] = {
    "benchmark_version": "emogen-bench version",
    "results_schema_version": "results format version",
    "created": "results made",
    "submission_digest": "submission digest",
    "n_images": "images",
    "counts": "images per emotion",
    "run_kind": "run",
    "official_weights": "official weights",
    "artifacts": "model weights (sha256)",
    "reference_sha256": "reference statistics (sha256)",
    "unpinned_artifacts": "unpinned weights",
    "reference_stats_known": "reference statistics known to the registry",
}


def provenance_label(name: str) -> str:
    """The plain name of a provenance field (``created`` -> ``results made``)."""
    return PROVENANCE_LABELS.get(name, name.replace("_", " "))


def short_hash(value: str) -> str:
    """``"sha256:abababababab…"``: the prefix and the first 12 hex digits of a digest."""
    prefix = "sha256:" if value.startswith("sha256:") else ""
    return f"{prefix}{value[len(prefix) :][:12]}…"


def hash_html(value: str) -> str:
    """A digest shown short; the whole one in the title and one click away in a ``<details>`` (to copy it)."""
    full = escape(value)
    return (
        f'<details class="hash"><summary><code title="{full}">{escape(short_hash(value))}</code></summary>'
        f'<code class="full-hash">{full}</code></details>'
    )


def _counts_text(value: Mapping[str, Any]) -> str | None:
    """``"1,000 for each of the 8 emotions"`` when every emotion has the same count, else ``None``."""
    counts = set(value.values())
    if set(value) == set(EMOTION_NAMES) and len(counts) == 1 and isinstance(next(iter(counts)), int):
        return f"{next(iter(counts)):,} for each of the {len(EMOTION_NAMES)} emotions"
    return None


def _render_value(value: Any) -> str:
    """A provenance value as HTML: digests short, flat objects on one line, booleans as yes/no, ``None`` a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        if not value:
            return "—"
        counts = _counts_text(value)
        if counts is not None:
            return escape(counts)
        flat = all(not isinstance(v, (Mapping, list, tuple)) and not _is_hash(v) for v in value.values())
        if flat:
            return "; ".join(f"{escape(str(k))} {_render_value(v)}" for k, v in value.items())
        items = "".join(f"<li><code>{escape(str(k))}</code>: {_render_value(v)}</li>" for k, v in value.items())
        return f'<ul class="kv">{items}</ul>'
    if isinstance(value, (list, tuple)):
        return ", ".join(_render_value(item) for item in value) or "—"
    if _is_hash(value):
        return hash_html(value)
    return f"<code>{escape(str(value))}</code>" if isinstance(value, str) and len(value) >= 32 else escape(str(value))


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and HASH.fullmatch(value) is not None


def _definition_list(items: Sequence[tuple[str, str]], css_class: str) -> str:
    body = "".join(f"<dt>{escape(term)}</dt><dd>{html}</dd>" for term, html in items)
    return f'<dl class="{css_class}">{body}</dl>'


def _provenance_block(document: Mapping[str, Any]) -> str:
    items = [
        ("id", escape(document["id"])),
        ("protocol", escape(document["protocol"])),
        ("status", escape(document["status"])),
    ]
    if document.get("verified_by"):
        items.append(("verified by", escape(document["verified_by"])))
    year = publication_year(document)
    if year:
        items.append(("published", escape(year)))
    items.append(("added to the leaderboard", escape(document["added"])))
    provenance = document.get("provenance")
    if provenance is None:
        items.append(("provenance", "none: the numbers were copied from the paper cited above"))
    else:
        names = [n for n in PROVENANCE_FIELDS if n in provenance] + sorted(set(provenance) - set(PROVENANCE_FIELDS))
        items += [(provenance_label(name), _render_value(provenance[name])) for name in names]
    unpinned = unpinned_artifacts(document)
    if unpinned and "unpinned_artifacts" not in (provenance or {}):
        items.append((PROVENANCE_LABELS["unpinned_artifacts"], escape(", ".join(unpinned))))
    return "<h4>Provenance</h4>" + _definition_list(items, "provenance")


def _citation_block(citation: Mapping[str, Any] | None) -> str:
    if not citation:
        return ""
    items = [("reference", escape(str(citation.get("reference", ""))))]
    where = citation.get("where") or []
    items.append(("where", escape("; ".join(str(place) for place in where)) or "—"))
    url = _safe_url(citation.get("url"))
    items.append(("url", _link(url, url) if url else "—"))
    return "<h4>Citation</h4>" + _definition_list(items, "citation")


def _user_study_block(user_study: Mapping[str, Any] | None) -> str:
    if not user_study:
        return ""
    rows = []
    for aspect in ("fidelity", "emotion", "diversity"):
        block = user_study.get(aspect)
        if isinstance(block, Mapping):
            rows.append(
                f'<tr><th scope="row">{aspect}</th><td class="num">{float(block["mean"]):.1f}%</td>'
                f'<td class="num">{float(block["sd"]):.1f}</td></tr>'
            )
    return (
        f'<h4>User study</h4><table class="user-study"><caption>Preference against '
        f"{escape(str(user_study.get('versus', '')))} (percent of votes)</caption>"
        f'<thead><tr><th scope="col">Aspect</th><th scope="col">Mean</th><th scope="col">SD</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _notes_block(document: Mapping[str, Any], shared: Sequence[str], notes_id: str) -> str:
    """The entry's own notes; a sentence that several entries share becomes a link to its one copy under the table."""
    if not document.get("notes"):
        return ""
    sentences = split_sentences(document["notes"])
    own = " ".join(escape(sentence) for sentence in sentences if sentence not in shared)
    links = [
        f'<a href="#{notes_id}-{shared.index(sentence) + 1}">note {shared.index(sentence) + 1} under the table</a>'
        for sentence in dict.fromkeys(sentences)
        if sentence in shared
    ]
    see = f"See {' and '.join(links)}." if links else ""
    return f'<p class="notes"><strong>Notes:</strong> {" ".join(part for part in (own, see) if part)}</p>'


def _details_row(
    document: Mapping[str, Any], metrics: Sequence[str], row_id: str, span: int, shared: Sequence[str], notes_id: str
) -> str:
    if has_per_emotion(document):
        per_emotion = _per_emotion_table(document, metrics)
    else:
        per_emotion = (
            '<p class="overall-only">The source gives overall numbers only; there is no per-emotion breakdown '
            "for this entry.</p>"
        )
    notes = _notes_block(document, shared, notes_id)
    body = (
        per_emotion
        + notes
        + _citation_block(document.get("citation"))
        + _user_study_block(document.get("user_study"))
        + _provenance_block(document)
    )
    return (
        f'<tr class="details" id="{row_id}-details"><td colspan="{span}">'
        f'<div class="drill"><h3>{escape(document["method"])}</h3>{body}</div></td></tr>'
    )


def _slug(protocol: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", protocol)


def table_caption(protocol: str) -> str:
    """What the table shows and how to read it; a paragraph above the table's scroll box, so it is never cut off."""
    return (
        f'<p class="table-caption" id="caption-{_slug(protocol)}">Entries under protocol <code>{escape(protocol)}'
        f"</code>, ranked (#) by {escape(metric_label(HEADLINE))}, best first. Small numbers under a value: its 95% "
        "confidence interval. Column headers sort the rows (first click: better first); arrows mark the better "
        "direction. On a narrow screen the table scrolls sideways while the rank and method stay in place.</p>"
    )


def render_table(protocol: str, documents: Sequence[Mapping[str, Any]]) -> str:
    """The table of one protocol (entries in the given order), each entry followed by its drill-down row.

    Its caption is :func:`table_caption` (``aria-labelledby``); notes that several entries share are listed
    once by :func:`render_shared_notes`.
    """
    metrics = protocol_metrics(protocol, documents)
    span = len(metrics) + 7
    places = entry_ranks(documents) if documents else {}
    shared = shared_notes(documents)
    notes_id = f"notes-{_slug(protocol)}"
    rows = []
    for document, row_id in zip(documents, dom_ids(d["id"] for d in documents)):
        rows.append(_entry_row(document, metrics, row_id, places.get(document["id"])))
        rows.append(_details_row(document, metrics, row_id, span, shared, notes_id))
    return (
        f'<table class="board" id="table-{escape(protocol)}" data-protocol="{escape(protocol)}" '
        f'aria-labelledby="caption-{_slug(protocol)}">{_table_head(metrics)}<tbody>{"".join(rows)}</tbody></table>'
    )


def render_shared_notes(protocol: str, documents: Sequence[Mapping[str, Any]]) -> str:
    """Each note that several entries share, once, with the entries it applies to ("" when there is none)."""
    shared = shared_notes(documents)
    if not shared:
        return ""
    items = []
    for number, sentence in enumerate(shared, start=1):
        methods = [d["method"] for d in documents if sentence in split_sentences(d.get("notes") or "")]
        items.append(
            f'<li id="notes-{_slug(protocol)}-{number}">{escape(sentence)} <span class="applies">(applies to '
            f"{escape(', '.join(methods))})</span></li>"
        )
    return f'<div class="shared-notes"><h3>Notes on several entries</h3><ol>{"".join(items)}</ol></div>'


# --- plots --------------------------------------------------------------------------------------------------------


def _figure(svg: str, caption: str) -> str:
    return f'<figure class="plot">{svg}<figcaption>{escape(caption)}</figcaption></figure>'


def _no_plot(text: str) -> str:
    return f'<p class="no-plot">{escape(text)}</p>'


def _display(key: str, value: float | None) -> float | None:
    """A value on the scale it is drawn on (accuracies in percent)."""
    if value is None:
        return None
    return value * 100 if key in PERCENT_METRICS else value


def _interval(key: str, metric: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """A metric's 95% interval on the scale it is drawn on, ``None`` without one."""
    ci95 = None if metric is None else metric.get("ci95")
    if not ci95:
        return None
    low, high = (_display(key, float(bound)) for bound in ci95)
    return (low, high)


def overall_interval(document: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    """The drawn 95% interval of ``key`` over all images, or ``None``."""
    return _interval(key, document["metrics"]["overall"].get(key))


def emotion_interval(document: Mapping[str, Any], emotion: str, key: str) -> tuple[float, float] | None:
    """The drawn 95% interval of ``key`` for one emotion, or ``None``."""
    return _interval(key, document["metrics"].get("per_emotion", {}).get(emotion, {}).get(key))


WHISKERS = "Whiskers: 95% confidence intervals, where the entry has them (a paper's numbers have none)."


def _axis_label(key: str) -> str:
    return f"{metric_label(key)} (%)" if key in PERCENT_METRICS else metric_label(key)


def _diversity_plot(slug: str, key: str, documents: Sequence[Mapping[str, Any]], colours: Mapping[str, int]) -> str:
    """``key`` per method: grouped by emotion and overall where any entry has per-emotion values, else one bar each."""
    drawn = [d for d in documents if overall_value(d, key) is not None or has_per_emotion(d, key)]
    if not drawn:
        return _no_plot(f"No {metric_label(key)} plot: no entry of this protocol reports it.")
    label = metric_label(key)
    direction = "lower" if key in LOWER_IS_BETTER else "higher"
    title = f"Diversity: {label} per method ({better_arrow(key)} {direction} is better)"
    emotions = [e for e in EMOTION_NAMES if any(emotion_value(d, e, key) is not None for d in drawn)]
    if not emotions:
        bars = [
            Bar(d["method"], _display(key, overall_value(d, key)), colours[d["id"]], overall_interval(d, key))
            for d in drawn
        ]
        description = f"One bar per method: {label} over all images. " + "; ".join(
            f"{b.label}: {b.value:.4g}" for b in bars
        )
        svg = method_bars(f"plot-{slug}-{key}", title, description, bars, y_label=_axis_label(key))
        return _figure(svg, f"{label} per method, over all images (no entry reports it per emotion). {WHISKERS}")
    series = [
        Series(
            d["method"],
            (_display(key, overall_value(d, key)), *(_display(key, emotion_value(d, e, key)) for e in emotions)),
            colours[d["id"]],
            (overall_interval(d, key), *(emotion_interval(d, e, key) for e in emotions)),
        )
        for d in drawn
    ]
    description = (
        f"Bars of {label} overall and per emotion, one per method; a grey stub on the axis where an entry does not "
        "report a value (published papers give overall numbers only)."
    )
    svg = bar_chart(f"plot-{slug}-{key}", title, description, ("overall", *emotions), series, y_label=_axis_label(key))
    return _figure(svg, f"{label} per method, overall and per emotion where reported. {WHISKERS}")


def render_plots(protocol: str, documents: Sequence[Mapping[str, Any]]) -> str:
    """The protocol's plots: per-emotion Emo-A, diversity per method, FID against Emo-A (or why one is missing)."""
    metrics = protocol_metrics(protocol, documents)
    colours = {document["id"]: index for index, document in enumerate(documents)}
    slug = _slug(protocol)
    parts = []

    if HEADLINE in metrics:
        with_emotions = [d for d in documents if has_per_emotion(d, HEADLINE)]
        if with_emotions:
            series = [
                Series(d["method"], tuple(_display(HEADLINE, emotion_value(d, e, HEADLINE)) for e in EMOTION_NAMES),
                       colours[d["id"]], tuple(emotion_interval(d, e, HEADLINE) for e in EMOTION_NAMES))
                for d in with_emotions
            ]  # fmt: skip
            methods = ", ".join(d["method"] for d in with_emotions)
            svg = bar_chart(
                f"plot-{slug}-emo-a",
                f"{metric_label(HEADLINE)} per emotion ({better_arrow(HEADLINE)} higher is better)",
                f"One group of bars per emotion, one bar per method ({methods}); the entries' details list the values.",
                EMOTION_NAMES,
                series,
                y_label=_axis_label(HEADLINE),
            )
            parts.append(
                _figure(svg, f"{metric_label(HEADLINE)} per emotion, for the entries with per-emotion data. {WHISKERS}")
            )
        else:
            parts.append(
                _no_plot(
                    f"No per-emotion {metric_label(HEADLINE)} plot: no entry of this protocol reports per-emotion "
                    "numbers (published papers give overall numbers only)."
                )
            )

    parts += [_diversity_plot(slug, key, documents, colours) for key in DIVERSITY if key in metrics]

    if "fid" in metrics and HEADLINE in metrics:
        points = [
            Point(
                d["method"],
                overall_value(d, "fid"),
                _display(HEADLINE, overall_value(d, HEADLINE)),
                colours[d["id"]],
                overall_interval(d, "fid"),
                overall_interval(d, HEADLINE),
            )
            for d in documents
            if overall_value(d, "fid") is not None and overall_value(d, HEADLINE) is not None
        ]
        if points:
            horizontal = "left" if "fid" in LOWER_IS_BETTER else "right"
            vertical = "bottom" if HEADLINE in LOWER_IS_BETTER else "top"
            listing = "; ".join(f"{p.label}: FID {p.x:.2f}, {metric_label(HEADLINE)} {p.y:.2f}%" for p in points)
            svg = scatter_plot(
                f"plot-{slug}-fid-emo-a",
                f"FID against {metric_label(HEADLINE)}",
                f"One point per method. {listing}.",
                points,
                x_label="FID (lower is better)",
                y_label=_axis_label(HEADLINE),
                hint=f"Better: lower FID (left), higher {metric_label(HEADLINE)} (up).",
                better_corner=f"{vertical}-{horizontal}",
            )
            parts.append(_figure(svg, f"FID against {metric_label(HEADLINE)}, one point per method. {WHISKERS}"))
        else:
            parts.append(_no_plot(f"No FID against {metric_label(HEADLINE)} plot: no entry reports both."))
    return '<div class="plots">' + "".join(parts) + "</div>"


# --- page ---------------------------------------------------------------------------------------------------------


def _protocol_section(protocol: str, documents: Sequence[Mapping[str, Any]]) -> str:
    known = PROTOCOLS.get(protocol)
    title = known.title if known else protocol
    description = f"<p>{escape(known.description)}</p>" if known else ""
    others = [name for name in PROTOCOLS if name != protocol]
    note = (
        f'<p class="note"><strong>Not comparable with other protocols.</strong> Every number in this section was '
        f"computed under <code>{escape(protocol)}</code>; it is never ranked against "
        f"{escape(', '.join(others) or 'another protocol')}.</p>"
    )
    quirks = ""
    if known and known.quirks:
        items = "".join(
            f"<li><strong>{escape(metric_label(q.metric))}</strong>: {escape(q.what)} (<em>{escape(q.why)}</em>)</li>"
            for q in known.quirks
        )
        quirks = (
            f"<details><summary>Behaviours of the released code reproduced here</summary><ul>{items}</ul></details>"
        )
    head = (
        f'<section class="protocol" id="protocol-{escape(protocol)}" data-protocol="{escape(protocol)}">'
        f"<h2>{escape(title)} <code>{escape(protocol)}</code></h2>"
        f'<p class="count">{plural(len(documents), "entry", "entries")}</p>{description}{note}{quirks}'
    )
    if not documents:
        return head + empty_protocol_note(protocol) + "</section>"
    return (
        f"{head}{table_caption(protocol)}"
        f'<div class="table-wrap">{render_table(protocol, documents)}</div>{render_shared_notes(protocol, documents)}'
        f"<h3>Plots</h3>{render_plots(protocol, documents)}</section>"
    )


def empty_protocol_note(protocol: str) -> str:
    """Why a protocol's section has no table, and how to add the first entry."""
    return (
        f'<p class="empty">No results under this protocol yet: nobody has added a verified or self-reported '
        f"evaluation under <code>{escape(protocol)}</code>, and no paper reports numbers computed this way. "
        f"To add the first one, run <code>emogen-bench evaluate --protocol {escape(protocol)}</code> on a complete "
        "submission, then <code>emogen-bench leaderboard add</code>, and open a pull request (see "
        '<a href="#adding">Adding an entry</a>).</p>'
    )


def _status_legend() -> str:
    items = "".join(
        f'<dt><span class="badge badge-{status}">{status}</span></dt><dd>{escape(text)}</dd>'
        for status, text in STATUS_TEXT.items()
    )
    return f'<dl class="legend">{items}</dl>'


def _footer(generated: str | None, commit: str | None) -> str:
    built = f"Generated {escape(generated)}" if generated else "Generated (build date not recorded)"
    if commit and commit != UNKNOWN:
        made_from = f'commit <code title="{escape(commit)}">{escape(commit[:12])}</code>'
    else:
        made_from = f"commit {UNKNOWN}"
    return (
        '<footer><h2 id="adding">Adding an entry</h2><ol>'
        "<li>Run <code>emogen-bench evaluate</code> on a complete submission under the official protocol with the "
        "official weights.</li>"
        "<li><code>emogen-bench leaderboard add</code> turns that results JSON into an entry file "
        "<code>leaderboard/entries/&lt;protocol&gt;/&lt;slug&gt;.json</code> (status <em>self-reported</em>); "
        "numbers from a paper are entered by hand as <em>published</em>, with a citation.</li>"
        f'<li><a href="{PULL_REQUEST_URL}" rel="noopener noreferrer">Open a pull request</a> on '
        f'<a href="{PROJECT_URL}" rel="noopener noreferrer">{PROJECT_URL.removeprefix("https://")}</a> with the '
        "entry; a maintainer who re-runs evaluate on the submitted images marks it <em>verified</em>.</li>"
        "<li><code>emogen-bench leaderboard build</code> regenerates this page.</li></ol>"
        f"<p>The entry fields and the review are described in <code>{DOCS}</code>.</p>"
        f'<p class="build">{built} by emogen-bench {escape(__version__)} from {made_from}.</p></footer>'
    )


STYLE = """
:root { color-scheme: light; --fg: #1b1b1b; --muted: #5a5a5a; --line: #d0d0d0; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0; }
header, main, footer { max-width: 1480px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 16px; border-bottom: 1px solid var(--line); }
h1 { margin: 0 0 4px; font-size: 1.7em; }
h2 { margin-top: 1.6em; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h2 code { font-size: 0.7em; color: var(--muted); }
a { color: var(--accent); }
.meta, .count, caption, .ci, .no-plot, .sub, .table-caption, .applies { color: var(--muted); }
code { overflow-wrap: anywhere; }
.note { background: #fff6dc; border-left: 4px solid #d29b00; padding: 6px 10px; }
.legend { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; }
.legend dd { margin: 0; }
.table-wrap { overflow-x: auto; max-width: 100%; border: 1px solid var(--line); position: relative; }
table { border-collapse: collapse; }
caption { text-align: left; padding: 4px 0; font-size: 0.9em; }
.table-caption { font-size: 0.9em; margin: 8px 0 6px; }
table.board { width: 100%; border-collapse: separate; border-spacing: 0; }
table.board th, table.board td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; }
table.board > thead th { background: #f3f5f8; }
table.board td { white-space: nowrap; }
table.board tr.entry > * { background: #ffffff; }
table.board .rank { position: sticky; left: 0; z-index: 2; width: 2.6em; min-width: 2.6em; max-width: 2.6em;
  padding-left: 4px; padding-right: 4px; text-align: right; }
table.board .method { position: sticky; left: 2.6em; z-index: 2; min-width: 7.5em; max-width: 18em;
  box-shadow: inset -1px 0 0 var(--line); }
table.board > thead th.rank, table.board > thead th.method { z-index: 3; }
.sub { display: block; font-size: 0.78em; }
th[scope="row"] { text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { display: block; font-size: 0.78em; }
button.sort { font: inherit; font-weight: 600; background: none; border: 0; padding: 0; color: inherit; }
button.sort { cursor: pointer; }
button.sort:hover, button.sort:focus-visible { text-decoration: underline; }
th[aria-sort="ascending"] button.sort::after { content: " \\25B2"; font-size: 0.7em; }
th[aria-sort="descending"] button.sort::after { content: " \\25BC"; font-size: 0.7em; }
.arrow { color: #2a7a2a; white-space: nowrap; }
button.toggle { font: inherit; font-size: 0.85em; padding: 2px 8px; cursor: pointer; }
button.toggle[aria-expanded="true"] { background: #e4ecf7; }
.no-js button.toggle, .no-js button.sort { pointer-events: none; }
.no-js button.toggle { display: none; }
.badge { display: inline-block; border-radius: 10px; padding: 1px 8px; font-size: 0.8em; font-weight: 600; }
.badge-verified { background: #d8f0dc; color: #14532d; }
.badge-self-reported { background: #fdecc8; color: #713f12; }
.badge-published { background: #e2e8f0; color: #1e293b; }
.weights-not-official, .weights-unpinned { color: #a11; font-weight: 600; }
.empty { background: #f3f5f8; border-left: 4px solid var(--accent); padding: 8px 10px; }
.shared-notes { font-size: 0.9em; }
.shared-notes h3 { font-size: 1em; margin: 10px 0 4px; }
details.hash { display: inline-block; vertical-align: top; }
details.hash summary { cursor: pointer; }
details.hash code.full-hash { display: block; font-size: 0.85em; }
tr.details > td { background: #fafbfc; white-space: normal; }
.drill { position: sticky; left: 8px; max-width: calc(100vw - 72px); }
.drill h3 { margin: 4px 0 8px; }
.drill h4 { margin: 12px 0 4px; }
table.per-emotion th, table.per-emotion td, table.user-study th, table.user-study td {
  border-bottom: 1px solid var(--line); padding: 3px 8px; }
dl.provenance, dl.citation { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
dl.provenance dd, dl.citation dd { margin: 0; overflow-wrap: anywhere; }
ul.kv { margin: 0; padding-left: 18px; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
figure.plot { margin: 0; max-width: 100%; }
.no-plot { flex-basis: 100%; }
figure.plot svg { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: 0.85em; color: var(--muted); }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
footer { border-top: 1px solid var(--line); margin-top: 32px; padding-bottom: 32px; }
.build { color: var(--muted); font-size: 0.85em; }
@media (max-width: 640px) {
  body { font-size: 14px; }
  header, main, footer { padding: 0 10px; }
  table.board th, table.board td { padding: 5px 6px; }
  table.board .method { max-width: 11em; }
}
""".strip()

SCRIPT = """
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.remove("no-js");
  root.classList.add("js");

  function groups(tbody) {
    var out = [];
    Array.prototype.forEach.call(tbody.rows, function (row) {
      if (row.classList.contains("entry")) { out.push([row]); }
      else if (out.length) { out[out.length - 1].push(row); }
    });
    return out;
  }

  function sortValue(row, column, type) {
    var raw = row.cells[column].getAttribute("data-sort-value");
    if (raw === null || raw === "") { return null; }
    return type === "number" ? parseFloat(raw) : raw;
  }

  function sortBy(table, th) {
    var type = th.getAttribute("data-sort");
    var current = th.getAttribute("aria-sort");
    var descending;
    if (current === "descending") { descending = false; }
    else if (current === "ascending") { descending = true; }
    else { descending = type === "number" && th.getAttribute("data-better") !== "lower"; }
    table.querySelectorAll("thead th[data-sort]").forEach(function (other) {
      other.setAttribute("aria-sort", "none");
    });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var column = th.cellIndex;
    var tbody = table.tBodies[0];
    var rows = groups(tbody).map(function (group, index) {
      return { group: group, index: index, value: sortValue(group[0], column, type) };
    });
    rows.sort(function (a, b) {
      if (a.value === null || b.value === null) {
        return a.value === b.value ? a.index - b.index : (a.value === null ? 1 : -1);
      }
      var c = type === "number" ? a.value - b.value : a.value.localeCompare(b.value);
      if (c === 0) { return a.index - b.index; }
      return descending ? -c : c;
    });
    rows.forEach(function (item) {
      item.group.forEach(function (row) { tbody.appendChild(row); });
    });
  }

  document.querySelectorAll("table.board").forEach(function (table) {
    table.querySelectorAll("thead th[data-sort] button.sort").forEach(function (button) {
      button.addEventListener("click", function () { sortBy(table, button.parentNode); });
    });
  });

  document.querySelectorAll("button.toggle").forEach(function (button) {
    var details = document.getElementById(button.getAttribute("aria-controls"));
    if (!details) { return; }
    details.hidden = true;
    button.setAttribute("aria-expanded", "false");
    button.addEventListener("click", function () {
      var open = button.getAttribute("aria-expanded") === "true";
      button.setAttribute("aria-expanded", open ? "false" : "true");
      details.hidden = open;
    });
  });
})();
""".strip()


def _inline(text: str) -> str:
    """The exact text between an inline ``<style>``/``<script>`` tag pair (the hash covers every character)."""
    return f"\n{text}\n"


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy() -> str:
    """Allow only this page's own inline style and script (by hash) and a data: icon; nothing is ever fetched."""
    return (
        f"default-src 'none'; style-src {_csp_hash(_inline(STYLE))}; script-src {_csp_hash(_inline(SCRIPT))}; "
        "img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def render_page(
    documents: Sequence[Mapping[str, Any]], generated: str | None = None, *, commit: str | None = None
) -> str:
    """The whole page for validated entry documents.

    Every known protocol gets a section, an empty one saying why.  The footer
    names the build date ``generated`` and the git ``commit`` when given
    ("not recorded" and ``unknown`` otherwise) and this package's version, so
    the output depends on its arguments only.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {name: [] for name in PROTOCOLS} | group_by_protocol(documents)
    n_entries = sum(len(group) for group in groups.values())
    with_entries = sum(1 for group in groups.values() if group)
    meta = f"{plural(n_entries, 'entry', 'entries')} under {plural(with_entries, 'protocol', 'protocols')}."
    nav = "".join(
        f'<li><a href="#protocol-{escape(name)}">{escape(PROTOCOLS[name].title if name in PROTOCOLS else name)}</a> '
        f"({plural(len(group), 'entry', 'entries') if group else 'no entries yet'})</li>"
        for name, group in groups.items()
    )
    sections = "".join(_protocol_section(name, group) for name, group in groups.items())
    return (
        '<!DOCTYPE html>\n<html lang="en" class="no-js">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(content_security_policy())}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{GENERATOR}">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{PAGE_TITLE}</title>\n<style>{_inline(STYLE)}</style>\n</head>\n<body>\n"
        f'<header><h1>{PAGE_TITLE}</h1><p class="meta">{meta}</p>'
        "<p>Emotional image content generation: each protocol has its own table, because numbers computed "
        "differently are never ranked together. Every row says where its numbers come from:</p>"
        f"{_status_legend()}<nav><ul>{nav}</ul></nav></header>\n"
        f"<main>\n{sections}\n</main>\n{_footer(generated, commit)}\n<script>{_inline(SCRIPT)}</script>\n"
        "</body>\n</html>\n"
    )


def build_date() -> str:
    """Today's date (UTC), or that of ``SOURCE_DATE_EPOCH`` when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    return when.date().isoformat()


def git_commit(path: Path = Path(__file__)) -> str:
    """The commit checked out where the file ``path`` is tracked by git; :data:`UNKNOWN` in every other case.

    No git, not a checkout (an installed wheel), ``path`` not tracked there, a
    failure or a 10 s timeout: all give ``unknown``, never an error.  ``GIT_DIR``
    and the like are dropped from the environment so they cannot point elsewhere.
    """
    git = shutil.which("git")
    if git is None:
        return UNKNOWN
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"GIT_OPTIONAL_LOCKS": "0"}

    def run(*arguments: str) -> str | None:
        try:
            done = subprocess.run(
                [git, "-C", str(path.parent), *arguments], capture_output=True, text=True, timeout=10,
                stdin=subprocess.DEVNULL, env=environment, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if run("ls-files", "--error-unmatch", "--", path.name) is None:
        return UNKNOWN
    commit = run("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    return commit if commit is not None and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit) else UNKNOWN


def render_site(
    documents: Sequence[Mapping[str, Any]], out_dir: Path, generated: str | None = None, commit: str | None = None
) -> Path:
    """Write ``out_dir/index.html`` (one self-contained file) and return its path.

    ``generated`` defaults to :func:`build_date` and ``commit`` to
    :func:`git_commit` of this package; pass both for the same bytes every time.
    An existing ``index.html`` is replaced only when this generator wrote it;
    any other file there is a usage error, so a user's page is never lost.
    """
    out_dir = Path(out_dir)
    target = out_dir / "index.html"
    check_generated_page(target, GENERATOR)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot create the site folder {out_dir}: {error.strerror}; choose a writable folder"
        ) from None
    page = render_page(
        documents, build_date() if generated is None else generated, commit=git_commit() if commit is None else commit
    )
    write_atomic(target, page)
    return target
