"""Hostile entries and options: values outside a metric's domain, links out of the entries folder, FIFOs,
documents that Python's JSON reader cannot take, and ``--paper`` links that are not http(s)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from hostile_files import fifo
from leaderboard_fixtures import entry_document, results_document

from emogen_bench.cli import main
from emogen_bench.errors import ExitCode, InvalidInputError, UsageError
from emogen_bench.protocols import PAPER_CODE
from emogen_bench.results import METRIC_LABELS
from leaderboard.entries import (
    METRIC_DOMAINS,
    check_entry,
    entry_json,
    load_entries,
    read_entry,
    store_entry,
    validate_entry,
)
from leaderboard.site import GENERATOR, render_site


def _set(document: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    target = document
    for name in parents:
        target = target[name]
    target[last] = value
    return document


def _write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# --- metric domains and image counts ----------------------------------------------------------------------------


def test_every_metric_has_a_domain() -> None:
    assert set(METRIC_DOMAINS) == set(METRIC_LABELS)


OUT_OF_DOMAIN = {
    "negative FID": ("metrics.overall.fid.value", -1.5, "metrics.overall.fid.value: -1.5 is negative"),
    "negative LPIPS": ("metrics.overall.lpips.value", -0.01, "metrics.overall.lpips.value: -0.01 is negative"),
    "negative Sem-D": ("metrics.per_emotion.awe.sem_d.value", -0.2, "per_emotion.awe.sem_d.value: -0.2 is negative"),
    "Sem-C above 1": ("metrics.overall.sem_c.value", 1.5, "metrics.overall.sem_c.value: 1.5 is not a fraction"),
    "Sem-C below 0": ("metrics.overall.sem_c.value", -0.1, "metrics.overall.sem_c.value: -0.1 is not a fraction"),
    "Emo-A interval above 1": ("metrics.overall.emo_a.ci95", [0.6, 1.2], "emo_a.ci95: 1.2 is not a fraction"),
    "n of zero": ("metrics.overall.fid.n", 0, "metrics.overall.fid.n: expected null or a positive integer"),
    "absurd n": ("metrics.overall.fid.n", 10**12, "fid.n: expected null or a positive integer of at most 8,000"),
    "absurd per-emotion n": ("metrics.per_emotion.awe.fid.n", 1001, "awe.fid.n: expected null or a positive integer"),
}


@pytest.mark.parametrize("case", list(OUT_OF_DOMAIN), ids=list(OUT_OF_DOMAIN))
def test_a_value_outside_its_metric_domain_is_refused_naming_file_and_field(tmp_path: Path, case: str) -> None:
    field, value, expected = OUT_OF_DOMAIN[case]
    document = _set(entry_document("Method A"), field, value)
    assert any(expected in problem for problem in validate_entry(document)), validate_entry(document)
    path = _write(tmp_path / "eicg-v3" / "method-a.json", document)
    _write(tmp_path / "eicg-v3" / "good.json", entry_document("Good"))
    with pytest.raises(InvalidInputError) as caught:  # never ranked: the whole folder is refused
        load_entries(tmp_path)
    assert f"{path}:\n" in str(caught.value) and expected in str(caught.value)
    assert "good.json" not in str(caught.value)


def test_a_negative_kid_is_a_value_kid_can_take_but_its_interval_is_clipped_at_0() -> None:
    document = _set(entry_document("Method A"), "metrics.overall.kid.value", -0.0001)
    _set(document, "metrics.overall.kid.ci95", [0.0, 0.0001])
    assert validate_entry(document) == []
    _set(document, "metrics.overall.kid.ci95", [-0.0003, 0.0001])  # evaluate clips intervals to the domain
    assert validate_entry(document) == ["metrics.overall.kid.ci95: -0.0003 is negative; KID is never below 0"]


def test_add_refuses_results_whose_numbers_are_outside_their_domain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = _set(results_document(), "metrics.overall.fid.value", -3.0)
    path = _write(tmp_path / "results.json", results)
    entries = tmp_path / "entries"
    assert main(["leaderboard", "add", str(path), "--method", "M", "--entries", str(entries)]) == ExitCode.INVALID
    error = capsys.readouterr().err
    assert f"{path}: its numbers do not make a valid leaderboard entry" in error
    assert "metrics.overall.fid.value: -3.0 is negative" in error
    assert not entries.exists()


# --- files that are not what they seem ----------------------------------------------------------------------------


def test_an_entry_linked_from_outside_the_folder_is_refused(tmp_path: Path) -> None:
    entries, outside = tmp_path / "entries", tmp_path / "outside"
    target = _write(outside / "evil.json", entry_document("Evil"))
    (entries / "eicg-v3").mkdir(parents=True)
    link = entries / "eicg-v3" / "evil.json"
    link.symlink_to(target)
    with pytest.raises(InvalidInputError) as caught:
        load_entries(entries)
    assert f"{link}:\n  - cannot be read as JSON (is a symbolic link to {target}, outside the entries folder" in str(
        caught.value
    )
    with pytest.raises(InvalidInputError, match="outside the entries folder"):
        read_entry(link, entries)


def test_a_protocol_folder_linked_from_outside_is_refused_for_reading_and_writing(tmp_path: Path) -> None:
    entries, outside = tmp_path / "entries", tmp_path / "outside"
    _write(outside / "evil.json", entry_document("Evil"))
    entries.mkdir()
    (entries / "eicg-v3").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidInputError, match="outside the entries folder"):
        load_entries(entries)
    with pytest.raises(UsageError, match="outside the entries folder.*nothing was written"):
        store_entry(check_entry(entry_document("New")), entries)
    assert sorted(path.name for path in outside.iterdir()) == ["evil.json"]


def test_a_link_inside_the_folder_is_followed(tmp_path: Path) -> None:
    entries = tmp_path / "entries"
    real = store_entry(check_entry(entry_document("Real")), entries / "archive").path  # archive/eicg-v3/real.json
    (entries / "eicg-v3").mkdir()
    (entries / "eicg-v3" / "real.json").symlink_to(real)
    assert [entry.id for entry in load_entries(entries)] == ["eicg-v3/real"]


def test_a_fifo_among_the_entries_is_refused_without_being_opened(tmp_path: Path) -> None:
    entries = tmp_path / "entries"
    store_entry(check_entry(entry_document("Good")), entries)
    feed = entry_json(entry_document("Pipe")).encode()
    with fifo(entries / "eicg-v3" / "pipe.json", feed) as pipe:
        with pytest.raises(InvalidInputError) as caught:
            load_entries(entries)
        assert stat.S_ISFIFO(pipe.stat().st_mode)
    message = str(caught.value)
    assert message.startswith(f"1 bad leaderboard entry file(s) under {entries}")
    assert f"{pipe}:\n  - cannot be read as JSON (the leaderboard entry is a FIFO (named pipe), not a" in message


def test_a_fifo_where_an_entry_is_to_be_stored_is_left_alone(tmp_path: Path) -> None:
    entry = check_entry(entry_document("Pipe", slug="pipe"))
    (tmp_path / "eicg-v3").mkdir()
    with fifo(tmp_path / "eicg-v3" / "pipe.json", entry_json(entry.document).encode()) as pipe:
        for replace in (False, True):
            with pytest.raises(UsageError, match=r"pipe.json is a FIFO \(named pipe\), not an entry file"):
                store_entry(entry, tmp_path, replace=replace)
        assert stat.S_ISFIFO(pipe.stat().st_mode)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 5000 + "]" * 5000, "nested"),
        ('{"method": "\\ud800"}', "lone surrogate"),
        (b'{"method": "\xff"}', "not UTF-8 text"),
        ('{"n": ' + "9" * 5000 + "}", "not valid JSON"),
        ('{"id": 1, "id": 2}', "duplicate key"),
    ],
    ids=["deep nesting", "lone surrogate", "not UTF-8", "huge integer", "duplicate key"],
)
def test_a_document_python_cannot_take_is_a_clear_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | bytes, expected: str
) -> None:
    entries = tmp_path / "entries"
    path = entries / "eicg-v3" / "bad.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    code = main(["leaderboard", "build", "--entries", str(entries), "--out", str(tmp_path / "site")])
    assert code == ExitCode.INVALID
    error = capsys.readouterr().err
    assert f"{path}:\n  - cannot be read as JSON (the leaderboard entry" in error and expected in error
    assert not (tmp_path / "site").exists()


def test_an_entries_path_that_is_a_fifo_is_a_usage_error(tmp_path: Path) -> None:
    with fifo(tmp_path / "entries", b"") as pipe:
        with pytest.raises(UsageError, match=r"is a FIFO \(named pipe\), not a folder; pass --entries"):
            load_entries(pipe)


def test_a_fifo_named_index_html_is_never_read_or_replaced(tmp_path: Path) -> None:
    ours = f'<html><meta name="generator" content="{GENERATOR}"></html>'.encode()
    with fifo(tmp_path / "index.html", ours) as pipe:
        with pytest.raises(UsageError, match=r"index.html is a FIFO \(named pipe\), not a page this generator wrote"):
            render_site([entry_document()], tmp_path)
        assert stat.S_ISFIFO(pipe.stat().st_mode)


# --- options of `leaderboard add` --------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--paper", "--code"])
@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,<script>alert(1)</script>", "arXiv 2401"])
def test_add_with_a_link_that_is_not_http_names_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, url: str
) -> None:
    results = _write(tmp_path / "results.json", results_document())
    entries = tmp_path / "entries"
    code = main(["leaderboard", "add", str(results), "--method", "M", option, url, "--entries", str(entries)])
    assert code == ExitCode.USAGE
    error = capsys.readouterr().err
    assert f"{option} {url!r}: only http:// and https:// URLs are allowed" in error
    assert str(results) not in error  # the results file is fine: it is not blamed
    assert not entries.exists()


@pytest.mark.parametrize("option", ["--method", "--notes"])
def test_add_with_text_that_is_not_utf8_names_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    results = _write(tmp_path / "results.json", results_document())
    entries = tmp_path / "entries"
    arguments = {"--method": "M", "--notes": "fine"}
    arguments[option] = "M\udcff"  # what Python makes of the byte 0xff on a command line
    code = main(["leaderboard", "add", str(results), *(a for pair in arguments.items() for a in pair),
                 "--entries", str(entries)])  # fmt: skip
    assert code == ExitCode.USAGE
    assert f"{option} 'M\\udcff': the text is not valid UTF-8" in capsys.readouterr().err
    assert not entries.exists()


def test_a_published_entry_with_a_javascript_link_is_refused() -> None:
    document = entry_document("Sneaky", status="published", protocol=PAPER_CODE)
    document["citation"]["url"] = "javascript:alert(1)//https://example.org"
    document["code"] = "https://exa mple.org"
    problems = validate_entry(document)
    assert "citation.url: expected null or an http(s) URL, got 'javascript:alert(1)//https://example.org'" in problems
    assert "code: expected null or an http(s) URL, got 'https://exa mple.org'" in problems
