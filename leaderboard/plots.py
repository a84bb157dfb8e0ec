"""Inline SVG plots for the leaderboard page, made without a plotting library.

Each function is pure: data in, one ``<svg>`` string out, the same bytes for
the same input.  Every chart carries a ``<title>`` and a ``<desc>`` (read by
screen readers and shown as a tooltip), text labels on its axes and a legend,
and takes its colours from :data:`PALETTE` in series order, so a method keeps
its colour across the charts of one protocol.  Every string is escaped.
Where a value has a 95% confidence interval, the chart draws it as an error
bar (a ``<g class="error-bar">`` whisker with caps and its own tooltip).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

#: Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), yellow last: weak on white.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")

_FONT = 12
_CHAR_WIDTH = 7.0  # rough width of one character at _FONT, for layout only


@dataclass(frozen=True)
class Series:
    """One method's values, one per category of a bar chart (``None``: not reported).

    ``colour`` indexes :data:`PALETTE`, so a method keeps its colour across charts.
    """

    label: str
    values: tuple[float | None, ...]
    colour: int = 0
    #: ``(low, high)`` per value (``None``: no interval), drawn as error bars; ``()`` when there are none at all.
    intervals: tuple[tuple[float, float] | None, ...] = ()


@dataclass(frozen=True)
class Point:
    """One method in a scatter plot; ``colour`` indexes :data:`PALETTE`."""

    label: str
    x: float
    y: float
    colour: int = 0
    #: 95% intervals ``(low, high)`` of x and y, drawn as horizontal and vertical error bars.
    x_interval: tuple[float, float] | None = None
    y_interval: tuple[float, float] | None = None


def colour(index: int) -> str:
    """The palette colour of series ``index`` (the palette repeats after its last colour)."""
    return PALETTE[index % len(PALETTE)]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]``.

    The step is the 1, 2 or 5 times a power of ten nearest (by ratio) to an
    even split into ``count - 1`` intervals; the ends are rounded outwards.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range must be finite, got [{low}, {high}]")
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1.0, 2.0, 5.0, 10.0)), key=lambda candidate: abs(math.log(candidate / raw)))
    start = math.floor(low / step + 1e-9) * step
    stop = math.ceil(high / step - 1e-9) * step
    n = int(round((stop - start) / step))
    return [round(start + i * step, 12) for i in range(n + 1)]


def padded_range(values: Sequence[float], fraction: float = 0.08) -> tuple[float, float]:
    """``[min, max]`` of ``values`` widened by ``fraction`` of the span on each side, so no point sits on an axis."""
    low, high = min(values), max(values)
    pad = (high - low) * fraction or abs(low) * fraction or 1.0
    return low - pad, high + pad


def format_tick(value: float, ticks: Sequence[float]) -> str:
    """``value`` with as many decimals as the tick step needs (``0.25`` for a step of 0.05, ``40`` for 10)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value) or 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:.{decimals}f}"


def format_value(value: float) -> str:
    """A data value for a tooltip or a label: four significant digits, no exponent for usual magnitudes."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"
    return f"{value:.3e}"


def _text(x: float, y: float, content: str, *, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{_FONT}"{extra}>{escape(content)}</text>'


def title_width(title: str) -> float:
    """The width a chart needs for its bold title line (charts are at least this wide)."""
    return 20.0 + 7.6 * len(title)


def _svg_open(element_id: str, width: float, height: float, title: str, description: str) -> list[str]:
    ident = escape(element_id)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{ident}" class="plot" role="img" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        f'aria-labelledby="{ident}-title {ident}-desc" font-family="system-ui, sans-serif">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(description)}</desc>',
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
        _text(10, 20, title, extra=' font-weight="600"'),
    ]


def error_bar(x1: float, y1: float, x2: float, y2: float, tooltip: str, cap: float = 4.0) -> str:
    """A whisker from ``(x1, y1)`` to ``(x2, y2)`` (vertical or horizontal) with a cap at each end."""
    if x1 == x2:
        caps = [(x1 - cap, y1, x1 + cap, y1), (x2 - cap, y2, x2 + cap, y2)]
    else:
        caps = [(x1, y1 - cap, x1, y1 + cap), (x2, y2 - cap, x2, y2 + cap)]
    lines = "".join(f'<line x1="{a:.1f}" y1="{b:.1f}" x2="{c:.1f}" y2="{d:.1f}"/>' for a, b, c, d in [
        (x1, y1, x2, y2), *caps])  # fmt: skip
    return f'<g class="error-bar" stroke="#222" stroke-width="1.2"><title>{escape(tooltip)}</title>{lines}</g>'


def interval_text(interval: tuple[float, float]) -> str:
    """``"95% CI 0.665–0.735"``: how a tooltip names an interval."""
    return f"95% CI {format_value(interval[0])}–{format_value(interval[1])}"


def _legend(items: Sequence[tuple[str, int]], x0: float, y0: float, width: float) -> tuple[list[str], float]:
    """Legend items (label, colour index) as swatch and label, wrapped to ``width``; returns parts and height used."""
    parts, x, y = [], x0, y0
    for label, index in items:
        item = 18 + _CHAR_WIDTH * len(label) + 16
        if x > x0 and x + item > x0 + width:
            x, y = x0, y + 18
        parts.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" fill="{colour(index)}"/>')
        parts.append(_text(x + 17, y, label))
        x += item
    return parts, (y - y0) + 18 if items else 0.0


def _y_axis(
    ticks: Sequence[float],
    to_y: Callable[[float], float],
    left: float,
    right: float,
    label: str,
    top: float,
    bottom: float,
) -> list[str]:
    parts = [f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{bottom:.1f}" stroke="#444"/>']
    for tick in ticks:
        y = to_y(tick)
        parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(_text(left - 6, y + 4, format_tick(tick, ticks), anchor="end"))
    middle = (top + bottom) / 2
    parts.append(_text(14, middle, label, anchor="middle", extra=f' transform="rotate(-90 14 {middle:.1f})"'))
    return parts


def bar_chart(
    element_id: str,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
) -> str:
    """Grouped bars: one group per category, one bar per series (a missing value: a grey stub on the axis).

    The y axis starts at zero (the quantities drawn are non-negative), so bar
    lengths compare honestly.
    """
    if not categories or not series:
        raise ValueError("a bar chart needs at least one category and one series")
    for item in series:
        if len(item.values) != len(categories):
            raise ValueError(f"series {item.label!r} has {len(item.values)} values for {len(categories)} categories")
        if item.intervals and len(item.intervals) != len(categories):
            raise ValueError(f"series {item.label!r} has {len(item.intervals)} intervals for {len(categories)} values")
    values = [v for item in series for v in item.values if v is not None]
    values += [interval[1] for item in series for interval in item.intervals if interval is not None]
    top_value = max([0.0, *values])
    ticks = nice_ticks(0.0, top_value if top_value > 0 else 1.0)
    bar = 14.0 if len(series) <= 4 else 9.0
    group = max(84.0, bar * len(series) + 16.0)
    left, top, plot_height = 64.0, 40.0, 220.0
    width = max(360.0, title_width(title), left + group * len(categories) + 20.0)
    bottom = top + plot_height
    low, high = ticks[0], ticks[-1]

    def to_y(value: float) -> float:
        return bottom - (value - low) / (high - low) * plot_height

    legend, legend_height = _legend(
        [(item.label, item.colour) for item in series], left, bottom + 40, width - left - 20
    )
    parts = _svg_open(element_id, width, bottom + 44 + legend_height, title, description)
    parts += _y_axis(ticks, to_y, left, width - 20, y_label, top, bottom)
    for c, category in enumerate(categories):
        x0 = left + c * group + (group - bar * len(series)) / 2
        for s, item in enumerate(series):
            value = item.values[c]
            x = x0 + s * bar
            if value is None:
                missing = escape(f"{item.label}, {category}: not reported")
                parts.append(
                    f'<rect x="{x:.1f}" y="{bottom - 2:.1f}" width="{bar - 1:.1f}" height="2" fill="#b0b0b0">'
                    f"<title>{missing}</title></rect>"
                )
                continue
            y = to_y(value)
            tooltip = escape(f"{item.label}, {category}: {format_value(value)}")
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 1:.1f}" height="{bottom - y:.1f}" '
                f'fill="{colour(item.colour)}"><title>{tooltip}</title></rect>'
            )
            interval = item.intervals[c] if item.intervals else None
            if interval is not None:
                centre = x + (bar - 1) / 2
                parts.append(
                    error_bar(centre, to_y(max(interval[0], low)), centre, to_y(interval[1]),
                              f"{item.label}, {category}: {interval_text(interval)}", cap=min(4.0, bar / 2))
                )  # fmt: skip
        parts.append(_text(left + c * group + group / 2, bottom + 16, category, anchor="middle"))
    parts.append(f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{width - 20:.1f}" y2="{bottom:.1f}" stroke="#444"/>')
    parts += legend
    parts.append("</svg>")
    return "\n".join(parts)


@dataclass(frozen=True)
class Bar:
    """One method's single value in :func:`method_bars`; ``colour`` indexes :data:`PALETTE`."""

    label: str
    value: float
    colour: int = 0
    #: The value's 95% interval ``(low, high)``, drawn as an error bar; ``None`` without one.
    interval: tuple[float, float] | None = None


def method_bars(element_id: str, title: str, description: str, bars: Sequence[Bar], *, y_label: str) -> str:
    """One bar per method, named under it (slanted) and with its value above it; the y axis starts at zero."""
    if not bars:
        raise ValueError("a bar chart needs at least one bar")
    highs = [b.interval[1] for b in bars if b.interval is not None]
    ticks = nice_ticks(0.0, max([0.0, *(b.value for b in bars), *highs]) or 1.0)
    slot, bar = 48.0, 28.0
    left, top, plot_height = 64.0, 40.0, 220.0
    bottom = top + plot_height
    label_drop = 0.6 * _CHAR_WIDTH * max(len(b.label) for b in bars)  # a label slanted by -35 degrees
    width = max(360.0, title_width(title), left + slot * len(bars) + 20.0 + label_drop * 0.5)
    height = bottom + 24.0 + label_drop

    def to_y(value: float) -> float:
        return bottom - (value - ticks[0]) / (ticks[-1] - ticks[0]) * plot_height

    parts = _svg_open(element_id, width, height, title, description)
    parts += _y_axis(ticks, to_y, left, width - 20, y_label, top, bottom)
    for index, item in enumerate(bars):
        centre = left + slot * index + slot / 2
        y = to_y(item.value)
        parts.append(
            f'<rect x="{centre - bar / 2:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{bottom - y:.1f}" '
            f'fill="{colour(item.colour)}"><title>{escape(f"{item.label}: {format_value(item.value)}")}</title></rect>'
        )
        label_y = y - 4
        if item.interval is not None:
            top_y = to_y(item.interval[1])
            parts.append(
                error_bar(centre, to_y(max(item.interval[0], ticks[0])), centre, top_y,
                          f"{item.label}: {interval_text(item.interval)}")
            )  # fmt: skip
            label_y = min(label_y, top_y - 4)
        parts.append(_text(centre, label_y, format_value(item.value), anchor="middle", extra=' font-size="10"'))
        parts.append(
            _text(centre + 4, bottom + 14, item.label, anchor="end",
                  extra=f' transform="rotate(-35 {centre + 4:.1f} {bottom + 14:.1f})"')
        )  # fmt: skip
    parts.append(f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{width - 20:.1f}" y2="{bottom:.1f}" stroke="#444"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def place_labels(
    anchors: Sequence[tuple[float, float]], labels: Sequence[str], right_edge: float
) -> list[tuple[float, float, str]]:
    """Positions ``(x, y, text-anchor)`` for point labels that do not overlap one another.

    Each label goes beside its point (right, or left near ``right_edge``); when
    it would cover a point or an earlier label it moves down or up in line steps
    until it is free (greedy, in input order, so the result is deterministic).
    """
    placed = [(x - 6, y - 6, x + 6, y + 6) for x, y in anchors]  # boxes (x0, y0, x1, y1): the points first
    out = []
    for (x, y), label in zip(anchors, labels):
        width = _CHAR_WIDTH * len(label)
        right = x + 8 + width <= right_edge
        x0 = x + 8 if right else x - 8 - width
        for step in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
            baseline = y - 6 + step * 14
            box = (x0, baseline - 11, x0 + width, baseline + 3)
            if all(box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3] for b in placed):
                break
        placed.append(box)
        out.append((x + 8 if right else x - 8, baseline, "start" if right else "end"))
    return out


def scatter_plot(
    element_id: str,
    title: str,
    description: str,
    points: Sequence[Point],
    *,
    x_label: str,
    y_label: str,
    hint: str,
    better_corner: str,
) -> str:
    """Labelled points on x/y axes with round ticks; ``hint`` names the better direction, shown in ``better_corner``.

    ``better_corner`` is one of ``top-left``, ``top-right``, ``bottom-left``,
    ``bottom-right``: where the best methods sit, marked with an arrow.
    """
    if not points:
        raise ValueError("a scatter plot needs at least one point")
    corners = {"top-left": "↖", "top-right": "↗", "bottom-left": "↙", "bottom-right": "↘"}
    if better_corner not in corners:
        raise ValueError(f"better_corner must be one of {', '.join(corners)}, got {better_corner!r}")
    xs = [p.x for p in points] + [bound for p in points if p.x_interval for bound in p.x_interval]
    ys = [p.y for p in points] + [bound for p in points if p.y_interval for bound in p.y_interval]
    x_ticks = nice_ticks(*padded_range(xs))
    y_ticks = nice_ticks(*padded_range(ys))
    left, top, plot_width, plot_height = 64.0, 52.0, 520.0, 280.0
    right, bottom = left + plot_width, top + plot_height
    width, height = max(right + 150.0, title_width(title)), bottom + 52.0

    def to_x(value: float) -> float:
        return left + (value - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * plot_width

    def to_y(value: float) -> float:
        return bottom - (value - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * plot_height

    parts = _svg_open(element_id, width, height, title, description)
    parts.append(_text(10, 38, hint, extra=' fill="#444"'))
    parts += _y_axis(y_ticks, to_y, left, right, y_label, top, bottom)
    parts.append(f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" stroke="#444"/>')
    for tick in x_ticks:
        x = to_x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 5:.1f}" stroke="#444"/>')
        parts.append(_text(x, bottom + 18, format_tick(tick, x_ticks), anchor="middle"))
    parts.append(_text((left + right) / 2, bottom + 40, x_label, anchor="middle"))
    vertical, horizontal = better_corner.split("-")
    corner_x = left + 8 if horizontal == "left" else right - 8
    corner_y = top + 16 if vertical == "top" else bottom - 8
    parts.append(
        _text(corner_x, corner_y, f"{corners[better_corner]} better", anchor="start" if horizontal == "left" else "end",
              extra=' fill="#2a7a2a" font-weight="600"')
    )  # fmt: skip
    anchors = [(to_x(point.x), to_y(point.y)) for point in points]
    labels = place_labels(anchors, [point.label for point in points], width - 4)
    for point, (x, y) in zip(points, anchors):
        if point.x_interval is not None:
            low, high = point.x_interval
            tooltip = f"{point.label}: {x_label} {interval_text(point.x_interval)}"
            parts.append(error_bar(to_x(low), y, to_x(high), y, tooltip))
        if point.y_interval is not None:
            low, high = point.y_interval
            tooltip = f"{point.label}: {y_label} {interval_text(point.y_interval)}"
            parts.append(error_bar(x, to_y(low), x, to_y(high), tooltip))
    for point, (x, y), (label_x, label_y, anchor) in zip(points, anchors, labels):
        tooltip = f"{point.label}: {x_label} {format_value(point.x)}, {y_label} {format_value(point.y)}"
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour(point.colour)}" stroke="#222" stroke-width="0.5">'
            f"<title>{escape(tooltip)}</title></circle>"
        )
        if abs(label_y - (y - 6)) > 1:  # moved off its point: a leader line shows whose label it is
            parts.append(
                f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{label_x:.1f}" y2="{label_y - 4:.1f}" stroke="#999" '
                'stroke-width="0.75"/>'
            )
        parts.append(_text(label_x, label_y, point.label, anchor=anchor))
    parts.append("</svg>")
    return "\n".join(parts)
