"""The leaderboard's static site: one self-contained ``index.html`` (inline CSS, JS and SVG; nothing fetched).

:func:`render_page` is pure (entry documents in, HTML text out, the same bytes
for the same input); :func:`render_site` writes it.  Each protocol gets its own
section and table, because numbers computed under different protocols are
never ranked together.  The tables are complete HTML, readable with scripts
off; the inline script only sorts columns and opens the per-entry drill-down.
A Content-Security-Policy with the hashes of the inline style and script lets
the browser refuse anything else, so the page works offline from a file.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError
from emogen_bench.fileio import write_atomic
from emogen_bench.protocols import PROTOCOLS
from emogen_bench.results import LOWER_IS_BETTER, METRIC_LABELS, PERCENT_METRICS
from emogen_bench.safe_read import file_kind, read_bytes
from emogen_bench.task import EMOTION_NAMES
from leaderboard.entries import PROVENANCE_FIELDS
from leaderboard.plots import Bar, Point, Series, bar_chart, method_bars, scatter_plot

GENERATOR = "emogen-bench leaderboard build"
PAGE_TITLE = "emogen-bench leaderboard"
DOCS = "docs/leaderboard.md"

#: Display order of the statuses, most trusted first, with what each one means.
STATUS_TEXT: dict[str, str] = {
    "verified": "the maintainers re-ran evaluate on the submitted images",
    "self-reported": "the authors' own results JSON of an official run",
    "published": "numbers copied from a paper, with a citation",
}
#: The headline metric: the tables start sorted by it, and the scatter plot puts it on the y axis.
HEADLINE = "emo_a"
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


def _weights_text(document: Mapping[str, Any]) -> str:
    provenance = document.get("provenance")
    if provenance is None:
        return "paper"
    return "official" if provenance.get("official_weights") is True else "not official"


def _header_cell(label: str, sort: str, *, key: str = "", better: str = "", sorted_as: str = "none") -> str:
    attributes = f' data-sort="{sort}" aria-sort="{sorted_as}"'
    if key:
        attributes += f' data-key="{escape(key)}" data-better="{better}"'
    return f'<th scope="col"{attributes}><button type="button" class="sort">{label}</button></th>'


def _table_head(metrics: Sequence[str]) -> str:
    cells = [_header_cell("Method", "text"), _header_cell("Status", "text")]
    for key in metrics:
        better = "lower" if key in LOWER_IS_BETTER else "higher"
        direction = "lower is better" if better == "lower" else "higher is better"
        label = (
            f'{escape(metric_label(key))} <span class="arrow" title="{direction}" aria-label="{direction}">'
            f"{better_arrow(key)}</span>"
        )
        sorted_as = ("ascending" if better == "lower" else "descending") if key == HEADLINE else "none"
        cells.append(_header_cell(label, "number", key=key, better=better, sorted_as=sorted_as))
    cells += [_header_cell("Weights", "text"), _header_cell("Benchmark", "text"), _header_cell("Added", "text")]
    cells.append('<th scope="col"><span class="visually-hidden">Details</span></th>')
    return "<thead><tr>" + "".join(cells) + "</tr></thead>"


def _entry_row(document: Mapping[str, Any], metrics: Sequence[str], row_id: str) -> str:
    method = document["method"]
    name = _link(document.get("paper"), method)
    code = _safe_url(document.get("code"))
    if code:
        name += f' <a class="code" href="{escape(code)}" rel="noopener noreferrer">code</a>'
    status = document["status"]
    provenance = document.get("provenance") or {}
    version = provenance.get("benchmark_version")
    cells = [
        f'<th scope="row" data-sort-value="{escape(method.casefold())}">{name}</th>',
        f'<td data-sort-value="{_status_rank(status)}-{escape(status)}"><span class="badge badge-{escape(status)}" '
        f'title="{escape(STATUS_TEXT.get(status, status))}">{escape(status)}</span></td>',
    ]
    overall = document["metrics"]["overall"]
    cells += [_metric_cell(key, overall.get(key)) for key in metrics]
    weights = _weights_text(document)
    cells.append(
        f'<td data-sort-value="{weights}"><span class="weights weights-{weights.replace(" ", "-")}">'
        f"{weights}</span></td>"
    )
    cells.append(f'<td data-sort-value="{escape(str(version or ""))}">{escape(str(version or "—"))}</td>')
    cells.append(f'<td data-sort-value="{escape(document["added"])}">{escape(document["added"])}</td>')
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


def _render_value(value: Any) -> str:
    """A provenance value as HTML: objects as nested lists, booleans as yes/no, ``None`` as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        if not value:
            return "—"
        items = "".join(f"<li><code>{escape(str(k))}</code>: {_render_value(v)}</li>" for k, v in value.items())
        return f'<ul class="kv">{items}</ul>'
    if isinstance(value, (list, tuple)):
        return ", ".join(_render_value(item) for item in value) or "—"
    return f"<code>{escape(str(value))}</code>" if isinstance(value, str) and len(value) >= 32 else escape(str(value))


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
    items.append(("added", escape(document["added"])))
    provenance = document.get("provenance")
    if provenance is None:
        items.append(("provenance", "none: the numbers were copied from the paper cited above"))
    else:
        names = [n for n in PROVENANCE_FIELDS if n in provenance] + sorted(set(provenance) - set(PROVENANCE_FIELDS))
        items += [(name.replace("_", " "), _render_value(provenance[name])) for name in names]
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


def _details_row(document: Mapping[str, Any], metrics: Sequence[str], row_id: str, span: int) -> str:
    if has_per_emotion(document):
        per_emotion = _per_emotion_table(document, metrics)
    else:
        per_emotion = (
            '<p class="overall-only">The source gives overall numbers only; there is no per-emotion breakdown '
            "for this entry.</p>"
        )
    notes = f'<p class="notes"><strong>Notes:</strong> {escape(document["notes"])}</p>' if document.get("notes") else ""
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


def render_table(protocol: str, documents: Sequence[Mapping[str, Any]]) -> str:
    """The table of one protocol (entries in the given order), each entry followed by its drill-down row."""
    metrics = protocol_metrics(protocol, documents)
    span = len(metrics) + 6
    rows = []
    for document, row_id in zip(documents, dom_ids(d["id"] for d in documents)):
        rows.append(_entry_row(document, metrics, row_id))
        rows.append(_details_row(document, metrics, row_id, span))
    caption = (
        f"Entries under protocol {escape(protocol)}. Small numbers under a value: its 95% confidence interval. "
        "Column headers sort the rows (first click: better first); arrows mark the better direction."
    )
    return (
        f'<table class="board" id="table-{escape(protocol)}" data-protocol="{escape(protocol)}">'
        f"<caption>{caption}</caption>{_table_head(metrics)}<tbody>{''.join(rows)}</tbody></table>"
    )


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
        bars = [Bar(d["method"], _display(key, overall_value(d, key)), colours[d["id"]]) for d in drawn]
        description = f"One bar per method: {label} over all images. " + "; ".join(
            f"{b.label}: {b.value:.4g}" for b in bars
        )
        svg = method_bars(f"plot-{slug}-{key}", title, description, bars, y_label=_axis_label(key))
        return _figure(svg, f"{label} per method, over all images (no entry reports it per emotion).")
    series = [
        Series(
            d["method"],
            (_display(key, overall_value(d, key)), *(_display(key, emotion_value(d, e, key)) for e in emotions)),
            colours[d["id"]],
        )
        for d in drawn
    ]
    description = (
        f"Bars of {label} overall and per emotion, one per method; a grey stub on the axis where an entry does not "
        "report a value (published papers give overall numbers only)."
    )
    svg = bar_chart(f"plot-{slug}-{key}", title, description, ("overall", *emotions), series, y_label=_axis_label(key))
    return _figure(svg, f"{label} per method, overall and per emotion where reported.")


def render_plots(protocol: str, documents: Sequence[Mapping[str, Any]]) -> str:
    """The protocol's plots: per-emotion Emo-A, diversity per method, FID against Emo-A (or why one is missing)."""
    metrics = protocol_metrics(protocol, documents)
    colours = {document["id"]: index for index, document in enumerate(documents)}
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", protocol)
    parts = []

    if HEADLINE in metrics:
        with_emotions = [d for d in documents if has_per_emotion(d, HEADLINE)]
        if with_emotions:
            series = [
                Series(d["method"], tuple(_display(HEADLINE, emotion_value(d, e, HEADLINE)) for e in EMOTION_NAMES),
                       colours[d["id"]])
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
            parts.append(_figure(svg, f"{metric_label(HEADLINE)} per emotion, for the entries with per-emotion data."))
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
                d["method"], overall_value(d, "fid"), _display(HEADLINE, overall_value(d, HEADLINE)), colours[d["id"]]
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
            parts.append(_figure(svg, f"FID against {metric_label(HEADLINE)}, one point per method."))
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
    count = f"{len(documents)} entr{'y' if len(documents) == 1 else 'ies'}"
    return (
        f'<section class="protocol" id="protocol-{escape(protocol)}" data-protocol="{escape(protocol)}">'
        f"<h2>{escape(title)} <code>{escape(protocol)}</code></h2>"
        f'<p class="count">{count}</p>{description}{note}{quirks}'
        f'<div class="table-wrap">{render_table(protocol, documents)}</div>'
        f"<h3>Plots</h3>{render_plots(protocol, documents)}</section>"
    )


def _status_legend() -> str:
    items = "".join(
        f'<dt><span class="badge badge-{status}">{status}</span></dt><dd>{escape(text)}</dd>'
        for status, text in STATUS_TEXT.items()
    )
    return f'<dl class="legend">{items}</dl>'


def _footer() -> str:
    return (
        "<footer><h2>Adding an entry</h2><ol>"
        "<li>Run <code>emogen-bench evaluate</code> on a complete submission under the official protocol with the "
        "official weights.</li>"
        "<li><code>emogen-bench leaderboard add</code> turns that results JSON into an entry file "
        "<code>leaderboard/entries/&lt;protocol&gt;/&lt;slug&gt;.json</code> (status <em>self-reported</em>); "
        "numbers from a paper are entered by hand as <em>published</em>, with a citation.</li>"
        "<li>Open a pull request with the entry; a maintainer who re-runs evaluate on the submitted images marks it "
        "<em>verified</em>.</li>"
        "<li><code>emogen-bench leaderboard build</code> regenerates this page.</li></ol>"
        f"<p>The entry fields and the review are described in <code>{DOCS}</code>.</p></footer>"
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
.meta, .count, caption, .ci, .no-plot { color: var(--muted); }
.note { background: #fff6dc; border-left: 4px solid #d29b00; padding: 6px 10px; }
.legend { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; }
.legend dd { margin: 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; }
caption { text-align: left; padding: 4px 0; font-size: 0.9em; }
table.board { width: 100%; }
table.board th, table.board td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; }
table.board > thead th { background: #f3f5f8; }
table.board td { white-space: nowrap; }
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
.weights-not-official { color: #a11; font-weight: 600; }
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
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
footer { border-top: 1px solid var(--line); margin-top: 32px; padding-bottom: 32px; }
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


def render_page(documents: Sequence[Mapping[str, Any]], generated: str | None = None) -> str:
    """The whole page for validated entry documents; ``generated`` (e.g. a date) is shown in the header if given."""
    groups = group_by_protocol(documents)
    n_entries = sum(len(group) for group in groups.values())
    meta = f"{n_entries} entr{'y' if n_entries == 1 else 'ies'} under {len(groups)} protocol(s)."
    if generated is not None:
        meta = f"Generated {escape(generated)}. " + meta
    nav = "".join(
        f'<li><a href="#protocol-{escape(name)}">{escape(PROTOCOLS[name].title if name in PROTOCOLS else name)}</a> '
        f"({len(group)})</li>"
        for name, group in groups.items()
    )
    sections = "".join(_protocol_section(name, group) for name, group in groups.items())
    if not sections:
        sections = "<p>No entries yet.</p>"
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
        f"<main>\n{sections}\n</main>\n{_footer()}\n<script>{_inline(SCRIPT)}</script>\n</body>\n</html>\n"
    )


def render_site(documents: Sequence[Mapping[str, Any]], out_dir: Path, generated: str | None = None) -> Path:
    """Write ``out_dir/index.html`` (one self-contained file) and return its path.

    An existing ``index.html`` is replaced only when this generator wrote it;
    any other file there is a usage error, so a user's page is never lost.
    """
    out_dir = Path(out_dir)
    target = out_dir / "index.html"
    if target.exists():
        kind = file_kind(target)
        if kind is not None:  # a FIFO would block the read below forever
            raise UsageError(f"{target} is {kind}, not a page this generator wrote; nothing was overwritten")
        try:
            ours = f'<meta name="generator" content="{GENERATOR}">'.encode() in read_bytes(target, "page")
        except UsageError:
            ours = False
        if not ours:
            raise UsageError(
                f"{target} exists and was not written by '{GENERATOR}'; nothing was overwritten. "
                "Move that file away or choose another output folder."
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot create the site folder {out_dir}: {error.strerror}; choose a writable folder"
        ) from None
    write_atomic(target, render_page(documents, generated))
    return target
