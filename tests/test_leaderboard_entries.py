"""Leaderboard entries: schema validation, results-to-entry checks, storing, loading, and the published rows."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from leaderboard_fixtures import (
    ARTIFACT_DIGESTS,
    PROTOCOL_METRICS,
    entry_document,
    pinning_registry,
    results_document,
    submission_block,
)

from emogen_bench.errors import ExitCode, InvalidInputError, UsageError
from emogen_bench.protocols import PAPER_CODE
from emogen_bench.task import EMOTION_NAMES
from leaderboard.entries import (
    SMOKE_ENTRY_SCHEMA,
    check_entry,
    entry_from_results,
    entry_json,
    load_entries,
    slugify,
    smoke_entry_from_results,
    store_entry,
    validate_entry,
    validate_smoke_entry,
)
from leaderboard.published import published_documents

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "leaderboard" / "entries"
PROTOCOL_MD = Path(__file__).parents[2] / "shared" / "PROTOCOL.md"

Doc = dict[str, Any]


# --- validation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["published", "self-reported", "verified"])
@pytest.mark.parametrize("protocol", ["eicg-v3", PAPER_CODE])
def test_a_good_entry_of_each_status_passes(status: str, protocol: str) -> None:
    document = entry_document(status=status, protocol=protocol)
    assert validate_entry(document) == []
    entry = check_entry(document)
    assert (entry.status, entry.protocol, entry.slug) == (status, protocol, "method-a")


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A mutation that sets the dotted ``path`` of a document to ``value``."""

    def mutate(document: Doc) -> None:
        *parents, last = path.split(".")
        target = document
        for name in parents:
            target = target[name]
        target[last] = value

    return mutate


def _delete(path: str) -> Callable[[Doc], None]:
    def mutate(document: Doc) -> None:
        *parents, last = path.split(".")
        target = document
        for name in parents:
            target = target[name]
        del target[last]

    return mutate


def _protocol(name: str) -> Callable[[Doc], None]:
    def mutate(document: Doc) -> None:
        document["protocol"] = name
        document["id"] = f"{name}/method-a"

    return mutate


# (status of the good entry, mutation, the one expected problem)
BAD_ENTRIES = {
    "bad schema": ("self-reported", _set("schema", "emogen-bench/results"), "schema: expected"),
    "bad version": ("self-reported", _set("schema_version", 2), "schema_version: expected 1, got 2"),
    "missing field": ("self-reported", _delete("notes"), "missing field(s) notes"),
    "unknown field": ("self-reported", _set("score", 1), "unknown field(s) score"),
    "unknown status": ("self-reported", _set("status", "approved"), "status: 'approved' is not one of"),
    "unknown protocol": ("self-reported", _protocol("eicg-v9"), "protocol: unknown protocol 'eicg-v9'"),
    "empty method": ("self-reported", _set("method", " "), "method: required text"),
    "id of another protocol": ("self-reported", _set("id", f"{PAPER_CODE}/method-a"), "does not start with"),
    "bad slug": ("self-reported", _set("id", "eicg-v3/Method A"), "slug 'Method A' must be lower-case"),
    "id without slash": ("self-reported", _set("id", "method-a"), "id: expected '<protocol>/<slug>'"),
    "paper not a URL": ("self-reported", _set("paper", "arXiv 2401"), "paper: expected null or an http(s) URL"),
    "bad date": ("self-reported", _set("added", "27/11/2026"), "added: expected a date YYYY-MM-DD"),
    "published without citation": ("published", _set("citation", None), "citation: required for a published entry"),
    "citation without where": ("published", _set("citation.where", []), "citation.where: expected a non-empty"),
    "citation on a self-reported entry": (
        "self-reported",
        _set("citation", {"reference": "x", "where": ["y"], "url": None}),
        "citation: only published entries carry a citation",
    ),
    "verified without verifier": ("verified", _set("verified_by", None), "verified_by: required for a verified"),
    "missing provenance": ("self-reported", _set("provenance", None), "provenance: required for a self-reported"),
    "published with provenance": ("published", _set("provenance", {}), "provenance: a published entry has none"),
    "provenance missing a field": ("verified", _delete("provenance.seed"), "provenance: missing field(s) seed"),
    "unofficial weights": ("self-reported", _set("provenance.official_weights", False), "provenance.official_weights"),
    "reduced run": ("self-reported", _set("provenance.run_kind", "reduced"), "provenance.run_kind: expected 'offic"),
    "bad digest": ("self-reported", _set("provenance.submission_digest", "abc"), "provenance.submission_digest"),
    "incomplete counts": (
        "self-reported",
        _set("provenance.counts", {e: 1000 for e in EMOTION_NAMES[1:]}),
        "provenance.counts: emotion 'amusement' missing",
    ),
    "metric not of the protocol": (
        "published",
        lambda d: (
            d.update(entry_document(status="published", protocol=PAPER_CODE)),
            d["metrics"]["overall"].update(kid={"value": 0.01, "ci95": None, "n": 1}),
        ),
        "metrics.overall.kid: not a metric of protocol 'emogen-paper-code'",
    ),
    "missing metric": ("self-reported", _delete("metrics.overall.sem_d"), "metrics.overall: missing metric(s) sem_d"),
    "non-numeric value": ("self-reported", _set("metrics.overall.fid.value", "44.05"), "fid.value: expected a finite"),
    "NaN value": ("self-reported", _set("metrics.overall.fid.value", math.nan), "fid.value: expected a finite number"),
    "boolean value": ("published", _set("metrics.overall.lpips.value", True), "lpips.value: expected a finite number"),
    "accuracy in percent": ("published", _set("metrics.overall.emo_a.value", 70.77), "is not a fraction from 0 to 1"),
    "ci95 reversed": ("self-reported", _set("metrics.overall.fid.ci95", [42.0, 38.0]), "low 42.0 is above high 38.0"),
    "ci95 not a pair": ("self-reported", _set("metrics.overall.fid.ci95", [38.0]), "fid.ci95: expected null or"),
    "bad n": ("self-reported", _set("metrics.overall.fid.n", -3), "fid.n: expected null or a positive integer"),
    "extra metric field": ("self-reported", _set("metrics.overall.fid.rank", 1), "unknown field(s) rank"),
    "unknown emotion": (
        "self-reported",
        lambda d: d["metrics"]["per_emotion"].update(joy={}),
        "metrics.per_emotion.joy: unknown emotion",
    ),
    "per-emotion bad value": (
        "self-reported",
        _set("metrics.per_emotion.awe.sem_c.value", None),
        "metrics.per_emotion.awe.sem_c.value: expected a finite number",
    ),
    "user study out of range": (
        "published",
        _set("user_study", {"versus": "EmoGen", **{a: {"mean": 150.0, "sd": 1.0} for a in ("fidelity", "emotion")},
                            "diversity": {"mean": 50.0, "sd": 1.0}}),
        "user_study.emotion.mean: expected a percentage",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_ENTRIES), ids=list(BAD_ENTRIES))
def test_each_kind_of_bad_entry_is_rejected_with_its_own_message(case: str) -> None:
    status, mutate, expected = BAD_ENTRIES[case]
    document = entry_document(status=status)
    mutate(document)
    problems = validate_entry(document)
    assert any(expected in problem for problem in problems), problems
    if case != "user study out of range":  # fidelity and emotion are both out of range there
        assert len(problems) == 1, problems


def test_every_problem_is_listed_and_check_entry_names_the_file() -> None:
    document = entry_document()
    document["status"] = "approved"
    document["added"] = "yesterday"
    document["metrics"]["overall"]["fid"]["value"] = "x"
    assert len(validate_entry(document)) == 3
    with pytest.raises(InvalidInputError) as caught:
        check_entry(document, "entries/eicg-v3/method-a.json")
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.INVALID
    assert message.startswith("entries/eicg-v3/method-a.json: not a valid leaderboard entry (3 problem(s))")
    assert "status: 'approved'" in message and "added:" in message and "fid.value" in message


def test_not_an_object_is_one_problem() -> None:
    assert validate_entry([1, 2]) == ["expected a JSON object (a leaderboard entry), got list"]


def test_the_id_must_match_the_file_place(tmp_path: Path) -> None:
    document = entry_document()
    assert validate_entry(document, tmp_path / "eicg-v3" / "method-a.json") == []
    problems = validate_entry(document, tmp_path / "eicg-v3" / "method-b.json")
    assert problems == ["id: 'eicg-v3/method-a' does not match the file's place 'eicg-v3/method-b' (<protocol>/<slug>)"]


# --- from results -------------------------------------------------------------------------------------------------


def test_entry_from_results_copies_the_provenance_and_the_protocol_metrics() -> None:
    results = results_document()
    results["environment"]["device_name"] = "NVIDIA H100"
    entry = entry_from_results(results, method="My Method", paper="https://example.org/p", added="2026-12-01")
    document = entry.document
    assert document["id"] == "eicg-v3/my-method" and document["status"] == "self-reported"
    assert (document["paper"], document["code"], document["added"]) == ("https://example.org/p", None, "2026-12-01")
    assert document["citation"] is None and document["verified_by"] is None and document["user_study"] is None
    provenance = document["provenance"]
    assert provenance["submission_digest"] == results["submission"]["digest"]
    assert provenance["counts"] == {emotion: 1000 for emotion in EMOTION_NAMES}
    assert provenance["n_images"] == 8000 and provenance["run_kind"] == "official"
    assert provenance["official_weights"] is True
    assert provenance["artifacts"] == ARTIFACT_DIGESTS
    assert (provenance["unpinned_artifacts"], provenance["reference_stats_known"]) == (["inception-fid"], False)
    assert provenance["reference_sha256"] == "e" * 64 and provenance["seed"] == 0
    assert provenance["environment"] == {
        "python": "3.11.7",
        "torch": "2.14.1",
        "device": "cuda:0",
        "device_name": "NVIDIA H100",
    }
    for key in PROTOCOL_METRICS["eicg-v3"]:
        source = results["metrics"]["overall"][key]
        assert document["metrics"]["overall"][key] == {"value": source["value"], "ci95": source["ci95"], "n": 8000}
    assert list(document["metrics"]["per_emotion"]) == list(EMOTION_NAMES)
    assert document["metrics"]["per_emotion"]["fear"]["emo_a"] == results["metrics"]["per_emotion"]["fear"]["emo_a"]
    assert validate_entry(dict(document)) == []


def test_entry_from_results_keeps_only_the_protocols_metrics_and_value_ci_n() -> None:
    results = results_document(PAPER_CODE)
    results["metrics"]["overall"]["kid"] = {"value": 0.01, "ci95": None, "n": 8000}
    results["metrics"]["overall"]["emo_a"]["confusion"] = [[1] * 8] * 8
    entry = entry_from_results(results, method="Paper Code Run", slug="pc-run")
    assert entry.id == f"{PAPER_CODE}/pc-run"
    assert list(entry.overall) == list(PROTOCOL_METRICS[PAPER_CODE])
    assert set(entry.overall["emo_a"]) == {"value", "ci95", "n"}


def test_a_verified_entry_names_its_verifier() -> None:
    entry = entry_from_results(results_document(), method="M", status="verified", verified_by="maintainers",
                               registry=pinning_registry())  # fmt: skip
    assert entry.status == "verified" and entry.document["verified_by"] == "maintainers"


def _reduced(results: Doc) -> None:
    results["run"] = {"kind": "reduced", "per_emotion": 100, "label": "reduced run"}
    results["submission"] = submission_block(100)


def _unofficial(results: Doc) -> None:
    results["official_weights"] = False
    results["artifacts"]["clip-vit-l14"]["official"] = False


def _missing_emotion(results: Doc) -> None:
    results["submission"] = submission_block(emotions=[emotion for emotion in EMOTION_NAMES if emotion != "awe"])


# (mutation, number of problems, texts the error must contain)
REJECTED_RESULTS = {
    "smoke": (_set("smoke", True), 1, ["a smoke run"]),
    "unofficial weights": (_unofficial, 1, ["weights not all official (clip-vit-l14)"]),
    "reduced run": (_reduced, 10, ["run kind 'reduced'", "amusement: 100 images, the protocol needs exactly 1000",
                                   "sadness: 100 images", "submission has 800 images; the protocol needs 8000"]),
    "missing emotion": (_missing_emotion, 2, ["emotion 'awe' missing", "submission has 7000 images"]),
    "wrong counts": (_set("submission.counts.fear", 999), 2, ["fear: 999 images, the protocol needs exactly 1000",
                                                              "(counts vs manifest): fear 999 vs 1000"]),
    "missing digest": (_delete("submission.digest"), 1, ["submission digest missing or malformed (None)"]),
    "missing metric": (_delete("metrics.overall.sem_d"), 1, ["metric(s) sem_d of protocol 'eicg-v3' not computed"]),
    "unknown protocol": (_set("protocol", "eicg-v9"), 1, ["unknown protocol 'eicg-v9'"]),
    "earlier protocol version": (_delete("protocol_version"), 1, ["protocol eicg-v3 version 1", "re-run evaluate"]),
    "wrong schema version": (_set("schema_version", 2), 1, ["results schema version 2; this tool reads 1"]),
    "wrong schema": (_set("schema", "emogen-bench/entry"), 1, ["not an emogen-bench results document"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REJECTED_RESULTS), ids=list(REJECTED_RESULTS))
def test_results_that_are_not_an_official_run_are_rejected(case: str) -> None:
    mutate, count, expected = REJECTED_RESULTS[case]
    results = results_document()
    mutate(results)
    with pytest.raises(InvalidInputError) as caught:
        entry_from_results(results, method="M", source="run.json")
    message = str(caught.value)
    assert message.startswith(f"run.json: cannot become a leaderboard entry ({count} problem(s))"), message
    for text in expected:
        assert text in message


def test_every_failed_check_is_listed_in_one_error_with_its_fix() -> None:
    results = results_document()
    results["smoke"] = True
    _unofficial(results)
    del results["submission"]["digest"]
    with pytest.raises(InvalidInputError) as caught:
        entry_from_results(results, method="M")
    lines = [line for line in str(caught.value).splitlines() if line.startswith("  - ")]
    assert len(lines) == 3
    assert "run evaluate with real weights" in lines[0] and "without --weights-override" in lines[1]
    assert "use the JSON that evaluate wrote" in lines[2]


def test_malformed_numbers_the_results_checks_do_not_cover_are_still_refused() -> None:
    results = results_document()
    results["metrics"]["per_emotion"]["fear"]["sem_c"]["value"] = "high"
    with pytest.raises(InvalidInputError) as caught:
        entry_from_results(results, method="M", source="run.json")
    message = str(caught.value)
    assert message.startswith("run.json: its numbers do not make a valid leaderboard entry")
    assert "metrics.per_emotion.fear.sem_c.value: expected a finite number, got 'high'" in message


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"status": "published"}, "published rows are written by hand"),
        ({"status": "verified"}, "--status verified needs --verified-by"),
        ({"slug": "My Slug"}, "--id 'My Slug'"),
        ({"method": "  "}, "--method needs the method's name"),
    ],
)
def test_bad_arguments_are_usage_errors(kwargs: dict[str, Any], expected: str) -> None:
    arguments = {"method": "M", **kwargs}
    with pytest.raises(UsageError, match=re.escape(expected)):
        entry_from_results(results_document(), **arguments)


@pytest.mark.parametrize(
    ("text", "slug"),
    [("DB (5 images)", "db-5-images"), ("EmoGen v2.1", "emogen-v2-1"), ("  SD -- caption  ", "sd-caption")],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


def test_slugify_refuses_a_name_without_letters_or_digits() -> None:
    with pytest.raises(UsageError, match="pass --id"):
        slugify("+++")


# --- storing and loading ------------------------------------------------------------------------------------------


def test_store_writes_the_entry_at_its_place_and_load_reads_it_back(tmp_path: Path) -> None:
    entry = check_entry(entry_document())
    outcome = store_entry(entry, tmp_path)
    assert outcome.action == "written" and outcome.path == tmp_path / "eicg-v3" / "method-a.json"
    assert json.loads(outcome.path.read_text(encoding="utf-8")) == entry.document
    assert outcome.path.read_text(encoding="utf-8") == entry_json(entry.document)
    loaded = load_entries(tmp_path)
    assert [e.id for e in loaded] == ["eicg-v3/method-a"] and loaded[0].path == outcome.path
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_identical_entry_is_a_no_op_even_on_another_day(tmp_path: Path) -> None:
    path = store_entry(check_entry(entry_document()), tmp_path).path
    before = path.read_bytes()
    again = entry_document()
    again["added"] = "2027-01-01"
    outcome = store_entry(check_entry(again), tmp_path)
    assert outcome.action == "unchanged" and path.read_bytes() == before


def test_a_different_entry_is_never_stored_over_another_unless_replace(tmp_path: Path) -> None:
    path = store_entry(check_entry(entry_document()), tmp_path).path
    before = path.read_bytes()
    changed = check_entry(entry_document(base=1.1))
    with pytest.raises(UsageError, match=r"differs in: metrics\).*--replace") as caught:
        store_entry(changed, tmp_path)
    assert caught.value.exit_code == ExitCode.USAGE
    assert path.read_bytes() == before
    outcome = store_entry(changed, tmp_path, replace=True)
    assert outcome.action == "replaced"
    assert json.loads(path.read_text(encoding="utf-8")) == changed.document


def test_an_unreadable_file_in_the_way_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "eicg-v3" / "method-a.json"
    path.parent.mkdir()
    path.write_bytes(b"my notes, not JSON")
    with pytest.raises(UsageError, match="not readable JSON"):
        store_entry(check_entry(entry_document()), tmp_path)
    assert path.read_bytes() == b"my notes, not JSON"


def test_load_names_every_bad_file_and_its_problems(tmp_path: Path) -> None:
    store_entry(check_entry(entry_document("Good")), tmp_path)
    bad = entry_document("Bad")
    bad["status"] = "approved"
    (tmp_path / "eicg-v3" / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    (tmp_path / "eicg-v3" / "broken.json").write_text("{", encoding="utf-8")
    moved = entry_document("Moved")
    (tmp_path / "eicg-v3" / "elsewhere.json").write_text(json.dumps(moved), encoding="utf-8")
    (tmp_path / "stray.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InvalidInputError) as caught:
        load_entries(tmp_path)
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.INVALID
    assert message.startswith(f"4 bad leaderboard entry file(s) under {tmp_path}")
    assert f"{tmp_path / 'eicg-v3' / 'bad.json'}:\n  - status: 'approved' is not one of" in message
    assert f"{tmp_path / 'eicg-v3' / 'broken.json'}:\n  - cannot be read as JSON" in message
    assert "id: 'eicg-v3/moved' does not match the file's place 'eicg-v3/elsewhere'" in message
    assert f"{tmp_path / 'stray.json'}:\n  - an entry belongs in a protocol folder" in message
    assert "good.json" not in message


def test_load_of_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist; pass --entries"):
        load_entries(tmp_path / "nowhere")


# --- the published rows -------------------------------------------------------------------------------------------


def test_the_committed_published_entries_equal_what_published_py_returns() -> None:
    documents = published_documents()
    for document in documents:
        path = COMMITTED / f"{document['id']}.json"
        assert path.read_text(encoding="utf-8") == entry_json(document), f"{path} drifted; run leaderboard.published"
    committed_published = {e.id for e in load_entries(COMMITTED) if e.status == "published"}
    assert committed_published == {document["id"] for document in documents}


def _section_7(text: str) -> str:
    return text.split("\n## 7.", 1)[1].split("\n## 8.", 1)[0]


def _tables(section: str) -> list[dict[str, list[str]]]:
    """Each Markdown table of the section as ``{row name: cells}`` (header and separator lines dropped)."""
    tables: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] | None = None
    for line in section.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if current is None:
            current = {}
            tables.append(current)
            assert cells == ["method", "FID", "LPIPS", "Emo-A", "Sem-C", "Sem-D"]
        elif not set(cells[0]) <= {"-"}:
            current[cells[0]] = cells[1:]
    return tables


def _number(cell: str) -> float:
    """A PROTOCOL.md cell as stored in an entry: percentages become fractions."""
    return float(cell[:-1]) / 100 if cell.endswith("%") else float(cell)


def test_the_published_numbers_equal_protocol_md_section_7() -> None:
    if not PROTOCOL_MD.is_file():
        pytest.skip(f"{PROTOCOL_MD} is not beside the repository (a user's clone)")
    section = _section_7(PROTOCOL_MD.read_text(encoding="utf-8"))
    main, supplement = _tables(section)
    assert len(main) == 4 and len(supplement) == 6
    by_method = {document["method"]: document for document in published_documents()}
    supplement_names = {"DB": "DreamBooth"}
    expected: dict[str, tuple[list[str], set[str]]] = {}
    for name, cells in main.items():
        expected[name] = (cells, {"main"})
    for name, cells in supplement.items():
        method = supplement_names.get(name, name)
        if method in expected:
            assert expected[method][0] == cells, f"{method} differs between the two tables"
            expected[method][1].add("supplement")
        else:
            expected[method] = (cells, {"supplement"})
    assert set(by_method) == set(expected)
    for method, (cells, tables) in expected.items():
        document = by_method[method]
        overall = document["metrics"]["overall"]
        for key, cell in zip(("fid", "lpips", "emo_a", "sem_c", "sem_d"), cells):
            assert math.isclose(overall[key]["value"], _number(cell), rel_tol=1e-12), (method, key)
            assert overall[key]["ci95"] is None
        where = " ".join(document["citation"]["where"])
        assert ("main paper, Table 1" in where) == ("main" in tables), method
        assert ("supplementary material, Table 1" in where) == ("supplement" in tables), method
        if "supplement" in tables:
            assert "caption" in document["notes"] and "does not match" in document["notes"], method

    number = r"\d+(?:\.\d+)?"
    studies = {
        name: [(float(m), float(s)) for m, s in re.findall(rf"({number})±({number})", values)]
        for name, values in re.findall(rf"\b(SD|TI|DB) ((?:{number}±{number}(?: / )?){{3}})", section)
    }
    names = {"SD": "Stable Diffusion", "TI": "Textual Inversion", "DB": "DreamBooth"}
    assert set(studies) == set(names)
    with_study = {method for method, document in by_method.items() if document["user_study"]}
    assert with_study == set(names.values())
    for short, values in studies.items():
        study = by_method[names[short]]["user_study"]
        assert study["versus"] == "EmoGen"
        assert [(study[a]["mean"], study[a]["sd"]) for a in ("fidelity", "emotion", "diversity")] == values
        assert "main paper, user study" in by_method[names[short]]["citation"]["where"]


def test_the_published_rows_cite_the_emogen_paper() -> None:
    for document in published_documents():
        assert document["status"] == "published" and document["protocol"] == PAPER_CODE
        citation = document["citation"]
        assert citation["url"] == "https://arxiv.org/abs/2401.04608"
        assert citation["reference"].startswith('Jingyuan Yang, Jiawei Feng, Hui Huang, "EmoGen: Emotional Image')
        assert "CVPR 2024" in citation["reference"] and "arXiv:2401.04608" in citation["reference"]
        assert document["provenance"] is None and document["metrics"]["per_emotion"] == {}
    emogen = next(d for d in published_documents() if d["method"] == "EmoGen")
    assert emogen["code"] == "https://github.com/JingyuanYY/EmoGen"


def test_published_documents_are_independent_copies() -> None:
    first = published_documents()
    changed = copy.deepcopy(first)
    first[0]["metrics"]["overall"]["fid"]["value"] = 0.0
    assert published_documents() == changed


# --- smoke entries of a plan run (emogen-bench tables regenerate) -----------------------------------------------


def _smoke_results() -> Doc:
    results = results_document(PAPER_CODE)
    results["smoke"] = True
    results["official_weights"] = False
    results["run"] = {"kind": "reduced", "per_emotion": 2, "label": "reduced (2 per emotion)"}
    results["submission"]["n_images"] = 16
    results["submission"]["counts"] = {emotion: 2 for emotion in EMOTION_NAMES}
    del results["metrics"]["overall"]["lpips"]
    results["not_computed"] = {"lpips": "no *jpg files"}
    return results


def test_a_smoke_run_becomes_a_smoke_entry_only_through_its_own_path(tmp_path: Path) -> None:
    results = _smoke_results()
    with pytest.raises(InvalidInputError):
        entry_from_results(results, method="M")
    entry = smoke_entry_from_results(results, method="DreamBooth [SMOKE]", slug="dreambooth", notes="plan smoke")
    document = entry.document
    assert document["schema"] == SMOKE_ENTRY_SCHEMA and document["status"] == "smoke"
    assert document["id"] == f"{PAPER_CODE}/dreambooth"
    assert document["notes"].startswith("SMOKE RUN") and document["notes"].endswith("plan smoke")
    assert document["provenance"]["smoke"] is True and document["provenance"]["n_images"] == 16
    assert document["provenance"]["not_computed"] == ["lpips"]
    assert set(document["metrics"]["overall"]) == {"fid", "emo_a", "sem_c", "sem_d"}
    assert entry.value("fid") == results["metrics"]["overall"]["fid"]["value"]
    assert validate_smoke_entry(document) == []
    # stored like any entry, but never loadable as a leaderboard entry (its schema is not the leaderboard's)
    outcome = store_entry(entry, tmp_path / "entries")
    assert outcome.action == "written"
    with pytest.raises(InvalidInputError, match="schema"):
        load_entries(tmp_path / "entries")


def test_smoke_entries_refuse_real_results_and_bad_ids() -> None:
    with pytest.raises(UsageError, match="not the results of a smoke run"):
        smoke_entry_from_results(results_document(PAPER_CODE), method="M", slug="m", source="run.json")
    with pytest.raises(UsageError, match="smoke entry id"):
        smoke_entry_from_results(_smoke_results(), method="M", slug="Not A Slug")
    document = smoke_entry_from_results(_smoke_results(), method="M", slug="m").document
    broken = {**document, "status": "self-reported", "provenance": {"smoke": False}}
    problems = validate_smoke_entry(broken)
    assert any(p.startswith("status:") for p in problems) and any(p.startswith("provenance:") for p in problems)


@pytest.mark.parametrize("protocol", [["eicg-v3"], {"name": "eicg-v3"}])
def test_a_non_text_protocol_is_a_clear_rejection_not_a_crash(protocol: Any, tmp_path: Path) -> None:
    # a hand-edited file with a list or object as protocol used to raise TypeError (unhashable) from `in PROTOCOLS`
    results = {**results_document(), "protocol": protocol}
    with pytest.raises(InvalidInputError, match="unknown protocol"):
        entry_from_results(results, method="M")
    document = {**entry_document(), "protocol": protocol}
    assert any(p.startswith("protocol: unknown protocol") for p in validate_entry(document))
    folder = tmp_path / "entries" / "eicg-v3"
    folder.mkdir(parents=True)
    (folder / "m.json").write_text(json.dumps({**entry_document(), "protocol": protocol}), encoding="utf-8")
    with pytest.raises(InvalidInputError, match="unknown protocol"):
        load_entries(tmp_path / "entries")


@pytest.mark.parametrize(
    "change",
    [
        lambda doc: doc["artifacts"]["clip-vit-l14"].update(official=False),  # the summary flag says true
        lambda doc: doc.update(artifacts=[]),
        lambda doc: doc.update(artifacts={}),
    ],
)
def test_every_artifact_must_be_official_whatever_the_summary_flag_says(change: Callable[[dict], Any]) -> None:
    from emogen_bench.errors import InvalidInputError
    from leaderboard.entries import entry_from_results

    document = results_document("eicg-v3")
    change(document)
    assert document["official_weights"] is True
    with pytest.raises(InvalidInputError, match="official|artifacts"):
        entry_from_results(document, method="Method A")
