"""Issue 13, item 7: the leaderboard page's defects, each checked statically and in headless Chromium.

The static tests parse the page with the tree builder of ``test_leaderboard_site``.
The browser test opens the page at 1400 px and at 390 px (a phone) and checks
through the DOM that the rank column is there and visible, that the method
column is ``position: sticky`` and stays in view when the table's own box is
scrolled sideways, that the table caption is not cut off and that the charts'
SVG holds error bars; it saves a screenshot at each width (under
``$EMOGEN_BENCH_SCREENSHOT_DIR`` when set, else the test's temporary folder)
and checks that each is a PNG of that width.  Skipped without chromium,
chromedriver and selenium unless ``EMOGEN_BENCH_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import re
import subprocess
from html import escape
from pathlib import Path
from typing import Any

import pytest
import tomllib
from browser import png_width, screenshot, severe, start_chromium
from leaderboard_fixtures import entry_document
from test_leaderboard_site import HOSTILE, Node, board, parse

from emogen_bench import __version__
from leaderboard.entries import Entry
from leaderboard.plots import Bar, Point, Series, bar_chart, method_bars, scatter_plot
from leaderboard.published import SUPPLEMENT_CAPTION_NOTE, published_documents
from leaderboard.site import (
    PROJECT_URL,
    PULL_REQUEST_URL,
    git_commit,
    publication_year,
    render_page,
    render_site,
)
from leaderboard.tables import rank

REPOSITORY = Path(__file__).resolve().parent.parent


def page_documents() -> list[dict[str, Any]]:
    """The real published rows (paper-code protocol) and evaluated eicg-v3 entries, one with unpinned weights."""
    unpinned = entry_document("Unpinned Method", status="self-reported", base=0.8)
    unpinned["provenance"]["unpinned_artifacts"] = ["inception-fid"]
    long_name = entry_document("A Method With A Rather Long Name For Phones", status="self-reported", base=1.1)
    return [
        entry_document("Method A", status="verified", base=1.0),
        entry_document("Method B", status="self-reported", base=1.2),
        unpinned,
        long_name,
        *published_documents(),
    ]


@pytest.fixture(scope="module")
def tree() -> Node:
    return parse(render_page(page_documents(), "2026-12-01", commit="0123456789abcdef" * 2 + "01234567"))


def entry_rows(table: Node) -> list[Node]:
    return table.find_all("tr", lambda n: n.has_class("entry"))


def cells(row: Node) -> list[Node]:
    return [child for child in row.children if isinstance(child, Node)]


def details_of(tree: Node, entry_id: str) -> Node:
    (row,) = tree.find_all("tr", lambda n: n.attrs.get("data-entry") == entry_id)
    (target,) = tree.find_all("tr", lambda n: n.attrs.get("id") == row.attrs["id"] + "-details")
    return target


# --- rank column ------------------------------------------------------------------------------------------------


def test_rank_column_is_the_markdown_ranking(tree: Node) -> None:
    documents = page_documents()
    for protocol in ("eicg-v3", "emogen-paper-code"):
        table = board(tree, protocol)
        (header,) = table.find_all("th", lambda n: n.has_class("rank"))
        assert header.text().strip() == "# rank" and header.attrs["data-sort"] == "number"
        expected = rank([Entry(d) for d in documents if d["protocol"] == protocol])
        shown = [(row.attrs["data-entry"], cells(row)[0].text()) for row in entry_rows(table)]
        assert shown == [(r.entry.id, str(r.rank)) for r in expected]


def test_equal_values_share_a_rank_and_missing_ones_have_none() -> None:
    documents = [entry_document(name, base=1.0) for name in ("Beta", "alpha", "Gamma")]
    documents.append(entry_document("Delta", base=0.5))
    missing = entry_document("Eta", status="published", protocol="emogen-paper-code", slug="eta")
    del missing["metrics"]["overall"]["emo_a"]
    tree = parse(render_page([*documents, missing]))
    ranks = [cells(row)[0].text() for row in entry_rows(board(tree, "eicg-v3"))]
    assert ranks == ["1", "1", "1", "4"]
    (row,) = entry_rows(board(tree, "emogen-paper-code"))
    assert cells(row)[0].text() == "—" and cells(row)[0].attrs["data-sort-value"] == ""


# --- error bars -------------------------------------------------------------------------------------------------


def test_charts_draw_the_intervals_that_exist(tree: Node) -> None:
    (emo_a,) = tree.find_all("svg", lambda n: n.attrs.get("id") == "plot-eicg-v3-emo-a")
    bars = emo_a.find_all("g", lambda n: n.has_class("error-bar"))
    assert len(bars) == 4 * 8  # four evaluated entries, eight emotions, each value with its interval
    assert all(len(bar.find_all("line")) == 3 for bar in bars)  # the whisker and its two caps
    assert "95% CI" in bars[0].find_all("title")[0].text()
    for plot in ("lpips", "sem_d", "fid-emo-a"):
        (svg,) = tree.find_all("svg", lambda n, p=plot: n.attrs.get("id") == f"plot-eicg-v3-{p}")
        assert svg.find_all("g", lambda n: n.has_class("error-bar"))
    (scatter,) = tree.find_all("svg", lambda n: n.attrs.get("id") == "plot-emogen-paper-code-fid-emo-a")
    assert not scatter.find_all("g", lambda n: n.has_class("error-bar"))  # the paper gives no intervals


def _whisker(svg: str) -> list[float]:
    (group,) = parse("<!DOCTYPE html>" + svg).find_all("g", lambda n: n.has_class("error-bar"))
    first = group.find_all("line")[0].attrs
    return [float(first[name]) for name in ("x1", "y1", "x2", "y2")]


def test_error_bars_span_the_interval_on_the_axis() -> None:
    # y axis 0..1 (the interval's top sets it) over 220 px up from y=260: a whisker 0.5..1.0 runs from y=150 to 40
    svg = bar_chart("b", "t", "d", ["x"], [Series("m", (0.6,), 0, ((0.5, 1.0),))], y_label="v")
    x1, y1, x2, y2 = _whisker(svg)
    assert x1 == x2 and (y1, y2) == (pytest.approx(150.0), pytest.approx(40.0))
    svg = method_bars("m", "t", "d", [Bar("a", 0.6, 0, (0.5, 1.0)), Bar("b", 0.4, 1)], y_label="v")
    x1, y1, x2, y2 = _whisker(svg)
    assert x1 == x2 and (y1, y2) == (pytest.approx(150.0), pytest.approx(40.0))
    points = [Point("a", 30.0, 70.0, 0, (28.0, 32.0)), Point("b", 40.0, 60.0, 1)]
    groups = parse(
        "<!DOCTYPE html>"
        + scatter_plot("s", "t", "d", points, x_label="FID", y_label="Emo-A", hint="h", better_corner="top-left")
    ).find_all("g", lambda n: n.has_class("error-bar"))
    assert len(groups) == 1 and "FID 95% CI 28–32" in groups[0].text()
    with pytest.raises(ValueError, match="intervals"):
        bar_chart("b", "t", "d", ["x", "y"], [Series("m", (0.6, 0.5), 0, ((0.5, 0.7),))], y_label="v")


# --- caption, notes, dates, plain words ---------------------------------------------------------------------------


def test_caption_sits_outside_the_scroll_box(tree: Node) -> None:
    for protocol in ("eicg-v3", "emogen-paper-code"):
        (section,) = tree.find_all("section", lambda n, p=protocol: n.attrs.get("data-protocol") == p)
        children = [child for child in section.children if isinstance(child, Node)]
        captions = [i for i, node in enumerate(children) if node.has_class("table-caption")]
        wraps = [i for i, node in enumerate(children) if node.has_class("table-wrap")]
        assert len(captions) == 1 and wraps == [captions[0] + 1]
        table = board(tree, protocol)
        assert [child.tag for child in cells(table) if child.tag == "caption"] == []
        assert table.attrs["aria-labelledby"] == children[captions[0]].attrs["id"]


def test_a_note_shared_by_several_entries_is_shown_once(tree: Node) -> None:
    page = render_page(page_documents())
    assert page.count(escape(SUPPLEMENT_CAPTION_NOTE)) == 1  # six published rows carry it
    (shared,) = tree.find_all("div", lambda n: n.has_class("shared-notes"))
    (item,) = shared.find_all("li", lambda n: SUPPLEMENT_CAPTION_NOTE in n.text())
    with_note = [d for d in published_documents() if SUPPLEMENT_CAPTION_NOTE in (d["notes"] or "")]
    assert len(with_note) == 6
    assert all(d["method"] in item.text() for d in with_note)
    for document in with_note:
        (notes,) = details_of(tree, document["id"]).find_all("p", lambda n: n.has_class("notes"))
        assert f"#{item.attrs['id']}" in [a.attrs["href"] for a in notes.find_all("a")]
    (emogen,) = [d for d in with_note if d["method"] == "EmoGen"]
    assert "Also the supplement's 'Ours' row, same numbers." in details_of(tree, emogen["id"]).text()


def test_shared_notes_are_escaped() -> None:
    documents = [entry_document(name, base=b) for name, b in (("One", 1.0), ("Two", 0.9))]
    for document in documents:
        document["notes"] = f"Own words of {document['method']}. Beware {HOSTILE} shared."
    page = render_page(documents)
    assert HOSTILE not in page and page.count(escape(HOSTILE)) == 1


def test_dates_say_what_they_are(tree: Node) -> None:
    (emogen,) = [
        row for row in entry_rows(board(tree, "emogen-paper-code")) if row.attrs["data-entry"].endswith("/emogen")
    ]
    date = next(cell for cell in cells(emogen) if cell.has_class("date"))
    assert date.text() == "published 2024added to the leaderboard 2026-11-27"
    row = entry_rows(board(tree, "eicg-v3"))[0]
    assert next(cell for cell in cells(row) if cell.has_class("date")).text().startswith("results 2026-11-27")
    header = [th.text() for th in board(tree, "eicg-v3").find_all("thead")[0].find_all("th")]
    assert "Added" not in header and "Date" in header
    assert publication_year({"citation": {"reference": "A. Author, arXiv:2001.01234"}}) is None
    assert publication_year({"citation": {"reference": "A. Author, arXiv:2001.01234, ICCV 2021"}}) == "2021"


def test_cells_are_in_plain_words(tree: Node) -> None:
    page = render_page(page_documents())
    assert "protocol(s)" not in page and "12 entries under 2 protocols." in page
    assert "1 entry under 1 protocol." in render_page(page_documents()[:1])
    paper = entry_rows(board(tree, "emogen-paper-code"))[0]
    texts = [cell.text() for cell in cells(paper)]
    assert "not checkednumbers copied from the paper" in texts and "the paper's own code" in texts
    assert "paper" not in texts and "—" not in texts
    header = [th.text() for th in board(tree, "eicg-v3").find_all("thead")[0].find_all("th")]
    assert "Scored with" in header and "Benchmark" not in header
    evaluated = entry_rows(board(tree, "eicg-v3"))[0]
    assert "emogen-bench 0.1.0" in [cell.text() for cell in cells(evaluated)]


def test_unpinned_weights_are_marked(tree: Node) -> None:
    rows = {row.attrs["data-entry"]: row for row in entry_rows(board(tree, "eicg-v3"))}
    weights = {entry: cells(row)[3 + 7].text() for entry, row in rows.items()}
    assert weights["eicg-v3/unpinned-method"] == "unpinned weightsno pinned sha256 for inception-fid"
    assert weights["eicg-v3/method-a"] == "officialpinned, checked by sha256"
    assert "inception-fid" in details_of(tree, "eicg-v3/unpinned-method").text()
    plain = entry_document("Empty list", base=0.7)
    plain["provenance"]["unpinned_artifacts"] = []
    (row,) = entry_rows(board(parse(render_page([plain])), "eicg-v3"))
    assert cells(row)[3 + 7].text().startswith("official")


def test_hashes_are_shown_short_with_the_full_one_at_hand(tree: Node) -> None:
    details = details_of(tree, "eicg-v3/method-a")
    hashes = details.find_all("details", lambda n: n.has_class("hash"))
    assert len(hashes) == 4  # submission digest, two weights, the reference statistics
    summary = hashes[0].find_all("summary")[0]
    assert summary.text() == "sha256:abababababab…"
    assert summary.find_all("code")[0].attrs["title"] == "sha256:" + "ab" * 32
    assert hashes[0].find_all("code", lambda n: n.has_class("full-hash"))[0].text() == "sha256:" + "ab" * 32
    text = details.text()
    assert "1,000 for each of the 8 emotions" in text and "python 3.11.7; torch 2.14.1" in text

    def outside_hashes(node: Node) -> str:
        if node.has_class("hash"):
            return ""
        return "".join(child if isinstance(child, str) else outside_hashes(child) for child in node.children)

    assert not re.search(r"[0-9a-f]{32}", outside_hashes(details))


def test_an_empty_protocol_says_why_and_how_to_add_one() -> None:
    tree = parse(render_page(published_documents()))
    (section,) = tree.find_all("section", lambda n: n.attrs.get("data-protocol") == "eicg-v3")
    assert not section.find_all("table")
    (empty,) = section.find_all("p", lambda n: n.has_class("empty"))
    assert "No results under this protocol yet" in empty.text()
    assert "emogen-bench evaluate --protocol eicg-v3" in empty.text() and "leaderboard add" in empty.text()
    assert empty.find_all("a")[0].attrs["href"] == "#adding" and tree.find_all(
        "h2", lambda n: n.attrs.get("id") == "adding"
    )
    (nav,) = tree.find_all("nav")
    assert "(no entries yet)" in nav.text() and "(8 entries)" in nav.text()


# --- footer -------------------------------------------------------------------------------------------------------


def test_footer_names_build_date_version_and_commit(tree: Node) -> None:
    commit = "0123456789abcdef" * 2 + "01234567"
    (build,) = tree.find_all("p", lambda n: n.has_class("build"))
    assert build.text() == f"Generated 2026-12-01 by emogen-bench {__version__} from commit {commit[:12]}."
    assert build.find_all("code")[0].attrs["title"] == commit
    (bare,) = parse(render_page(page_documents())).find_all("p", lambda n: n.has_class("build"))
    assert bare.text() == f"Generated (build date not recorded) by emogen-bench {__version__} from commit unknown."


def test_pull_request_link_and_project_url_agree_with_pyproject(tree: Node) -> None:
    (footer,) = tree.find_all("footer")
    links = {a.text(): a.attrs["href"] for a in footer.find_all("a")}
    assert links["Open a pull request"] == PULL_REQUEST_URL and PULL_REQUEST_URL.startswith(PROJECT_URL + "/")
    urls = tomllib.loads((REPOSITORY / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    assert urls and all(url.startswith(PROJECT_URL + "/") or url == PROJECT_URL for url in urls.values())


def _git(folder: Path, *arguments: str) -> str:
    command = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org", *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def test_git_commit_is_read_safely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    _git(checkout, "init", "-q")
    (checkout / "site.py").write_text("# tracked\n")
    (checkout / "stray.py").write_text("# not tracked\n")
    _git(checkout, "add", "site.py")
    _git(checkout, "commit", "-q", "-m", "one")
    head = _git(checkout, "rev-parse", "HEAD")
    assert git_commit(checkout / "site.py") == head
    assert git_commit(checkout / "stray.py") == "unknown"  # e.g. a wheel installed in a venv inside a checkout
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "site.py").write_text("")
    assert git_commit(outside / "site.py") == "unknown"
    monkeypatch.setenv("GIT_DIR", str(checkout / ".git"))  # ignored: it would point git elsewhere
    assert git_commit(outside / "site.py") == "unknown"
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.setenv("PATH", str(outside))  # no git at all
    assert git_commit(checkout / "site.py") == "unknown"


def test_render_site_fills_in_date_and_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764547200")  # 2025-12-01T00:00:00Z
    text = render_site(page_documents(), tmp_path / "site").read_text(encoding="utf-8")
    (build,) = parse(text).find_all("p", lambda n: n.has_class("build"))
    assert build.text().startswith(f"Generated 2025-12-01 by emogen-bench {__version__} from commit ")
    expected = git_commit()
    assert expected == "unknown" or build.find_all("code")[0].attrs["title"] == expected


# --- in headless Chromium at two widths -------------------------------------------------------------------------

DOM_CHECKS = """
var width = document.documentElement.clientWidth;
function box(node) { var r = node.getBoundingClientRect(); return {left: r.left, right: r.right, width: r.width}; }
var out = {width: width, innerWidth: window.innerWidth, pageScroll: document.documentElement.scrollWidth, tables: []};
document.querySelectorAll("section.protocol").forEach(function (section) {
  var table = section.querySelector("table.board");
  if (!table) { return; }
  var wrap = table.parentNode;
  var caption = section.querySelector(".table-caption");
  var rankHead = table.querySelector("thead th.rank");
  var firstRow = table.querySelector("tbody tr.entry");
  var method = firstRow.querySelector("th.method");
  var rankCell = firstRow.querySelector("td.rank");
  var metric = firstRow.querySelector("td.num:not(.rank)");
  var before = {method: box(method), rank: box(rankCell), metric: box(metric)};
  wrap.scrollLeft = wrap.scrollWidth;
  var after = {method: box(method), rank: box(rankCell), metric: box(metric), wrap: box(wrap)};
  var row = {
    protocol: section.getAttribute("data-protocol"),
    caption: box(caption), captionScroll: caption.scrollWidth, captionClient: caption.clientWidth,
    rankHead: box(rankHead), rankText: rankCell.textContent, rankVisible: rankHead.offsetParent !== null,
    methodPosition: getComputedStyle(method).position,
    methodHeadPosition: getComputedStyle(table.querySelector("thead th.method")).position,
    rankPosition: getComputedStyle(rankCell).position,
    scrollable: wrap.scrollWidth > wrap.clientWidth, scrolled: wrap.scrollLeft,
    before: before, after: after,
    errorBars: section.querySelectorAll("svg.plot g.error-bar").length,
    drawnBars: Array.from(section.querySelectorAll("svg.plot g.error-bar line")).filter(function (line) {
      var b = line.getBBox(); return b.width > 0 || b.height > 0; }).length
  };
  wrap.scrollLeft = 0;
  out.tables.push(row);
});
return out;
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    driver = start_chromium(tmp_path_factory.mktemp("profile"), window=(1500, 1000))
    yield driver
    driver.quit()


@pytest.mark.parametrize("width", [1400, 390])
def test_page_at_desktop_and_phone_widths(browser: Any, tmp_path: Path, width: int) -> None:
    index = render_site(page_documents(), tmp_path / "site", generated="2026-12-01", commit="unknown")
    mobile = width < 600
    metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    browser.get(index.as_uri())
    assert severe(browser.get_log("browser")) == []
    state = browser.execute_script(DOM_CHECKS)
    assert state["innerWidth"] == width and state["pageScroll"] <= state["width"] <= width  # nothing sticks out
    assert [table["protocol"] for table in state["tables"]] == ["eicg-v3", "emogen-paper-code"]
    for table in state["tables"]:
        caption = table["caption"]
        assert caption["left"] >= 0 and caption["right"] <= state["width"], table  # the caption is not clipped
        assert table["captionScroll"] <= table["captionClient"]
        assert table["rankVisible"] and table["rankText"] == "1"
        assert 0 <= table["rankHead"]["left"] and table["rankHead"]["right"] <= width
        assert table["methodPosition"] == table["methodHeadPosition"] == table["rankPosition"] == "sticky"
        after = table["after"]
        for cell in ("method", "rank"):  # still in view after scrolling the table's box to its right end
            assert after["wrap"]["left"] - 1 <= after[cell]["left"] and after[cell]["right"] <= width, (cell, table)
        assert after["method"]["left"] >= after["rank"]["right"] - 1  # side by side, not on top of each other
        if mobile:
            assert table["scrollable"] and table["scrolled"] > 0, table  # the table scrolls inside its own box
            assert after["metric"]["left"] < table["before"]["metric"]["left"]
        assert table["errorBars"] == 0 if table["protocol"] == "emogen-paper-code" else table["errorBars"] > 0
        assert table["drawnBars"] == 3 * table["errorBars"]

    height = min(int(browser.execute_script("return document.documentElement.scrollHeight")), 6000)
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
    assert png_width(screenshot(browser, tmp_path, f"leaderboard-{width}.png")) == width
    browser.execute_script(
        "var wrap = document.querySelector('.table-wrap'); wrap.scrollLeft = wrap.scrollWidth; window.scrollTo(0, 0);"
    )
    assert png_width(screenshot(browser, tmp_path, f"leaderboard-{width}-table-scrolled.png")) == width
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert severe(browser.get_log("browser")) == []
