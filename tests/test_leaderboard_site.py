"""The leaderboard's static page: structure, escaping, self-containment, plots, and a headless-Chromium check.

The static tests parse the page with ``html.parser`` into a small tree; the
browser test opens it from a ``file://`` URL in headless Chromium through
Selenium (Debian packages ``chromium`` and ``chromium-driver``).  Without them
the browser test is skipped, unless ``EMOGEN_BENCH_REQUIRE_BROWSER=1`` (set by
CI), where it fails.  Its screenshot goes to ``$EMOGEN_BENCH_SCREENSHOT_DIR``
when that is set.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from browser import screenshot, severe, start_chromium
from leaderboard_fixtures import entry_document

from emogen_bench.errors import UsageError
from emogen_bench.task import EMOTION_NAMES
from leaderboard.plots import Point, Series, bar_chart, nice_ticks, place_labels, scatter_plot
from leaderboard.site import (
    dom_ids,
    format_interval,
    format_number,
    order_entries,
    render_page,
    render_site,
)

HOSTILE = "<script>alert(1)</script>"
VOID = {"meta", "link", "br", "img", "input", "hr", "area", "base", "col", "embed", "source", "track", "wbr"}


def documents() -> list[dict[str, Any]]:
    """Entries of both protocols: evaluated and published ones, a hostile name, a missing FID, a user study."""
    hostile = entry_document(HOSTILE, status="published", protocol="emogen-paper-code", base=0.75, slug="hostile")
    del hostile["metrics"]["overall"]["fid"]
    new = entry_document("New Method", status="self-reported", protocol="emogen-paper-code", base=1.1)
    new["code"] = "https://example.org/code"
    new["user_study"] = {
        "versus": "EmoGen",
        "fidelity": {"mean": 55.0, "sd": 3.2},
        "emotion": {"mean": 61.0, "sd": 4.0},
        "diversity": {"mean": 48.5, "sd": 2.0},
    }
    return [
        entry_document("Method A", status="verified", base=1.0),
        entry_document("Method B", status="self-reported", base=1.2),
        entry_document("Method C", status="self-reported", base=0.9),
        entry_document("EmoGen", status="published", protocol="emogen-paper-code", base=0.85, slug="emogen"),
        hostile,
        new,
        entry_document("SD 1.5", status="published", protocol="emogen-paper-code", base=0.7, slug="sd-1-5"),
    ]


# --- a small tree from html.parser ------------------------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str, predicate: Callable[[Node], bool] = lambda node: True) -> list[Node]:
        return [node for node in self.iter() if node.tag == tag and predicate(node)]

    def text(self) -> str:
        return "".join(child if isinstance(child, str) else child.text() for child in self.children)

    def has_class(self, name: str) -> bool:
        return name in self.attrs.get("class", "").split()


class TreeBuilder(HTMLParser):
    """Builds a :class:`Node` tree; every non-void element must be closed in order (else ``errors``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.errors: list[str] = []
        self.doctype: str | None = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if self.stack[-1].tag != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1].tag}>")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.errors == []
    assert [node.tag for node in builder.stack] == ["#document"], "unclosed elements"
    assert builder.doctype is not None and builder.doctype.lower() == "doctype html"
    return builder.root


@pytest.fixture(scope="module")
def page() -> str:
    return render_page(documents(), generated="2026-11-27")


@pytest.fixture(scope="module")
def tree(page: str) -> Node:
    return parse(page)


def board(tree: Node, protocol: str) -> Node:
    (table,) = tree.find_all("table", lambda n: n.has_class("board") and n.attrs.get("data-protocol") == protocol)
    return table


# --- static checks ----------------------------------------------------------------------------------------------


def test_page_is_well_formed_with_unique_ids(tree: Node) -> None:
    ids = [node.attrs["id"] for node in tree.iter() if "id" in node.attrs]
    assert len(ids) == len(set(ids))
    assert len(tree.find_all("html")) == len(tree.find_all("body")) == 1
    for button in tree.find_all("button", lambda n: n.has_class("toggle")):
        assert button.attrs["aria-controls"] in ids


def test_one_table_per_protocol_never_mixed(tree: Node) -> None:
    tables = tree.find_all("table", lambda n: n.has_class("board"))
    assert sorted(t.attrs["data-protocol"] for t in tables) == ["eicg-v3", "emogen-paper-code"]
    for table in tables:
        protocol = table.attrs["data-protocol"]
        rows = table.find_all("tr", lambda n: n.has_class("entry"))
        expected = {d["id"] for d in documents() if d["protocol"] == protocol}
        assert {row.attrs["data-entry"] for row in rows} == expected
        assert len(table.find_all("tr", lambda n: n.has_class("details"))) == len(rows)
        section = next(s for s in tree.find_all("section") if s.attrs.get("data-protocol") == protocol)
        assert "Not comparable with other protocols" in section.text()


def test_every_method_present_with_status_and_provenance_cells(tree: Node) -> None:
    for document in documents():
        table = board(tree, document["protocol"])
        (row,) = table.find_all("tr", lambda n, d=document: n.attrs.get("data-entry") == d["id"])
        assert row.find_all("th")[0].text().startswith(document["method"])
        cells = [cell.text() for cell in row.children if isinstance(cell, Node)]
        assert document["status"] in cells
        published = document["status"] == "published"
        assert (
            "not checkednumbers copied from the paper" if published else "officialpinned, checked by sha256"
        ) in cells
        assert (
            "published 2024" if published else "results 2026-11-27"
        ) + f"added to the leaderboard {document['added']}" in cells
        assert (
            "the paper's own code" if published else "emogen-bench " + document["provenance"]["benchmark_version"]
        ) in cells


def test_headers_mark_better_direction_and_initial_sort(tree: Node) -> None:
    table = board(tree, "eicg-v3")
    headers = {th.attrs["data-key"]: th for th in table.find_all("th", lambda n: "data-key" in n.attrs)}
    assert list(headers) == ["fid", "kid", "lpips", "emo_a", "emo_a_resnet50", "sem_c", "sem_d"]
    assert "↓" in headers["fid"].text() and headers["fid"].attrs["data-better"] == "lower"
    assert "↑" in headers["emo_a"].text() and headers["emo_a"].attrs["data-better"] == "higher"
    assert headers["emo_a"].attrs["aria-sort"] == "descending" and headers["fid"].attrs["aria-sort"] == "none"
    assert all(th.find_all("button") for th in headers.values())
    order = [row.attrs["data-entry"] for row in table.find_all("tr", lambda n: n.has_class("entry"))]
    assert order == ["eicg-v3/method-b", "eicg-v3/method-a", "eicg-v3/method-c"]  # Emo-A 0.84, 0.70, 0.63


def test_values_show_percent_and_confidence_intervals(tree: Node) -> None:
    table = board(tree, "eicg-v3")
    (row,) = table.find_all("tr", lambda n: n.attrs.get("data-entry") == "eicg-v3/method-a")
    cells = [c for c in row.children if isinstance(c, Node)]
    emo_a = cells[3 + 3]  # rank, method, status, fid, kid, lpips, emo_a
    assert emo_a.attrs["data-sort-value"] == repr(0.7)
    assert emo_a.text().startswith("70.00%")
    (ci,) = emo_a.find_all("span", lambda n: n.has_class("ci"))
    assert ci.text() == "66.50–73.50%"  # 0.7 * 0.95 and 0.7 * 1.05, in percent


def test_hostile_method_name_is_escaped(page: str, tree: Node) -> None:
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(tree.find_all("script")) == 1
    assert "alert(" not in tree.find_all("script")[0].text()
    assert any(th.text() == HOSTILE for th in board(tree, "emogen-paper-code").find_all("th"))


def test_unsafe_links_are_not_rendered() -> None:
    document = entry_document("Sneaky", status="published", protocol="emogen-paper-code")
    document["paper"] = "javascript:alert(1)"
    document["citation"]["url"] = 'https://example.org/" onmouseover="alert(1)'
    page = render_page([document])
    assert "javascript:" not in page
    assert 'onmouseover="' not in page


def test_page_loads_nothing_from_outside(page: str, tree: Node) -> None:
    external = re.compile(r"^\s*(https?:|//)", re.IGNORECASE)
    for node in tree.iter():
        if "src" in node.attrs:
            assert not external.match(node.attrs["src"]), node.attrs
        if node.tag == "link":
            assert not external.match(node.attrs.get("href", "")), node.attrs
    (style,) = tree.find_all("style")
    assert "url(" not in style.text() and "@import" not in style.text()
    assert "fetch(" not in page and "XMLHttpRequest" not in page


def test_content_security_policy_allows_exactly_the_inline_style_and_script(tree: Node) -> None:
    (meta,) = tree.find_all("meta", lambda n: n.attrs.get("http-equiv") == "Content-Security-Policy")
    policy = meta.attrs["content"]
    assert "default-src 'none'" in policy

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert f"script-src {digest(tree.find_all('script')[0].text())}" in policy
    assert f"style-src {digest(tree.find_all('style')[0].text())}" in policy


def test_readable_without_javascript(tree: Node) -> None:
    details = tree.find_all("tr", lambda n: n.has_class("details"))
    assert details and all("hidden" not in row.attrs for row in details)
    assert tree.find_all("html")[0].attrs["class"] == "no-js"


def test_drill_down_contents(tree: Node) -> None:
    def details_of(entry_id: str) -> Node:
        table = board(tree, entry_id.split("/")[0])
        (row,) = table.find_all("tr", lambda n: n.attrs.get("data-entry") == entry_id)
        (target,) = tree.find_all("tr", lambda n: n.attrs.get("id") == row.attrs["id"] + "-details")
        return target

    evaluated = details_of("emogen-paper-code/new-method")
    (per_emotion,) = evaluated.find_all("table", lambda n: n.has_class("per-emotion"))
    body_rows = per_emotion.find_all("tbody")[0].find_all("tr")
    assert [row.find_all("th")[0].text() for row in body_rows] == list(EMOTION_NAMES)
    text = evaluated.text()
    assert "sha256:" + "ab" * 32 in text and "Preference against EmoGen" in text and "61.0%" in text
    assert "c" * 64 in text and "3.11.7" in text

    published = details_of("emogen-paper-code/hostile")
    assert not published.find_all("table", lambda n: n.has_class("per-emotion"))
    assert "overall numbers only" in published.text()
    assert "Table 1, p. 6" in published.text() and "Example et al." in published.text()


def test_plots_are_inline_svg_with_titles(tree: Node) -> None:
    for protocol in ("eicg-v3", "emogen-paper-code"):
        (section,) = tree.find_all("section", lambda n, p=protocol: n.attrs.get("data-protocol") == p)
        svgs = section.find_all("svg")
        ids = {svg.attrs["id"] for svg in svgs}
        slug = protocol
        assert {f"plot-{slug}-emo-a", f"plot-{slug}-lpips", f"plot-{slug}-sem_d", f"plot-{slug}-fid-emo-a"} == ids
        for svg in svgs:
            first = next(child for child in svg.children if isinstance(child, Node))
            assert first.tag == "title" and first.text().strip()
            assert svg.attrs["role"] == "img"
            assert svg.find_all("text")


def test_per_emotion_plot_replaced_by_a_note_without_data() -> None:
    only_published = [entry_document("EmoGen", status="published", protocol="emogen-paper-code", slug="emogen")]
    tree = parse(render_page(only_published))
    ids = {svg.attrs["id"] for svg in tree.find_all("svg")}
    assert "plot-emogen-paper-code-emo-a" not in ids
    assert "plot-emogen-paper-code-fid-emo-a" in ids
    notes = [p.text() for p in tree.find_all("p", lambda n: n.has_class("no-plot"))]
    assert any("No per-emotion Emo-A plot" in note for note in notes)
    (lpips,) = tree.find_all("svg", lambda n: n.attrs["id"] == "plot-emogen-paper-code-lpips")
    value = only_published[0]["metrics"]["overall"]["lpips"]["value"]
    titles = [title.text() for rect in lpips.find_all("rect") for title in rect.find_all("title")]
    assert titles == [f"EmoGen: {value:.4g}"]  # one bar per method when no entry has per-emotion values


def test_scatter_positions_follow_the_data() -> None:
    points = [Point("a", 30.0, 70.0), Point("b", 45.0, 55.0, 1), Point("c", 38.0, 80.0, 2)]
    svg = scatter_plot("s", "t", "d", points, x_label="FID", y_label="Emo-A", hint="h", better_corner="top-left")
    circles = parse("<!DOCTYPE html>" + svg).find_all("circle")
    xs = [float(c.attrs["cx"]) for c in circles]
    ys = [float(c.attrs["cy"]) for c in circles]
    # an affine map: x increases to the right, y upwards (SVG y downwards); same ratios as the data
    assert (xs[1] - xs[0]) / (xs[2] - xs[0]) == pytest.approx((45 - 30) / (38 - 30), rel=1e-3)
    assert (ys[1] - ys[0]) / (ys[2] - ys[0]) == pytest.approx((55 - 70) / (80 - 70), rel=1e-3)
    assert xs[1] > xs[2] > xs[0] and ys[2] < ys[0] < ys[1]


def test_point_labels_do_not_overlap() -> None:
    anchors = [(100.0, 100.0), (102.0, 101.0), (101.0, 99.0), (300.0, 50.0), (590.0, 60.0)]
    labels = ["Stable Diffusion", "DreamBooth", "EmoGen", "far", "near the edge"]
    placed = place_labels(anchors, labels, right_edge=600.0)
    boxes = []
    for (x, baseline, anchor), label in zip(placed, labels):
        width = 7.0 * len(label)
        x0 = x if anchor == "start" else x - width
        boxes.append((x0, baseline - 11, x0 + width, baseline + 3))
    for i, a in enumerate(boxes):
        assert a[2] <= 600.0
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or a[0] >= b[2] or a[3] <= b[1] or a[1] >= b[3], (a, b)
    assert placed[4][2] == "end"  # no room on the right: the label goes to the left of its point


def test_bar_heights_are_proportional_and_missing_values_marked() -> None:
    svg = bar_chart("b", "t", "d", ["x", "y"], [Series("m", (2.0, None)), Series("n", (1.0, 0.5), 1)], y_label="v")
    rects = [r for r in parse("<!DOCTYPE html>" + svg).find_all("rect") if r.find_all("title")]
    heights = {r.find_all("title")[0].text(): float(r.attrs["height"]) for r in rects}
    assert heights["m, x: 2"] == pytest.approx(2 * heights["n, x: 1"], rel=1e-3)
    assert heights["n, y: 0.5"] == pytest.approx(heights["n, x: 1"] / 2, rel=1e-2)
    assert "m, y: not reported" in heights


def test_output_is_deterministic() -> None:
    assert render_page(documents()) == render_page(list(reversed(documents())))
    assert render_page(documents(), generated="2026-11-27") == render_page(documents(), generated="2026-11-27")
    assert "Generated (build date not recorded)" in render_page(documents())
    assert "Generated 2026-11-27" in render_page(documents(), generated="2026-11-27")


def test_render_site_writes_index_and_protects_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "site"
    path = render_site(documents(), out, generated="2026-11-27", commit="unknown")
    assert path == out / "index.html"
    assert path.read_text(encoding="utf-8") == render_page(documents(), generated="2026-11-27", commit="unknown")
    assert render_site(documents()[:2], out) == path  # our own page is regenerated
    assert "Method C" not in path.read_text(encoding="utf-8")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "index.html").write_text("<p>my page</p>")
    with pytest.raises(UsageError, match="not written by"):
        render_site(documents(), foreign)
    assert (foreign / "index.html").read_text() == "<p>my page</p>"


def test_small_helpers() -> None:
    assert format_number("emo_a", 0.70774) == "70.77%"
    assert format_number("fid", 41.234) == "41.23" and format_number("sem_d", 0.02512) == "0.0251"
    assert format_interval("fid", None) == "" and format_interval("lpips", [0.5, 0.6]) == "0.5000–0.6000"
    assert nice_ticks(0.0, 0.84) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(28.0, 34.0) == [28.0, 30.0, 32.0, 34.0]
    ids = dom_ids(["a/b c", "a/b-c", "<x>"])
    assert len(set(ids)) == 3 and all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)
    docs = documents()
    assert [d["method"] for d in order_entries(docs[3:])] == ["New Method", "EmoGen", HOSTILE, "SD 1.5"]


# --- the page in headless Chromium ------------------------------------------------------------------------------


def test_page_in_headless_chromium(tmp_path: Path) -> None:
    driver = start_chromium(tmp_path / "profile", window=(1500, 1000))
    from selenium.webdriver.common.by import By

    try:
        docs = documents()
        index = render_site(docs, tmp_path / "site", generated="2026-11-27")
        driver.get(index.as_uri())
        assert driver.title == "emogen-bench leaderboard"
        assert severe(driver.get_log("browser")) == []
        assert driver.execute_script("return document.documentElement.className") == "js"

        table = driver.find_element(By.CSS_SELECTOR, 'table.board[data-protocol="emogen-paper-code"]')

        def order() -> list[str]:
            return driver.execute_script(
                "return Array.from(arguments[0].tBodies[0].rows)"
                ".filter(function (r) { return r.classList.contains('entry'); })"
                ".map(function (r) { return r.getAttribute('data-entry'); });",
                table,
            )

        def details_follow_entries() -> bool:
            return driver.execute_script(
                "return Array.from(arguments[0].querySelectorAll('tr.entry')).every(function (r) {"
                " var next = r.nextElementSibling; return next && next.id === r.id + '-details'; });",
                table,
            )

        paper = [d for d in docs if d["protocol"] == "emogen-paper-code"]
        fid = {d["id"]: d["metrics"]["overall"].get("fid", {}).get("value") for d in paper}
        with_fid = [i for i in fid if fid[i] is not None]
        without_fid = [i for i in fid if fid[i] is None]
        ascending = sorted(with_fid, key=lambda i: fid[i]) + without_fid
        descending = sorted(with_fid, key=lambda i: -fid[i]) + without_fid
        initial = order()
        assert initial != ascending

        header = table.find_element(By.CSS_SELECTOR, 'thead th[data-key="fid"]')
        header.find_element(By.TAG_NAME, "button").click()
        assert order() == ascending  # FID: lower is better, so the first click sorts ascending; no value last
        assert header.get_attribute("aria-sort") == "ascending"
        assert [fid[i] for i in order()[:-1]] == sorted(fid[i] for i in with_fid)
        header.find_element(By.TAG_NAME, "button").click()
        assert order() == descending
        assert header.get_attribute("aria-sort") == "descending"
        assert table.find_element(By.CSS_SELECTOR, 'thead th[data-key="emo_a"]').get_attribute("aria-sort") == "none"
        assert details_follow_entries()

        row = table.find_element(By.CSS_SELECTOR, 'tr.entry[data-entry="emogen-paper-code/new-method"]')
        toggle = row.find_element(By.CSS_SELECTOR, "button.toggle")
        details = driver.find_element(By.ID, toggle.get_attribute("aria-controls"))
        assert toggle.get_attribute("aria-expanded") == "false" and not details.is_displayed()
        toggle.click()
        assert toggle.get_attribute("aria-expanded") == "true" and details.is_displayed()
        per_emotion = details.find_element(By.CSS_SELECTOR, "table.per-emotion")
        assert per_emotion.is_displayed()
        names = [th.text for th in per_emotion.find_elements(By.CSS_SELECTOR, ":scope > tbody > tr > th")]
        assert names == list(EMOTION_NAMES)

        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1500, min(int(height), 8000))
        driver.execute_script("window.scrollTo(0, 0);")
        screenshot(driver, tmp_path, "leaderboard.png")

        toggle.click()
        assert not details.is_displayed()
        assert severe(driver.get_log("browser")) == []
    finally:
        driver.quit()


def test_ties_are_ordered_as_in_the_markdown_table() -> None:
    """Equal Emo-A: the page's first order and the Markdown ranking list the methods the same way."""
    from leaderboard.entries import Entry
    from leaderboard.tables import rank

    documents = [entry_document(name, base=1.0) for name in ("Beta", "alpha", "Gamma")]
    page = [document["method"] for document in order_entries(documents)]
    table = [ranked.entry.method for ranked in rank([Entry(document) for document in documents])]
    assert page == table == ["alpha", "Beta", "Gamma"]
