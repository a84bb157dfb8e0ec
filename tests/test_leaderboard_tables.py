"""Rankings, Markdown and CSV of the leaderboard, checked cell by cell on a fixture set of entries."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from leaderboard_fixtures import DIGEST, PROTOCOL_METRICS, entry_document

from emogen_bench.protocols import PAPER_CODE, PROTOCOLS
from leaderboard.entries import Entry, check_entry, load_entries
from leaderboard.tables import CSV_HEADER, rank, rankings, render_csv, render_markdown

COMMITTED = Path(__file__).resolve().parents[1] / "leaderboard" / "entries"
EXAMPLE_CITATION = "Example et al., An example method, 2024: Table 1, p. 6. <https://example.org/paper>"


def _entry(method: str, **kwargs: Any) -> Entry:
    return check_entry(entry_document(method, **kwargs))


@pytest.fixture
def entries() -> list[Entry]:
    """Three eicg-v3 entries (B best by Emo-A, then A, then C) and two paper-code entries (X best)."""
    published = entry_document("Paper X", status="published", protocol=PAPER_CODE, base=1.1)
    published["user_study"] = {
        "versus": "EmoGen",
        "fidelity": {"mean": 60.0, "sd": 10.5},
        "emotion": {"mean": 55.25, "sd": 3.0},
        "diversity": {"mean": 70.125, "sd": 0.0},
    }
    published["notes"] = "Numbers | from the paper."
    return [
        _entry("Method A", base=1.0),
        _entry("Method C", base=0.8),
        _entry("Method B", status="verified", base=1.2),
        check_entry(published),
        _entry("Method P", protocol=PAPER_CODE, base=0.9),
    ]


def _sections(markdown: str) -> dict[str, str]:
    """``{heading: body}`` for each ``###`` section."""
    parts = markdown.split("### ")[1:]
    return {part.splitlines()[0]: part for part in parts}


def _table(section: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table in ``section``."""
    lines: list[str] = []
    for line in section.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    cells = [[cell.strip() for cell in line.strip()[1:-1].split(" | ")] for line in lines]
    header, separator, *rows = cells
    assert set("".join(separator)) <= {"-", "|"}
    assert all(len(row) == len(header) for row in rows)
    return header, rows


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


# --- rankings -----------------------------------------------------------------------------------------------------


def test_each_protocol_gets_its_own_ranking_by_emo_a(entries: list[Entry]) -> None:
    result = rankings(entries)
    assert list(result) == ["eicg-v3", PAPER_CODE]
    assert [(r.rank, r.entry.method) for r in result["eicg-v3"]] == [(1, "Method B"), (2, "Method A"), (3, "Method C")]
    assert [(r.rank, r.entry.method) for r in result[PAPER_CODE]] == [(1, "Paper X"), (2, "Method P")]


def test_a_ranking_never_spans_protocols(entries: list[Entry]) -> None:
    with pytest.raises(ValueError, match="cannot share one ranking"):
        rank(entries)


def test_lower_is_better_metrics_rank_ascending_and_ties_share_a_rank() -> None:
    group = [_entry("M1", base=1.0), _entry("M2", base=0.5), _entry("M3", base=1.0), _entry("M4", base=1.25)]
    assert [(r.rank, r.entry.method) for r in rank(group, "fid")] == [(1, "M2"), (2, "M1"), (2, "M3"), (4, "M4")]
    assert [(r.rank, r.entry.method) for r in rank(group)] == [(1, "M4"), (2, "M1"), (2, "M3"), (4, "M2")]


def test_an_entry_without_the_ranking_metric_comes_last_unranked() -> None:
    document = entry_document("No Emo-A", status="published", protocol=PAPER_CODE, base=1.5)
    del document["metrics"]["overall"]["emo_a"]
    group = [check_entry(document), _entry("P", status="published", protocol=PAPER_CODE)]
    assert [(r.rank, r.entry.method) for r in rank(group)] == [(1, "P"), (None, "No Emo-A")]
    header, rows = _table(render_markdown(group))
    assert rows[1][0] == "—" and rows[1][header.index("Emo-A ↑")] == "—"
    assert rows[1][header.index("FID ↓")] == "60.00"


# --- Markdown -----------------------------------------------------------------------------------------------------


def test_markdown_has_one_section_per_protocol_and_never_mixes_them(entries: list[Entry]) -> None:
    sections = _sections(render_markdown(entries))
    assert list(sections) == [
        f"{PROTOCOLS['eicg-v3'].title} (`eicg-v3`)",
        f"{PROTOCOLS[PAPER_CODE].title} (`{PAPER_CODE}`)",
    ]
    eicg, paper = sections.values()
    assert "Method P" not in eicg and "Paper X" not in eicg
    assert "Method A" not in paper and "Method B" not in paper


def test_markdown_columns_carry_the_better_direction(entries: list[Entry]) -> None:
    eicg, paper = _sections(render_markdown(entries)).values()
    provenance = ["status", "weights", "benchmark", "added"]
    assert _table(eicg)[0] == [
        "#", "method", "FID ↓", "KID ↓", "LPIPS ↑", "Emo-A ↑", "Emo-A (ResNet-50) ↑", "Sem-C ↑", "Sem-D ↑", *provenance,
    ]  # fmt: skip
    assert _table(paper)[0] == ["#", "method", "FID ↓", "LPIPS ↑", "Emo-A ↑", "Sem-C ↑", "Sem-D ↑", *provenance]


def test_markdown_cells_values_intervals_and_provenance(entries: list[Entry]) -> None:
    eicg, _ = _sections(render_markdown(entries)).values()
    header, rows = _table(eicg)
    assert [row[:2] for row in rows] == [
        ["1", "[Method B](https://example.org/paper)"],
        ["2", "[Method A](https://example.org/paper)"],
        ["3", "[Method C](https://example.org/paper)"],
    ]
    best = dict(zip(header, rows[0]))
    b = entries[2].overall
    assert best["FID ↓"] == f"{b['fid']['value']:.2f} [{b['fid']['ci95'][0]:.2f}, {b['fid']['ci95'][1]:.2f}]"
    assert best["FID ↓"] == "48.00 [45.60, 50.40]"
    assert best["KID ↓"] == "0.01200 [0.01140, 0.01260]"
    assert best["LPIPS ↑"] == "0.8400 [0.7980, 0.8820]"
    assert best["Emo-A ↑"] == f"{_percent(0.84)} [{_percent(0.84 * 0.95)}, {_percent(0.84 * 1.05)}]"
    assert best["Emo-A ↑"] == "84.00% [79.80%, 88.20%]"
    assert best["Sem-D ↑"] == "0.0360 [0.0342, 0.0378]"
    assert [best["status"], best["weights"], best["benchmark"], best["added"]] == [
        "verified",
        "official",
        "0.1.0",
        "2026-11-27",
    ]
    assert dict(zip(header, rows[1]))["status"] == "self-reported"


def test_markdown_published_rows_cite_their_source_and_show_no_provenance(entries: list[Entry]) -> None:
    _, paper = _sections(render_markdown(entries)).values()
    header, rows = _table(paper)
    published = dict(zip(header, rows[0]))
    assert published["method"] == "[Paper X](https://example.org/paper) [1]"
    assert published["Emo-A ↑"] == "77.00%"  # no interval: published numbers have none
    assert published["FID ↓"] == "44.00" and published["Sem-D ↑"] == "0.0330"
    assert [published[c] for c in ("status", "weights", "benchmark", "added")] == [
        "published",
        "—",
        "—",
        "2026-11-27",
    ]
    assert dict(zip(header, rows[1]))["method"] == "[Method P](https://example.org/paper)"
    assert f"\n1. {EXAMPLE_CITATION}\n" in paper
    assert "\n- Paper X: Numbers &#124; from the paper.\n" in paper


def test_markdown_user_study_is_its_own_table(entries: list[Entry]) -> None:
    _, paper = _sections(render_markdown(entries)).values()
    study = paper.split("User study:", 1)[1]
    header, rows = _table(study)
    assert header == ["method", "versus", "fidelity", "emotion", "diversity"]
    assert rows == [["Paper X", "EmoGen", "60.00 ± 10.50", "55.25 ± 3.00", "70.12 ± 0.00"]]


def test_markdown_of_no_entries() -> None:
    assert render_markdown([]) == "No leaderboard entries.\n"


def test_markdown_of_the_committed_published_rows() -> None:
    entries = [entry for entry in load_entries(COMMITTED) if entry.status == "published"]
    markdown = render_markdown(entries)
    (section,) = _sections(markdown).values()
    header, rows = _table(section)
    by_method = {row[1].split("]")[0].lstrip("["): dict(zip(header, row)) for row in rows}
    assert len(by_method) == 8
    emogen = by_method["EmoGen"]
    assert emogen["#"] == "1"
    assert [emogen[c] for c in ("FID ↓", "LPIPS ↑", "Emo-A ↑", "Sem-C ↑", "Sem-D ↑")] == [
        "41.60",
        "0.7170",
        "76.25%",
        "0.6330",
        "0.0335",
    ]
    assert by_method["DB (5000 images)"]["#"] == "8" and by_method["DB (5000 images)"]["Emo-A ↑"] == "50.77%"
    assert "arXiv:2401.04608" in section and "<https://arxiv.org/abs/2401.04608>" in section
    assert "| Stable Diffusion | EmoGen | 67.86 ± 15.08 | 73.66 ± 11.80 | 87.88 ± 9.64 |" in section


# --- CSV ----------------------------------------------------------------------------------------------------------


def _csv_rows(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == CSV_HEADER
    return list(reader)


def test_csv_has_one_row_per_entry_and_metric_in_table_order(entries: list[Entry]) -> None:
    rows = _csv_rows(render_csv(entries))
    assert len(rows) == 3 * 7 + 2 * 5
    order = [(row["protocol"], row["rank"], row["method"]) for row in rows[::7][:3]]
    assert order == [("eicg-v3", "1", "Method B"), ("eicg-v3", "2", "Method A"), ("eicg-v3", "3", "Method C")]
    assert [row["metric"] for row in rows[:7]] == list(PROTOCOL_METRICS["eicg-v3"])
    paper = rows[21:]
    assert {row["protocol"] for row in paper} == {PAPER_CODE}
    assert [row["method"] for row in paper[::5]] == ["Paper X", "Method P"]
    assert [row["metric"] for row in paper[:5]] == list(PROTOCOL_METRICS[PAPER_CODE])
    assert all(row["id"].startswith(row["protocol"] + "/") for row in rows)


def test_csv_values_are_full_precision_with_provenance(entries: list[Entry]) -> None:
    rows = _csv_rows(render_csv(entries))
    b_emo = next(row for row in rows if row["method"] == "Method B" and row["metric"] == "emo_a")
    source = entries[2].overall["emo_a"]
    assert float(b_emo["value"]) == source["value"] and b_emo["value"] == repr(source["value"])
    assert [float(b_emo["ci95_low"]), float(b_emo["ci95_high"])] == source["ci95"]
    assert b_emo["ci95_low"] == repr(0.84 * 0.95)  # not rounded for display
    assert (b_emo["n"], b_emo["status"], b_emo["official_weights"], b_emo["benchmark_version"]) == (
        "8000",
        "verified",
        "true",
        "0.1.0",
    )
    assert (b_emo["submission_digest"], b_emo["added"], b_emo["verified_by"], b_emo["citation"]) == (
        DIGEST,
        "2026-11-27",
        "maintainer",
        "",
    )
    x_fid = next(row for row in rows if row["method"] == "Paper X" and row["metric"] == "fid")
    assert float(x_fid["value"]) == 44.0
    assert [x_fid[c] for c in ("ci95_low", "ci95_high", "n", "official_weights", "benchmark_version")] == [""] * 5
    assert x_fid["status"] == "published"
    assert x_fid["citation"] == "Example et al., An example method, 2024; Table 1, p. 6"


def test_csv_of_no_entries_is_the_header() -> None:
    assert render_csv([]) == ",".join(CSV_HEADER) + "\n"
