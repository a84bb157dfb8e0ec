"""``emogen-bench report``: the static HTML page of one evaluation, its checks, and the page in headless Chromium.

The page is built from one real evaluation with the tiny models (``per_image_fixtures``).  The browser
test is skipped without chromium, chromedriver and selenium, unless ``EMOGEN_BENCH_REQUIRE_BROWSER=1``
(set by CI), which makes that a failure.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from browser import screenshot, severe, start_chromium
from per_image_fixtures import Evaluated, evaluate_tiny
from PIL import Image

from emogen_bench.cli import main
from emogen_bench.errors import InvalidInputError
from emogen_bench.per_image import read_per_image
from emogen_bench.report_page import GENERATOR, STYLE, THUMB_SIZE, make_thumbnail, render_page
from emogen_bench.results import read_results
from emogen_bench.task import EMOTION_NAMES


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    return evaluate_tiny(tmp_path_factory.mktemp("report"))


def _report(evaluated: Evaluated, out: Path, *extra: str) -> list[str]:
    return ["report", str(evaluated.results), "--out", str(out), *extra]


def _full(evaluated: Evaluated, out: Path, *extra: str) -> list[str]:
    return _report(evaluated, out, "--per-image", str(evaluated.per_image), "--submission", str(evaluated.submission),
                   *extra)  # fmt: skip


@pytest.fixture(scope="module")
def page(evaluated: Evaluated, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("page")
    assert main(_full(evaluated, out / "report", "--count", "1")) == 0
    return (out / "report" / "index.html").read_text(encoding="utf-8")


class _Page(HTMLParser):
    """The tags of a page with their attributes, the confusion tables' cells and the thumbnails' paths."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.confusion: dict[str, list[list[str]]] = {}
        self.extremes: dict[tuple[str, str], list[str]] = {}
        self._table: str | None = None
        self._block: tuple[str, str] | None = None
        self._in_code = False
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag == "table" and "confusion" in attributes.get("class", ""):
            self._table = attributes["data-metric"]
            self.confusion[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.confusion[self._table].append([])
        elif tag == "td" and self._table is not None:
            self._cell = []
        elif tag == "div" and "extremes" in attributes.get("class", ""):
            self._block = (attributes["data-metric"], attributes["data-emotion"])
            self.extremes[self._block] = []
        elif tag == "code" and self._block is not None:
            self._in_code = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "td" and self._cell is not None and self._table is not None:
            self.confusion[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "code":
            self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_code and self._block is not None:
            self.extremes[self._block].append(data)


def test_confusion_tables_are_the_results_matrices(evaluated: Evaluated, page: str) -> None:
    document = read_results(evaluated.results)
    parsed = _Page(page)
    assert set(parsed.confusion) == {"emo_a", "emo_a_resnet50"}
    for key, rows in parsed.confusion.items():
        matrix = document["metrics"]["overall"][key]["confusion"]
        cells = [row for row in rows if row]
        assert [[int(c) for c in row[:8]] for row in cells] == [r for r in matrix if sum(r)]
        assert [int(row[8]) for row in cells] == [sum(r) for r in matrix if sum(r)]
        accuracy = [f"{r[i] / sum(r) * 100:.1f}%" for i, r in enumerate(matrix) if sum(r)]
        assert [row[9] for row in cells] == accuracy


def test_bars_have_an_error_bar_for_each_interval(evaluated: Evaluated, page: str) -> None:
    per_emotion = read_results(evaluated.results)["metrics"]["per_emotion"]
    charts = dict(re.findall(r'<svg class="bars" data-metric="([a-z0-9_]+)"(.*?)</svg>', page, flags=re.S))
    assert set(charts) == set(evaluated.result.overall)
    for key, svg in charts.items():
        intervals = [values[key]["ci95"] for values in per_emotion.values()]
        assert svg.count('<rect class="bar"') == len(intervals) == len(EMOTION_NAMES)
        assert svg.count('<g class="errorbar">') == sum(ci is not None for ci in intervals) > 0
        assert svg.count('class="overall"') == 1


def test_thumbnails_are_each_classifiers_lowest_and_highest_images(evaluated: Evaluated, page: str) -> None:
    rows = read_per_image(evaluated.per_image)
    parsed = _Page(page)
    for key in ("emo_a", "emo_a_resnet50", "sem_c"):
        for emotion in EMOTION_NAMES:

            def scored(row: dict[str, Any], key: str = key) -> float:
                if key == "sem_c":
                    return max(row["sem_c_imagenet_prob"], row["sem_c_places365_prob"])
                return row[f"{key}_target_prob"]

            mine = sorted((r for r in rows if r["emotion"] == emotion), key=lambda r: (scored(r), r["path"]))
            assert parsed.extremes[(key, emotion)] == [mine[0]["path"], mine[-1]["path"]]
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    assert len(images) == 2 * 3 * len(EMOTION_NAMES)
    by_path = {row["path"]: row for row in rows}
    for attrs in images:
        prefix = "data:image/jpeg;base64,"
        assert attrs["src"].startswith(prefix)
        data = base64.b64decode(attrs["src"][len(prefix) :])
        with Image.open(io.BytesIO(data)) as thumbnail:
            assert thumbnail.format == "JPEG" and max(thumbnail.size) == THUMB_SIZE
        source = evaluated.submission / attrs["alt"]
        assert hashlib.sha256(source.read_bytes()).hexdigest() == by_path[attrs["alt"]]["sha256"]


def test_the_page_loads_nothing_and_allows_only_its_own_style(page: str) -> None:
    parsed = _Page(page)
    csp = next(a["content"] for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    digest = base64.b64encode(hashlib.sha256(f"\n{STYLE}\n".encode()).digest()).decode()
    assert csp == f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; base-uri 'none'; form-action 'none'"
    assert f"<style>\n{STYLE}\n</style>" in page and page.count("<style>") == 1
    assert "<script" not in page and not any("style" in attrs for _, attrs in parsed.tags)
    links = [attrs[name] for _, attrs in parsed.tags for name in ("src", "href") if name in attrs]
    assert links and all(link.startswith("data:") for link in links)
    assert f'<meta name="generator" content="{GENERATOR}">' in page


def test_provenance_names_protocol_digest_and_each_weight(evaluated: Evaluated, page: str) -> None:
    document = read_results(evaluated.results)
    assert f"<code>{document['protocol']}</code> version {document['protocol_version']}" in page
    assert f"<code>{document['submission']['digest']}</code>" in page
    assert "NOT the official weights" in page and "SMOKE RUN" in page
    for name, artifact in document["artifacts"].items():
        assert f'<th scope="row">{name}</th><td><code>{artifact["digest"]}</code></td>' in page


HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_every_string_from_the_inputs_is_escaped(evaluated: Evaluated) -> None:
    document = json.loads(evaluated.results.read_text())
    document["submission"]["metadata"]["method"] = HOSTILE
    document["submission"]["path"] = HOSTILE
    document["run"]["label"] = HOSTILE
    document["artifacts"][HOSTILE] = {"digest": HOSTILE, "official": False, "source": HOSTILE}
    document["not_computed"] = {"fid": HOSTILE}
    rows = read_per_image(evaluated.per_image)
    rows[0] = {**rows[0], "path": HOSTILE}
    text = render_page(document, rows=rows, sources={"Results file": HOSTILE})
    assert "<script>" not in text and "<img src=x" not in text
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6


def test_without_per_image_the_page_has_the_matrices_and_bars_but_no_images(
    evaluated: Evaluated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_report(evaluated, tmp_path / "r")) == 0
    assert capsys.readouterr().out == f"report: {tmp_path / 'r' / 'index.html'}\n"
    text = (tmp_path / "r" / "index.html").read_text()
    assert text.count('<table class="confusion"') == 2 and '<svg class="bars"' in text
    assert 'id="images"' not in text and "<img" not in text


def test_per_image_rows_only_show_paths_without_the_submission(evaluated: Evaluated, tmp_path: Path) -> None:
    assert main(_report(evaluated, tmp_path / "r", "--per-image", str(evaluated.per_image))) == 0
    text = (tmp_path / "r" / "index.html").read_text()
    assert 'id="images"' in text and "<img" not in text and "Give --submission to see the images." in text


# --- inputs that do not belong together ------------------------------------------------------------------------


def test_a_per_image_file_of_another_evaluation_is_refused(
    evaluated: Evaluated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = evaluated.per_image.read_text().splitlines(keepends=True)
    fields = lines[1].split(",")
    fields[3] = "fear" if fields[3] != "fear" else "awe"  # emo_a_predicted of the first image
    edited = tmp_path / "edited.csv"
    edited.write_text(lines[0] + ",".join(fields) + "".join(lines[2:]))
    assert main(_report(evaluated, tmp_path / "r", "--per-image", str(edited))) == 1
    err = capsys.readouterr().err
    assert f"{edited} does not belong to {evaluated.results}: its Emo-A (CLIP head) predictions give another " in err
    shorter = tmp_path / "shorter.csv"
    shorter.write_text("".join(lines[:-1]))
    assert main(_report(evaluated, tmp_path / "r", "--per-image", str(shorter))) == 1
    assert f"{shorter} does not belong to {evaluated.results}: 1 image(s) differ from its manifest" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "r").exists()


def test_a_changed_submission_image_is_refused_by_name(
    evaluated: Evaluated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "submission"
    shutil.copytree(evaluated.submission, copy)
    changed = copy / "awe" / "0001.png"
    Image.new("RGB", (256, 256), "red").save(changed)
    args = _report(evaluated, tmp_path / "r", "--per-image", str(evaluated.per_image), "--submission", str(copy))
    assert main(args) == 1
    assert f"--submission {copy}: {changed} is not the image that was evaluated" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_an_image_path_that_leaves_the_submission_is_refused(evaluated: Evaluated, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    sha256 = hashlib.sha256(secret.read_bytes()).hexdigest()
    copy = tmp_path / "submission"
    shutil.copytree(evaluated.submission, copy)
    with pytest.raises(InvalidInputError, match=r"'\.\./secret\.png' is not a path inside a submission"):
        make_thumbnail(copy, {"path": "../secret.png", "sha256": sha256})
    (copy / "awe" / "link.png").symlink_to(secret)
    with pytest.raises(InvalidInputError, match=r"link\.png leads outside the submission"):
        make_thumbnail(copy, {"path": "awe/link.png", "sha256": sha256})


def test_a_damaged_results_document_is_named_with_its_key(
    evaluated: Evaluated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(evaluated.results.read_text())
    document["metrics"]["per_emotion"]["awe"]["sem_c"]["ci95"] = ["low", 1]
    damaged = tmp_path / "results.json"
    damaged.write_text(json.dumps(document))
    assert main(["report", str(damaged), "--out", str(tmp_path / "r")]) == 1
    assert f"{damaged}: metrics.per_emotion.awe.sem_c has the interval ['low', 1]" in capsys.readouterr().err


# --- the output rule -------------------------------------------------------------------------------------------


def test_a_foreign_index_html_is_kept_and_the_own_page_replaced(
    evaluated: Evaluated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "index.html").write_text("<p>mine</p>")
    assert main(_report(evaluated, out)) == 2
    assert f"{out / 'index.html'} exists and was not written by '{GENERATOR}'" in capsys.readouterr().err
    assert (out / "index.html").read_text() == "<p>mine</p>"
    (out / "index.html").unlink()
    assert main(_report(evaluated, out)) == 0
    first = (out / "index.html").read_text()
    assert main(_report(evaluated, out, "--per-image", str(evaluated.per_image))) == 0
    assert (out / "index.html").read_text() != first and sorted(p.name for p in out.iterdir()) == ["index.html"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("out-is-a-file", "is not a folder; give the folder to write the report into"),
        ("out-inside-submission", "is inside the submission"),
        ("submission-without-rows", "--submission needs --per-image"),
        ("count-zero", "--count 0: give a number of images from 1 to 20"),
    ],
)
def test_usage_errors_write_nothing(
    evaluated: Evaluated, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    submission = tmp_path / "submission"
    shutil.copytree(evaluated.submission, submission)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    if case == "out-is-a-file":
        (tmp_path / "file").write_text("x")
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        args = _report(evaluated, tmp_path / "file")
    elif case == "out-inside-submission":
        args = _report(evaluated, submission / "report", "--per-image", str(evaluated.per_image),
                       "--submission", str(submission))  # fmt: skip
    elif case == "submission-without-rows":
        args = _report(evaluated, tmp_path / "r", "--submission", str(submission))
    else:
        args = _report(evaluated, tmp_path / "r", "--count", "0")
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# --- the page in headless Chromium -----------------------------------------------------------------------------


def test_report_in_headless_chromium_at_desktop_and_phone_widths(evaluated: Evaluated, tmp_path: Path) -> None:
    driver = start_chromium(tmp_path / "profile")
    from selenium.webdriver.common.by import By

    try:
        assert main(_full(evaluated, tmp_path / "report")) == 0
        index = tmp_path / "report" / "index.html"
        for width in (1400, 390):
            driver.set_window_size(width, 900)
            driver.get(index.as_uri())
            assert driver.title.startswith("emogen-bench report: ")
            assert severe(driver.get_log("browser")) == []  # a CSP violation is logged as SEVERE
            viewport = driver.execute_script("return document.documentElement.clientWidth")
            assert abs(viewport - width) <= 20
            assert len(driver.find_elements(By.CSS_SELECTOR, "table.confusion")) == 2
            assert len(driver.find_elements(By.CSS_SELECTOR, "svg.bars")) == len(evaluated.result.overall)
            assert len(driver.find_elements(By.CSS_SELECTOR, "svg.bars g.errorbar line")) > 0
            loaded = driver.execute_script(
                "return Array.from(document.images).map(function (i) { return i.complete && i.naturalWidth; });"
            )
            assert loaded and all(w == THUMB_SIZE or 0 < w <= THUMB_SIZE for w in loaded)
            overflow = driver.execute_script(
                "var d = document.documentElement; return [d.scrollWidth, d.clientWidth, document.body.scrollWidth];"
            )
            assert overflow[0] <= overflow[1] and overflow[2] <= overflow[1], overflow
            unscrolled = driver.execute_script(
                "return Array.from(document.querySelectorAll('table')).filter(function (t) {"
                " var box = t.parentElement; return !box.classList.contains('scroll')"
                " || getComputedStyle(box).overflowX !== 'auto'; }).length;"
            )
            assert unscrolled == 0
            svg_width = driver.execute_script("return document.querySelector('svg.bars').getBoundingClientRect().width")
            assert 0 < svg_width <= viewport
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, min(int(height) + 120, 12000))
            screenshot(driver, tmp_path, f"report-{width}.png")
    finally:
        driver.quit()
