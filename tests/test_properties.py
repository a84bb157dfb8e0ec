"""Property tests (Hypothesis) of every parser that reads what a user hands the benchmark.

The property is the same everywhere: any input gives a result or a documented error (a
:class:`~emogen_bench.errors.BenchError`, which the CLI turns into its exit code), never another
exception (which the CLI reports as exit 70, "internal error"). Inputs are arbitrary bytes,
arbitrary JSON values, and valid documents with one field replaced by an arbitrary value.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emogen_bench.cache import FeatureCache
from emogen_bench.errors import BenchError
from emogen_bench.results import read_results
from emogen_bench.safe_read import loads_json, loads_toml
from emogen_bench.submission.metadata import parse_metadata_json
from emogen_bench.weights.override import load_overrides
from emogen_bench.weights.registry import load_registry
from leaderboard.entries import check_entry
from leaderboard.regenerate import load_plan

REPO = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Any JSON value: scalars (huge integers, odd floats, any text) nested a few levels.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _documented(call: Any, *args: Any) -> None:
    """Run ``call``; a BenchError is a documented outcome, anything else fails the property."""
    try:
        call(*args)
    except BenchError:
        pass


def _mutations(document: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``document`` with one of its fields (or a field one level down) replaced by any JSON value."""
    paths = [(key,) for key in document] + [
        (key, sub) for key, value in document.items() if isinstance(value, dict) for sub in value
    ]

    def replace(path: tuple[str, ...], value: Any) -> dict[str, Any]:
        copy = json.loads(json.dumps(document))
        target = copy
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return copy

    return st.tuples(st.sampled_from(paths), JSON).map(lambda pair: replace(*pair))


@SETTINGS
@given(st.binary(max_size=300))
def test_safe_read_takes_any_bytes(data: bytes) -> None:
    _documented(loads_json, data, "x.json")
    _documented(loads_toml, data, "x.toml")


@SETTINGS
@given(st.binary(max_size=300) | JSON.map(lambda value: json.dumps(value).encode()))
def test_submission_json_never_raises(data: bytes) -> None:
    metadata, issues = parse_metadata_json(data)  # its contract: issues, never an exception
    assert metadata is not None or any(issue.severity == "error" for issue in issues)


def _valid_metadata() -> dict[str, Any]:
    return {"method": "m", "version": 1, "seed": 0, "resolution": [512, 512], "notes": "n"}


@SETTINGS
@given(_mutations(_valid_metadata()))
def test_submission_json_with_any_field_value(document: dict[str, Any]) -> None:
    parse_metadata_json(json.dumps(document).encode())


def _published_entry() -> dict[str, Any]:
    folder = REPO / "leaderboard" / "entries"
    path = next(iter(sorted(folder.rglob("*.json"))))
    return json.loads(path.read_text(encoding="utf-8"))


@SETTINGS
@given(JSON | _mutations(_published_entry()))
def test_entries_give_an_entry_or_a_documented_error(document: Any) -> None:
    _documented(check_entry, document, Path("entry.json"))


@SETTINGS
@given(st.binary(max_size=300) | _mutations({"schema": "emogen-bench/results", "schema_version": 1, "metrics": {}}
                                            ).map(lambda d: json.dumps(d).encode()))  # fmt: skip
def test_results_files(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.json"
        path.write_bytes(data)
        _documented(read_results, path)


def _toml_value(value: Any) -> str:
    """A TOML rendering of a JSON value (strings JSON-quoted, which TOML basic strings accept)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return '""'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{json.dumps(key)} = {_toml_value(item)}" for key, item in value.items()) + "}"


PLAN_LINES = (REPO / "leaderboard" / "plans" / "smoke.toml").read_text(encoding="utf-8").splitlines()
PLAN_KEYS = [number for number, line in enumerate(PLAN_LINES) if " = " in line and not line.lstrip().startswith("#")]


@SETTINGS
@given(st.sampled_from(PLAN_KEYS), JSON)
def test_plans_with_any_value_in_any_key(number: int, value: Any) -> None:
    lines = list(PLAN_LINES)
    key = lines[number].split(" = ", 1)[0]
    lines[number] = f"{key} = {_toml_value(value)}"
    text = "\n".join(lines).replace('published = "../entries"', f'published = "{REPO / "leaderboard" / "entries"}"')
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.toml"
        path.write_text(text, encoding="utf-8")
        _documented(load_plan, path)


def _toml_table(document: dict[str, Any]) -> bytes:
    return "\n".join(f"{json.dumps(key)} = {_toml_value(value)}" for key, value in document.items()).encode()


ARTIFACT_IDS = sorted(spec.id for spec in load_registry().artifacts)
OVERRIDES = st.dictionaries(st.sampled_from([*ARTIFACT_IDS, "x"]), JSON, max_size=3).map(_toml_table)


@SETTINGS
@given(st.binary(max_size=300) | OVERRIDES)
def test_override_files(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "override.toml"
        path.write_bytes(data)
        _documented(load_overrides, path, load_registry())


@pytest.mark.parametrize("text", ["[" * 3000 + "]" * 3000, '{"a": ' * 3000 + "1" + "}" * 3000])
def test_deep_documents_everywhere(text: str) -> None:
    assert parse_metadata_json(text.encode())[0] is None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.json"
        path.write_text(text)
        with pytest.raises(BenchError, match="nested"):
            read_results(path)


@SETTINGS
@given(st.binary(max_size=400) | JSON.map(lambda value: json.dumps(value).encode()))
def test_cached_metric_summaries_are_a_value_or_a_miss(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(root=folder)
        cache.put_summary("metrics-abc", {"emo_a": {"value": 0.125}})
        path = cache.summary_path("metrics-abc")
        path.write_bytes(data)  # anything in its place: damaged, edited, hostile
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            found = cache.get_summary("metrics-abc")
        assert found is None or found == {"emo_a": {"value": 0.125}}
