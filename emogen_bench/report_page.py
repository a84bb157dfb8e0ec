"""``emogen-bench report``: one results document (and its per-image rows) as a static, self-contained HTML page.

:func:`render_page` is pure (documents in, HTML text out, the same bytes for the same input);
:func:`build_report` reads the inputs, checks that they belong together, makes the thumbnails and writes
``DIR/index.html``.  The page holds everything inline: CSS (allowed by its hash in the page's
Content-Security-Policy), charts as SVG and thumbnails as ``data:`` URIs, so it is one file that can be
moved, mailed or opened offline, and the browser fetches nothing.  No script.  Every string from the inputs
is escaped.  Sections: provenance, the overall numbers, per-emotion bars with their 95% intervals, the
confusion matrix of each emotion classifier, and (with ``--per-image`` and ``--submission``) the images each
classifier scored lowest and highest per emotion (docs/report.md).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path, PurePosixPath
from typing import Any

from emogen_bench.errors import InvalidInputError, UsageError
from emogen_bench.fileio import check_generated_page, check_output_file, expand_path, write_atomic
from emogen_bench.per_image import CLASSIFIERS, Row, read_per_image
from emogen_bench.safe_read import file_kind, read_bytes
from emogen_bench.task import EMOTION_NAMES, LOWER_IS_BETTER, METRIC_LABELS, PERCENT_METRICS

GENERATOR = "emogen-bench report"
#: Longest side of a thumbnail, in pixels (JPEG, quality :data:`THUMB_QUALITY`, inlined as a data: URI).
THUMB_SIZE = 128
THUMB_QUALITY = 85
#: Images shown per emotion at each end (lowest and highest) unless asked otherwise.
DEFAULT_COUNT = 3
MAX_COUNT = 20
#: The scores the thumbnails are ranked by: each classifier's probability of the target emotion, and Sem-C's
#: per-image clarity (the larger of its two top-1 probabilities).
SCORED: tuple[tuple[str, str], ...] = (
    *((c.metric, f"{c.label}: probability of the target emotion") for c in CLASSIFIERS),
    ("sem_c", "Sem-C: the larger of the ImageNet and Places365 top-1 probabilities"),
)
SMOKE_TEXT = "SMOKE RUN: tiny random models built in code; these numbers mean nothing about any method."

# --- reading the results document defensively ---------------------------------------------------------------------


class _Doc:
    """Typed access to a results document; a missing or mistyped field is an :class:`InvalidInputError`."""

    def __init__(self, document: Mapping[str, Any], source: str) -> None:
        self.document, self.source = document, source

    def fail(self, where: str, problem: str) -> InvalidInputError:
        return InvalidInputError(f"{self.source}: {where} {problem}")

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, "is not an object")
        return value

    def metric(self, value: Any, where: str) -> tuple[float, tuple[float, float] | None, int]:
        value = self.mapping(value, where)
        number, ci95, n = value.get("value"), value.get("ci95"), value.get("n")
        if not _is_number(number) or not math.isfinite(number):
            raise self.fail(where, f"has the value {number!r}, not a finite number")
        if ci95 is not None and not (
            isinstance(ci95, list) and len(ci95) == 2 and all(_is_number(x) and math.isfinite(x) for x in ci95)
        ):
            raise self.fail(where, f"has the interval {ci95!r}, not two finite numbers")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise self.fail(where, f"has the count n={n!r}, not a whole number")
        return float(number), (None if ci95 is None else (float(ci95[0]), float(ci95[1]))), n

    def overall(self) -> Mapping[str, Any]:
        return self.mapping(self.mapping(self.document.get("metrics"), "metrics").get("overall"), "metrics.overall")

    def per_emotion(self) -> Mapping[str, Mapping[str, Any]]:
        block = self.mapping(self.mapping(self.document.get("metrics"), "metrics").get("per_emotion"),
                             "metrics.per_emotion")  # fmt: skip
        return {e: self.mapping(block[e], f"metrics.per_emotion.{e}") for e in EMOTION_NAMES if e in block}

    def confusion(self, metric: str) -> list[list[int]] | None:
        matrix = self.mapping(self.overall().get(metric), f"metrics.overall.{metric}").get("confusion")
        if matrix is None:
            return None
        size = len(EMOTION_NAMES)
        if not (
            isinstance(matrix, list) and len(matrix) == size
            and all(isinstance(r, list) and len(r) == size and all(_is_count(x) for x in r) for r in matrix)
        ):  # fmt: skip
            raise self.fail(f"metrics.overall.{metric}.confusion", f"is not an {size}x{size} matrix of counts")
        return matrix

    def manifest(self) -> list[tuple[str, str]]:
        entries = self.mapping(self.document.get("submission"), "submission").get("manifest")
        if not isinstance(entries, list) or not all(
            isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e) for e in entries
        ):
            raise self.fail("submission.manifest", "is not a list of [path, sha256] pairs")
        return [(path, sha256) for path, sha256 in entries]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --- per-image rows: belonging, confusion, extremes (pure) --------------------------------------------------------


def score(row: Row, metric: str) -> float | None:
    """The score an image is ranked by under ``metric`` (see :data:`SCORED`), or ``None`` where it has none."""
    if metric == "sem_c":
        first, second = row["sem_c_imagenet_prob"], row["sem_c_places365_prob"]
        return None if first is None or second is None else max(first, second)
    return row[f"{metric}_target_prob"]


def confusion_from_rows(rows: Sequence[Row], metric: str) -> list[list[int]] | None:
    """The 8x8 confusion matrix (rows target, columns predicted) of a classifier's per-image predictions."""
    index = {name: i for i, name in enumerate(EMOTION_NAMES)}
    matrix = [[0] * len(EMOTION_NAMES) for _ in EMOTION_NAMES]
    seen = False
    for row in rows:
        predicted = row[f"{metric}_predicted"]
        if predicted is not None:
            matrix[index[row["emotion"]]][index[predicted]] += 1
            seen = True
    return matrix if seen else None


def check_rows_belong(document: Mapping[str, Any], rows: Sequence[Row], results: str, per_image: str) -> None:
    """Refuse per-image rows that are not those of this results document.

    The rows must list exactly the manifest's images (path and sha256); a classifier's predictions must give
    the document's confusion matrix, and Sem-C's rows its mean (up to float rounding of the order of summing).
    """
    doc = _Doc(document, results)
    manifest = doc.manifest()
    listed = [(row["path"], row["sha256"]) for row in rows]
    if len(set(listed)) != len(listed):
        raise InvalidInputError(f"{per_image}: an image is listed twice")
    if set(listed) != set(manifest):
        strays = sorted(set(listed) ^ set(manifest))
        raise InvalidInputError(
            f"{per_image} does not belong to {results}: {len(strays)} image(s) differ from its manifest "
            f"(e.g. {strays[0][0]}); give the per-image file written by the same evaluation"
        )
    overall = doc.overall()
    for classifier in CLASSIFIERS:
        if classifier.metric not in overall:
            continue
        expected, found = doc.confusion(classifier.metric), confusion_from_rows(rows, classifier.metric)
        if expected is not None and found is not None and expected != found:
            raise InvalidInputError(
                f"{per_image} does not belong to {results}: its {classifier.label} predictions give another "
                "confusion matrix; give the per-image file written by the same evaluation"
            )
    if "sem_c" in overall:
        values = [s for s in (score(row, "sem_c") for row in rows) if s is not None]
        value, _, n = doc.metric(overall["sem_c"], "metrics.overall.sem_c")
        if values and (len(values) != n or not math.isclose(math.fsum(values) / n, value, rel_tol=1e-9)):
            raise InvalidInputError(
                f"{per_image} does not belong to {results}: its Sem-C probabilities do not give the Sem-C of "
                "the results; give the per-image file written by the same evaluation"
            )


def extremes(rows: Sequence[Row], metric: str, emotion: str, count: int) -> tuple[list[Row], list[Row]]:
    """The ``count`` rows of ``emotion`` scored lowest (lowest first) and highest (highest first) under ``metric``.

    Ties are broken by path, so the choice is deterministic; with fewer than ``2 * count`` images the two
    lists share some.
    """
    scored = sorted(
        (row for row in rows if row["emotion"] == emotion and score(row, metric) is not None),
        key=lambda row: (score(row, metric), row["path"]),
    )
    return scored[:count], scored[::-1][:count]


# --- formatting and SVG (pure) ------------------------------------------------------------------------------------


def format_value(metric: str, value: float) -> str:
    """Accuracies as percent, other values with 4 significant digits."""
    if metric in PERCENT_METRICS:
        return f"{value * 100:.1f}%"
    return f"{value:.4g}"


def format_interval(metric: str, ci95: tuple[float, float] | None) -> str:
    return "" if ci95 is None else f"[{format_value(metric, ci95[0])}, {format_value(metric, ci95[1])}]"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten apart) covering ``[low, high]``."""
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1.0, 2.0, 5.0, 10.0)), key=lambda s: abs(math.log(s / raw)))
    start, stop = math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step
    return [round(start + i * step, 12) for i in range(int(round((stop - start) / step)) + 1)]


@dataclass(frozen=True)
class BarValue:
    """One emotion's bar: its value and interval (``None``: no interval defined)."""

    emotion: str
    value: float
    ci95: tuple[float, float] | None


def bar_chart(metric: str, bars: Sequence[BarValue], overall: float | None) -> str:
    """Per-emotion bars with 95% error bars and the overall value as a dashed line, as one ``<svg>``."""
    width, height, left, right, top, bottom = 640.0, 260.0, 64.0, 12.0, 14.0, 58.0
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    ends = [b.value for b in bars] + [x for b in bars if b.ci95 for x in b.ci95]
    ends += [overall] if overall is not None else []
    ticks = nice_ticks(min(0.0, *ends) * scale, max(0.0, *ends) * scale)
    low, high = ticks[0], ticks[-1]
    plot_h = height - top - bottom

    def y(value: float) -> float:
        return top + plot_h * (high - value * scale) / (high - low)

    label = METRIC_LABELS.get(metric, metric)
    title = f"{label} per emotion" + (" (%)" if metric in PERCENT_METRICS else "")
    parts = [
        f'<svg class="bars" data-metric="{escape(metric)}" viewBox="0 0 {width:g} {height:g}" role="img" '
        f'aria-labelledby="svg-{escape(metric)}-t" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="svg-{escape(metric)}-t">{escape(title)}: bars are values, whiskers 95% intervals</title>',
    ]
    for tick in ticks:
        ty = y(tick / scale)
        parts.append(f'<line class="grid" x1="{left:g}" x2="{width - right:g}" y1="{ty:.1f}" y2="{ty:.1f}"/>')
        parts.append(f'<text class="tick" x="{left - 6:g}" y="{ty + 4:.1f}" text-anchor="end">{tick:g}</text>')
    slot = (width - left - right) / max(len(bars), 1)
    zero = y(0.0)
    for i, bar in enumerate(bars):
        x = left + i * slot + slot * 0.2
        top_y, bottom_y = sorted((y(bar.value), zero))
        shown = f"{bar.emotion}: {format_value(metric, bar.value)} {format_interval(metric, bar.ci95)}".strip()
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{top_y:.1f}" width="{slot * 0.6:.1f}" '
            f'height="{max(bottom_y - top_y, 0.5):.1f}"><title>{escape(shown)}</title></rect>'
        )
        if bar.ci95 is not None:
            cx, lo, hi, cap = x + slot * 0.3, y(bar.ci95[0]), y(bar.ci95[1]), slot * 0.12
            parts.append(
                f'<g class="errorbar"><line x1="{cx:.1f}" x2="{cx:.1f}" y1="{lo:.1f}" y2="{hi:.1f}"/>'
                f'<line x1="{cx - cap:.1f}" x2="{cx + cap:.1f}" y1="{lo:.1f}" y2="{lo:.1f}"/>'
                f'<line x1="{cx - cap:.1f}" x2="{cx + cap:.1f}" y1="{hi:.1f}" y2="{hi:.1f}"/></g>'
            )
        lx, ly = x + slot * 0.3, height - bottom + 12
        parts.append(
            f'<text class="label" x="{lx:.1f}" y="{ly:.1f}" text-anchor="end" '
            f'transform="rotate(-35 {lx:.1f} {ly:.1f})">{escape(bar.emotion)}</text>'
        )
    if overall is not None:
        oy = y(overall)
        parts.append(f'<line class="overall" x1="{left:g}" x2="{width - right:g}" y1="{oy:.1f}" y2="{oy:.1f}">'
                     f"<title>overall {escape(format_value(metric, overall))}</title></line>")  # fmt: skip
    parts.append(f'<line class="axis" x1="{left:g}" x2="{width - right:g}" y1="{zero:.1f}" y2="{zero:.1f}"/></svg>')
    return "".join(parts)


# --- page sections (pure) -----------------------------------------------------------------------------------------


def _dl(items: Sequence[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _code(value: Any) -> str:
    return f"<code>{escape(str(value))}</code>"


def _provenance(doc: _Doc, sources: Mapping[str, str]) -> str:
    document = doc.document
    submission = doc.mapping(document.get("submission"), "submission")
    metadata = submission.get("metadata") if isinstance(submission.get("metadata"), Mapping) else {}
    run = document.get("run") if isinstance(document.get("run"), Mapping) else {}
    reference = document.get("reference") if isinstance(document.get("reference"), Mapping) else None
    items = [
        ("Method", escape(str(metadata.get("method", "not given")))),
        ("Protocol", f"{_code(document.get('protocol'))} version {escape(str(document.get('protocol_version')))}"),
        ("Benchmark version", _code(document.get("benchmark_version"))),
        ("Run", escape(str(run.get("label", "")))),
        ("Submission", f"{_code(submission.get('path'))}, {escape(str(submission.get('n_images')))} images"),
        ("Submission digest", _code(submission.get("digest"))),
        ("Weights", "official (every artifact pinned)" if document.get("official_weights") is True
         else "NOT the official weights"),
        ("Reference statistics", "none" if reference is None else _code(reference.get("sha256"))),
        ("Seed", escape(str(document.get("seed")))),
        ("Evaluated", escape(str(document.get("created", "")))),
        *((name, _code(value)) for name, value in sources.items()),
    ]  # fmt: skip
    artifacts = document.get("artifacts") if isinstance(document.get("artifacts"), Mapping) else {}
    rows = "".join(
        f"<tr><th scope=\"row\">{escape(str(name))}</th><td>{_code(a.get('digest'))}</td>"
        f"<td>{'yes' if a.get('official') is True else 'no'}</td>"
        f"<td>{'smoke' if a.get('smoke') else escape(str(a.get('source', '')))}</td></tr>"
        for name, a in sorted(artifacts.items()) if isinstance(a, Mapping)
    )  # fmt: skip
    table = (
        '<div class="scroll"><table class="artifacts"><caption>Weights used</caption><thead><tr>'
        '<th scope="col">Artifact</th><th scope="col">Digest</th><th scope="col">Official</th>'
        f'<th scope="col">Source</th></tr></thead><tbody>{rows}</tbody></table></div>'
    )
    return f'<section id="provenance"><h2>Provenance</h2>{_dl(items)}{table}</section>'


def _overall_table(doc: _Doc) -> str:
    overall = doc.overall()
    rows = []
    for metric in METRIC_LABELS:
        if metric in overall:
            value, ci95, n = doc.metric(overall[metric], f"metrics.overall.{metric}")
            better = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
            rows.append(
                f'<tr><th scope="row">{escape(METRIC_LABELS[metric])} <span class="muted">({better})</span></th>'
                f'<td class="num">{escape(format_value(metric, value))}</td>'
                f'<td class="num">{escape(format_interval(metric, ci95)) or "—"}</td><td class="num">{n}</td></tr>'
            )
    not_computed = doc.document.get("not_computed")
    for metric, reason in not_computed.items() if isinstance(not_computed, Mapping) else ():
        rows.append(f'<tr><th scope="row">{escape(METRIC_LABELS.get(metric, str(metric)))}</th>'
                    f'<td colspan="3">not computed: {escape(str(reason))}</td></tr>')  # fmt: skip
    return (
        '<section id="overall"><h2>Overall</h2><div class="scroll"><table class="overall"><thead><tr>'
        '<th scope="col">Metric</th><th scope="col">Value</th><th scope="col">95% interval</th>'
        f'<th scope="col">Images</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div></section>'
    )


def _charts(doc: _Doc) -> str:
    overall, per_emotion = doc.overall(), doc.per_emotion()
    figures = []
    for metric in METRIC_LABELS:
        bars = [
            BarValue(emotion, *doc.metric(values[metric], f"metrics.per_emotion.{emotion}.{metric}")[:2])
            for emotion, values in per_emotion.items() if metric in values
        ]  # fmt: skip
        if not bars:
            continue
        total = doc.metric(overall[metric], f"metrics.overall.{metric}")[0] if metric in overall else None
        missing = [b.emotion for b in bars if b.ci95 is None]
        note = f" No interval is defined for {', '.join(missing)}." if missing else ""
        figures.append(
            f'<figure class="chart">{bar_chart(metric, bars, total)}<figcaption>{escape(METRIC_LABELS[metric])} per '
            f"emotion; whiskers: 95% intervals; dashed line: overall.{escape(note)}</figcaption></figure>"
        )
    return f'<section id="per-emotion"><h2>Per emotion</h2><div class="charts">{"".join(figures)}</div></section>'


def _confusion_table(metric: str, label: str, matrix: Sequence[Sequence[int]], source: str) -> str:
    head = "".join(f'<th scope="col">{escape(e)}</th>' for e in EMOTION_NAMES)
    body = []
    for i, (emotion, counts) in enumerate(zip(EMOTION_NAMES, matrix)):
        total = sum(counts)
        if total == 0:
            continue
        cells = "".join(
            f'<td class="num h{min(5, int(6 * c / total))}{" diag" if j == i else ""}">{c}</td>'
            for j, c in enumerate(counts)
        )
        body.append(f'<tr><th scope="row">{escape(emotion)}</th>{cells}<td class="num">{total}</td>'
                    f'<td class="num">{counts[i] / total * 100:.1f}%</td></tr>')  # fmt: skip
    return (
        f'<div class="scroll"><table class="confusion" data-metric="{escape(metric)}"><caption>{escape(label)}: '
        f"rows are the target emotion, columns the predicted one ({escape(source)})</caption><thead><tr>"
        f'<th scope="col">target \\ predicted</th>{head}<th scope="col">images</th><th scope="col">accuracy</th>'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _confusions(doc: _Doc, rows: Sequence[Row] | None) -> str:
    tables = []
    for classifier in CLASSIFIERS:
        if classifier.metric not in doc.overall():
            continue
        matrix, source = doc.confusion(classifier.metric), "from the results"
        if matrix is None and rows is not None:
            matrix, source = confusion_from_rows(rows, classifier.metric), "from the per-image rows"
        if matrix is not None:
            tables.append(_confusion_table(classifier.metric, classifier.label, matrix, source))
    if not tables:
        return ""
    return f'<section id="confusion"><h2>Confusion matrices</h2>{"".join(tables)}</section>'


def _thumbnail(row: Row, metric: str, thumbnails: Mapping[str, str] | None) -> str:
    shown = score(row, metric)
    assert shown is not None
    predicted = row.get(f"{metric}_predicted") if metric != "sem_c" else row.get("sem_c_winner")
    what = "predicted" if metric != "sem_c" else "higher"
    uri = (thumbnails or {}).get(row["sha256"])
    image = f'<img src="{escape(uri)}" alt="{escape(row["path"])}" width="{THUMB_SIZE}" loading="eager">' if uri else ""
    return (
        f'<figure class="thumb">{image}<figcaption><code>{escape(row["path"])}</code><br>{shown:.4f}'
        f" · {what} {escape(str(predicted))}</figcaption></figure>"
    )


def _extremes(doc: _Doc, rows: Sequence[Row], thumbnails: Mapping[str, str] | None, count: int) -> str:
    overall = doc.overall()
    blocks = []
    for metric, description in SCORED:
        if metric not in overall or all(score(row, metric) is None for row in rows):
            continue
        per_emotion = []
        for emotion in EMOTION_NAMES:
            lowest, highest = extremes(rows, metric, emotion, count)
            if not lowest:
                continue
            per_emotion.append(
                f'<div class="extremes" data-metric="{escape(metric)}" data-emotion="{escape(emotion)}">'
                f'<h4>{escape(emotion)}</h4><div class="ends">'
                + "".join(
                    f'<div class="end"><p class="muted">{end}</p><div class="thumbs">'
                    + "".join(_thumbnail(row, metric, thumbnails) for row in chosen)
                    + "</div></div>"
                    for end, chosen in (("lowest", lowest), ("highest", highest))
                )
                + "</div></div>"
            )
        blocks.append(f'<h3>{escape(description)}</h3><div class="emotions">{"".join(per_emotion)}</div>')
    if not blocks:
        return ""
    note = "" if thumbnails else " Give --submission to see the images."
    return (
        f'<section id="images"><h2>Lowest and highest scored images</h2><p>Per emotion, the {count} images each '
        f"classifier scored lowest and highest (ties broken by path).{escape(note)}</p>{''.join(blocks)}</section>"
    )


STYLE = """
:root { color-scheme: light; --ink: #1b1b1b; --muted: #5a5a5a; --line: #d0d0d0; --bar: #0072B2; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); }
header, main, footer { max-width: 1180px; margin: 0 auto; padding: 0 16px; }
h1 { font-size: 1.5rem; margin: 16px 0 4px; } h2 { margin-top: 28px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin-top: 20px; } h4 { margin: 12px 0 4px; }
code { font-size: 0.85em; overflow-wrap: anywhere; word-break: break-all; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; }
dt { font-weight: 600; } dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
.smoke { background: #fff3cd; border: 1px solid #e0b000; padding: 8px 12px; font-weight: 600; }
.muted { color: var(--muted); font-weight: normal; margin: 4px 0; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 8px 0; }
caption { text-align: left; color: var(--muted); padding-bottom: 4px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.confusion th[scope="col"] { writing-mode: vertical-rl; transform: rotate(180deg); }
.confusion .diag { outline: 2px solid #333; outline-offset: -2px; font-weight: 700; }
.h0 { background: #ffffff; } .h1 { background: #e6f0f8; } .h2 { background: #c6dcee; }
.h3 { background: #9fc3e3; } .h4 { background: #6fa5d4; color: #fff; } .h5 { background: #2f78b8; color: #fff; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 460px), 1fr)); gap: 12px; }
figure { margin: 0; } figcaption { font-size: 0.85rem; color: var(--muted); }
svg.bars { width: 100%; height: auto; display: block; font-size: 12px; }
svg .bar { fill: var(--bar); } svg .grid { stroke: #eee; } svg .axis { stroke: #333; }
svg .errorbar line { stroke: #111; stroke-width: 1.5; } svg .overall { stroke: #D55E00; stroke-dasharray: 6 4; }
svg .tick, svg .label { fill: var(--ink); }
.thumbs { display: flex; flex-wrap: wrap; gap: 8px; }
.emotions { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 540px), 1fr)); gap: 4px 24px; }
.ends { display: flex; flex-wrap: wrap; gap: 4px 24px; }
table code { white-space: nowrap; word-break: normal; overflow-wrap: normal; }
.thumb { width: 136px; } .thumb img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
.thumb figcaption { overflow-wrap: anywhere; }
footer { margin-top: 32px; padding-bottom: 24px; color: var(--muted); font-size: 0.85rem; }
""".strip()


def _inline(text: str) -> str:
    return f"\n{text}\n"


def content_security_policy() -> str:
    """Only this page's own inline style (by hash) and data: images; no script, nothing fetched."""
    digest = base64.b64encode(hashlib.sha256(_inline(STYLE).encode("utf-8")).digest()).decode("ascii")
    return f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; base-uri 'none'; form-action 'none'"


def render_page(
    document: Mapping[str, Any],
    *,
    rows: Sequence[Row] | None = None,
    thumbnails: Mapping[str, str] | None = None,
    count: int = DEFAULT_COUNT,
    sources: Mapping[str, str] | None = None,
    results_name: str = "results document",
) -> str:
    """The whole page for one results document; ``rows`` its per-image rows (checked by the caller),
    ``thumbnails`` data: URIs by image sha256, ``sources`` the input files to name in the provenance."""
    doc = _Doc(document, results_name)
    submission = doc.mapping(document.get("submission"), "submission")
    method = submission.get("metadata", {}).get("method") if isinstance(submission.get("metadata"), Mapping) else None
    title = f"emogen-bench report: {method or submission.get('path') or 'submission'}"
    smoke = f'<p class="smoke">{escape(SMOKE_TEXT)}</p>' if document.get("smoke") is True else ""
    sections = [_provenance(doc, sources or {}), _overall_table(doc), _charts(doc), _confusions(doc, rows)]
    if rows is not None:
        sections.append(_extremes(doc, rows, thumbnails, count))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(content_security_policy())}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{GENERATOR}">\n<link rel="icon" href="data:,">\n'
        f"<title>{escape(title)}</title>\n<style>{_inline(STYLE)}</style>\n</head>\n<body>\n"
        f"<header><h1>{escape(title)}</h1>{smoke}</header>\n<main>\n{''.join(sections)}\n</main>\n"
        f"<footer>Written by {GENERATOR} {escape(str(document.get('benchmark_version')))}; "
        "columns and scores: docs/report.md.</footer>\n</body>\n</html>\n"
    )


# --- files --------------------------------------------------------------------------------------------------------


def _image_file(submission: Path, relpath: str) -> Path:
    """The file of ``relpath`` inside the submission; a path that would leave it is refused."""
    parts = PurePosixPath(relpath).parts
    if not parts or PurePosixPath(relpath).is_absolute() or any(p in ("", ".", "..") for p in parts):
        raise InvalidInputError(f"the image path {relpath!r} is not a path inside a submission")
    path = submission.joinpath(*parts)
    if not path.resolve().is_relative_to(submission.resolve()):
        raise InvalidInputError(f"{path} leads outside the submission {submission}; refusing to read it")
    return path


def make_thumbnail(submission: Path, row: Row) -> str:
    """A JPEG thumbnail of the row's image as a data: URI, after checking the file is the evaluated one."""
    from PIL import Image, UnidentifiedImageError

    path = _image_file(submission, row["path"])
    data = read_bytes(path, "submission image", InvalidInputError)
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise InvalidInputError(
            f"--submission {submission}: {path} is not the image that was evaluated (its sha256 differs); "
            "give the submission folder of these results"
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (THUMB_SIZE * 2, THUMB_SIZE * 2))
            small = image.convert("RGB")
            small.thumbnail((THUMB_SIZE, THUMB_SIZE))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InvalidInputError(f"{path}: cannot be decoded as an image ({error})") from None
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=THUMB_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _check_out_dir(out_dir: Path, inputs: Mapping[str, str | Path]) -> Path:
    """``out_dir/index.html``, after the output rule: a page is replaced only when this generator wrote it."""
    if file_kind(out_dir) not in ("a folder", "missing"):
        raise UsageError(f"--out {out_dir} is not a folder; give the folder to write the report into")
    target = check_output_file(out_dir / "index.html", overwrite=True, option="--out", inputs=inputs)
    check_generated_page(target, GENERATOR)
    return target


def build_report(
    results: str | Path,
    out_dir: str | Path,
    *,
    per_image: str | Path | None = None,
    submission: str | Path | None = None,
    count: int = DEFAULT_COUNT,
) -> Path:
    """Write the report page of ``results`` to ``out_dir/index.html`` and return its path.

    ``per_image`` (the file ``evaluate --per-image`` wrote) must belong to the results; ``submission``
    (which needs ``per_image``) is the evaluated folder, read only for the thumbnails of the images shown.
    """
    from emogen_bench.results import read_results

    if not 1 <= count <= MAX_COUNT:
        raise UsageError(f"--count {count}: give a number of images from 1 to {MAX_COUNT}")
    if submission is not None and per_image is None:
        raise UsageError("--submission needs --per-image: the images shown are chosen by their per-image scores")
    out_dir = expand_path(out_dir, "--out")
    inputs: dict[str, str | Path] = {}
    if submission is not None:
        submission = expand_path(submission, "--submission")
        if file_kind(submission) != "a folder":
            raise UsageError(f"--submission {submission} is not a folder; give the evaluated submission folder")
        inputs["the submission"] = submission
    target = _check_out_dir(out_dir, inputs)
    document = read_results(results)
    rows = thumbnails = None
    sources = {"Results file": str(results)}
    if per_image is not None:
        rows = read_per_image(per_image)
        check_rows_belong(document, rows, str(results), str(per_image))
        sources["Per-image file"] = str(per_image)
    if rows is not None and submission is not None:
        shown = {
            row["sha256"]: row
            for metric, _ in SCORED for emotion in EMOTION_NAMES for end in extremes(rows, metric, emotion, count)
            for row in end
        }  # fmt: skip
        thumbnails = {sha256: make_thumbnail(Path(submission), row) for sha256, row in sorted(shown.items())}
    page = render_page(document, rows=rows, thumbnails=thumbnails, count=count, sources=sources,
                       results_name=str(results))  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_atomic(target, page)
