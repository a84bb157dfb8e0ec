"""Hostile text in entries never becomes HTML, a link, a table break or a spreadsheet formula in what the
leaderboard writes (leaderboard.md, leaderboard.csv), and numbers stay numbers."""

from __future__ import annotations

import csv
import io
import json
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from leaderboard_fixtures import entry_document

from emogen_bench.cli import main
from emogen_bench.errors import ExitCode
from emogen_bench.protocols import PAPER_CODE, PROTOCOLS
from leaderboard.entries import Entry, check_entry, store_entry
from leaderboard.escape import (
    FORMULA_STARTS,
    csv_cell,
    csv_row,
    http_url,
    markdown_autolink,
    markdown_link,
    markdown_row,
    markdown_text,
)
from leaderboard.tables import render_csv, render_markdown

SCRIPT = "<script>alert(1)</script>"
IMAGE = "<img src=x onerror=alert(1)>"
JS_LINK = "[x](javascript:alert(1))"


def _render_html(markdown: str) -> str:
    """The HTML a CommonMark renderer with GFM tables makes of ``markdown`` (the real thing, not a regex)."""
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").enable("table").render(markdown)


def _hostile_entries() -> list[Entry]:
    """A self-reported entry whose text fields are hostile, and a published one with a hostile citation."""
    evaluated = entry_document(f"Evil {SCRIPT}", slug="evil")
    evaluated["notes"] = f"{IMAGE} and {JS_LINK} | `code` \\| new\nline"
    evaluated["provenance"]["benchmark_version"] = "=HYPERLINK(\"http://evil.example\")"
    evaluated["metrics"]["overall"]["kid"]["value"] = -0.00012  # a real KID can be negative: a number, not text
    evaluated["metrics"]["overall"]["kid"]["ci95"] = [0.0, 0.0002]  # intervals are clipped to the domain
    published = entry_document("@SUM(A1)", status="published", protocol=PAPER_CODE, slug="sum")
    published["citation"]["reference"] = f"-2+3 {IMAGE}"
    published["citation"]["url"] = "https://example.org/a)](javascript:alert(1))"
    published["user_study"] = {
        "versus": f"+cmd {SCRIPT}",
        **{aspect: {"mean": 50.0, "sd": 1.0} for aspect in ("fidelity", "emotion", "diversity")},
    }
    return [check_entry(evaluated), check_entry(published)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- the functions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        (SCRIPT, "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("a | b", "a &#124; b"),
        ("A&B", "A&amp;B"),
        (JS_LINK, "\\[x\\](javascript:alert(1))"),
        ("`x` *y* _z_", "\\`x\\` \\*y\\* \\_z\\_"),
        ("back\\slash", "back\\\\slash"),
        ("two\nlines\r\tand tab", "two lines  and tab"),
        ("DB (5 images)", "DB (5 images)"),
    ],
)
def test_markdown_text_escapes_what_could_become_markup(text: str, escaped: str) -> None:
    assert markdown_text(text) == escaped


def test_escaped_text_renders_as_exactly_the_text_and_nothing_else() -> None:
    hostile = [SCRIPT, IMAGE, JS_LINK, "a | b", "`code`", "back\\slash | pipe", "![i](http://x/y.png)", "x\\",
               "&lt;b&gt;", "<javascript:alert(1)>"]  # fmt: skip
    html = _render_html("\n".join(["| a | b |", "|---|---|", *(markdown_row([text, "end"]) for text in hostile)]))
    assert "<script" not in html and "<img" not in html and "<a " not in html and "<code" not in html
    cells = [line.removeprefix("<td>").removesuffix("</td>") for line in html.splitlines() if line.startswith("<td>")]
    assert [unescape(cell) for cell in cells] == [value for text in hostile for value in (text, "end")]


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,<b>", "vbscript:x", "//example.org/x",
            "https://exa mple.org", "https://example.org/\x00", "ftp://example.org/x", "http://", None, 7],
)  # fmt: skip
def test_only_http_urls_become_links(url: Any) -> None:
    assert http_url(url) is None
    assert markdown_link("paper", url) == "paper"
    assert "](" not in markdown_autolink(url) and not markdown_autolink(url).startswith("<")


def test_an_http_url_is_a_link_that_cannot_end_early() -> None:
    link = markdown_link("p[a]per", "https://example.org/a)|b<c>\"d")
    assert link == "[p\\[a\\]per](https://example.org/a%29%7Cb%3Cc%3E%22d)"
    html = _render_html(f"| {link} |\n|---|\n")
    assert '<a href="https://example.org/a%29%7Cb%3Cc%3E%22d">p[a]per</a>' in html
    assert markdown_autolink("https://example.org/x>y") == "<https://example.org/x%3Ey>"


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+2", "'=1+2"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-inf", "'-inf"),
        ("plain", "plain"),
        ("", ""),
        ("-0.5", "-0.5"),
        ("+1e-3", "+1e-3"),
        (-0.5, -0.5),
        (8000, 8000),
        (None, None),
    ],
)
def test_csv_cells_get_the_owasp_prefix_only_when_text(cell: Any, written: Any) -> None:
    assert csv_cell(cell) == written
    assert csv_row([cell, "=x"]) == [written, "'=x"]


# --- what the leaderboard writes --------------------------------------------------------------------------------


def test_hostile_entries_leave_no_markup_in_the_markdown() -> None:
    markdown = render_markdown(_hostile_entries())
    for raw in (SCRIPT, IMAGE, JS_LINK):
        assert raw not in markdown
    assert "Evil &lt;script&gt;alert(1)&lt;/script&gt;" in markdown
    notes = "&lt;img src=x onerror=alert(1)&gt; and \\[x\\](javascript:alert(1)) &#124; \\`code\\` \\\\&#124; new line"
    assert f"- Evil &lt;script&gt;alert(1)&lt;/script&gt;: {notes}\n" in markdown
    assert "<https://example.org/a%29%5D%28javascript:alert%281%29%29>" in markdown
    html = _render_html(markdown)
    assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
    hrefs = [part.split('"', 1)[0] for part in html.split('href="')[1:]]
    assert hrefs and all(href.startswith("https://example.org/") for href in hrefs)
    # every table row still has as many cells as its header
    for table in html.split("<table>")[1:]:
        header = table.split("</thead>")[0].count("<th>")
        rows = table.split("<tbody>")[1].split("</tbody>")[0].split("</tr>")[:-1]
        assert all(row.count("<td>") == header for row in rows)


def test_hostile_entries_leave_no_formula_in_the_csv() -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(_hostile_entries()))))
    evil = [row for row in rows if row["id"] == "eicg-v3/evil"]
    published = [row for row in rows if row["id"] == f"{PAPER_CODE}/sum"]
    assert {row["benchmark_version"] for row in evil} == {"'=HYPERLINK(\"http://evil.example\")"}
    assert {row["method"] for row in published} == {"'@SUM(A1)"}
    assert {row["citation"] for row in published} == {f"'-2+3 {IMAGE}; Table 1, p. 6"}
    kid = next(row for row in evil if row["metric"] == "kid")
    assert (kid["value"], kid["ci95_low"], kid["ci95_high"]) == ("-0.00012", "0.0", "0.0002")
    risky = [value for row in rows for value in row.values() if value.startswith(FORMULA_STARTS)]
    assert risky and all(_is_number(value) for value in risky)  # only the negative numbers start with "-"


def test_build_writes_the_escaped_files(tmp_path: Path) -> None:
    entries, out = tmp_path / "entries", tmp_path / "site"
    for entry in _hostile_entries():
        store_entry(entry, entries)
    assert main(["leaderboard", "build", "--entries", str(entries), "--out", str(out)]) == ExitCode.OK
    markdown = (out / "leaderboard.md").read_text(encoding="utf-8")
    table = (out / "leaderboard.csv").read_text(encoding="utf-8")
    page = (out / "index.html").read_text(encoding="utf-8")
    assert SCRIPT not in markdown and IMAGE not in markdown and "&lt;script&gt;" in markdown
    assert ',"\'=HYPERLINK(' in table and ",'@SUM(A1)," in table and ",-0.00012," in table
    assert SCRIPT not in page and IMAGE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    stored = json.loads((entries / "eicg-v3" / "evil.json").read_text(encoding="utf-8"))
    assert stored["method"] == f"Evil {SCRIPT}"  # the entry keeps what its author wrote; only the output escapes


def test_the_regenerated_comparison_tables_are_escaped_too() -> None:
    import dataclasses

    from leaderboard.regenerate import load_plan
    from leaderboard.regenerate.comparison import ComparisonRow
    from leaderboard.regenerate.comparison import render_csv as comparison_csv
    from leaderboard.regenerate.comparison import render_markdown as comparison_markdown

    plan = load_plan(Path(__file__).resolve().parents[1] / "leaderboard" / "plans" / "smoke.toml")
    row = dataclasses.replace(plan.rows[0], label='=HYPERLINK("http://x")<script>alert(1)</script>|[x](javascript:y)')
    plan = dataclasses.replace(plan, title="<img src=x onerror=alert(1)>", tables={"main": "| injected |"})
    values = {key: 0.5 for key in PROTOCOLS[plan.protocol].metrics}
    rows = [ComparisonRow("main", row, values, values, None, None)]
    html = _render_html(comparison_markdown(plan, rows))
    assert "<script" not in html and "<img" not in html and "javascript:" not in html.replace("javascript:y", "")
    assert 'href="javascript' not in html
    lines = comparison_csv(plan, rows).splitlines()[1:]
    assert all(line.split(",")[3].startswith("\"'=") for line in lines), lines[0]
