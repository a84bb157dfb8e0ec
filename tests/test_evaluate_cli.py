"""``emogen-bench evaluate`` as a user sees it: what it prints, what it writes, and its exit codes.

The runs reuse the session's cold evaluation (``conftest.py``): the benchmark
home points at its feature cache, so they are warm and their numbers must be
the cold run's, bit for bit.  One run goes through a real subprocess
(``python -m emogen_bench``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import E2E_PER_EMOTION, E2EEvaluation, RealLayoutWeights

from emogen_bench.cli import main
from emogen_bench.errors import ExitCode
from emogen_bench.report import format_interval, format_value
from emogen_bench.results import METRIC_LABELS, read_results
from emogen_bench.task import EMOTION_NAMES, METRIC_KEYS, PROTOCOL

#: The CSV columns (one row per scope and metric); ``scope`` is ``overall`` or an emotion.
CSV_HEADER = ["protocol", "run", "submission_digest", "scope", "metric", "value", "ci95_low", "ci95_high", "n"]
#: Metrics whose models are tiny here (Inception stand-in, tiny CLIP): quick to load for the format checks.
LIGHT_METRICS = "fid,kid,emo_a,sem_d"


@pytest.fixture
def warm_home(e2e_evaluation: E2EEvaluation, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The benchmark home of the session's cold evaluation: its feature cache is warm."""
    monkeypatch.setenv("EMOGEN_BENCH_HOME", str(e2e_evaluation.home))
    return e2e_evaluation.home


def _args(submission: Path, weights: RealLayoutWeights, reference: Path, *extra: str) -> list[str]:
    return [
        "evaluate", str(submission), "--per-emotion", str(E2E_PER_EMOTION), "--weights-override",
        str(weights.override), "--reference-stats", str(reference), "--device", "cpu", "--workers", "0", *extra,
    ]  # fmt: skip


def _selected(document: dict, keys: list[str]) -> dict:
    metrics = document["metrics"]
    return {
        "overall": {key: metrics["overall"][key] for key in keys},
        "per_emotion": {e: {key: values[key] for key in keys} for e, values in metrics["per_emotion"].items()},
    }


def test_table_shows_headline_per_emotion_and_intervals_and_where_the_json_went(
    warm_home: Path, e2e_evaluation: E2EEvaluation, e2e_submission: Path, real_layout_weights: RealLayoutWeights,
    e2e_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "results.json"
    code = main(_args(e2e_submission, real_layout_weights, e2e_reference, "--out", str(out)))
    printed = capsys.readouterr().out
    assert code == ExitCode.OK
    document = read_results(out)
    assert document["metrics"] == e2e_evaluation.result.to_dict()["metrics"]  # warm: the cold run's numbers
    assert f"protocol {PROTOCOL}" in printed and "reduced run" in printed
    assert document["submission"]["digest"] in printed
    lines = printed.splitlines()
    header = next(line for line in lines if line.split()[:3] == ["metric", "value", "95%"])
    assert header.split() == ["metric", "value", "95%", "CI", "n", "better"]
    overall = document["metrics"]["overall"]
    for key in METRIC_KEYS:  # one headline row per metric: label, value, interval, n
        row = next(line for line in lines if line.startswith(METRIC_LABELS[key] + " "))
        assert format_value(key, overall[key]["value"]) in row, key
        assert format_interval(key, overall[key]["ci95"]) in row, key
        assert row.split()[-2] == str(8 * E2E_PER_EMOTION)
    per_emotion_header = lines[lines.index("per emotion:") + 1].split()
    assert per_emotion_header[0] == "emotion" and "FID*" in per_emotion_header
    for emotion in EMOTION_NAMES:
        row = next(line for line in lines if line.split()[:1] == [emotion])
        assert format_value("sem_d", document["metrics"]["per_emotion"][emotion]["sem_d"]["value"]) in row
    assert "weights    NOT all official" in printed
    assert lines[-1] == f"results JSON: {out}"


@pytest.mark.parametrize("output_format", ["json", "markdown", "csv"])
def test_every_output_format_parses(
    warm_home: Path, e2e_evaluation: E2EEvaluation, e2e_submission: Path, real_layout_weights: RealLayoutWeights,
    e2e_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], output_format: str,
) -> None:  # fmt: skip
    out = tmp_path / "results.json"
    args = _args(e2e_submission, real_layout_weights, e2e_reference, "--out", str(out), "--metrics", LIGHT_METRICS)
    code = main([*args, "--format", output_format, "--quiet"])
    printed = capsys.readouterr().out
    assert code == ExitCode.OK
    document = read_results(out)
    keys = LIGHT_METRICS.split(",")
    assert document["metrics"] == _selected(e2e_evaluation.result.to_dict(), keys)
    if output_format == "json":
        assert json.loads(printed) == document  # stdout is the document and nothing else
    elif output_format == "markdown":
        assert "| metric | value | 95% CI | n | better |" in printed
        for key in keys:
            label = METRIC_LABELS[key]
            assert any(line.startswith(f"| {label} | ") for line in printed.splitlines()), key
        assert f"results JSON: {out}" in printed
    else:
        rows = list(csv.reader(io.StringIO(printed)))
        assert rows[0] == CSV_HEADER
        records = [dict(zip(CSV_HEADER, row)) for row in rows[1:]]
        assert len(records) == (1 + len(EMOTION_NAMES)) * len(keys)
        for record in records:
            assert record["protocol"] == PROTOCOL
            assert record["submission_digest"] == document["submission"]["digest"]
            metrics = document["metrics"]
            scope = metrics["overall"] if record["scope"] == "overall" else metrics["per_emotion"][record["scope"]]
            entry = scope[record["metric"]]
            assert float(record["value"]) == entry["value"]  # full precision
            assert int(record["n"]) == entry["n"]
            if entry["ci95"] is None:
                assert record["ci95_low"] == record["ci95_high"] == ""
            else:
                assert [float(record["ci95_low"]), float(record["ci95_high"])] == entry["ci95"]


def test_an_existing_out_is_never_replaced_without_overwrite(
    warm_home: Path, e2e_submission: Path, real_layout_weights: RealLayoutWeights, e2e_reference: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "results.json"
    out.write_text("precious\n")
    args = _args(e2e_submission, real_layout_weights, e2e_reference, "--out", str(out), "--metrics", "sem_d")
    assert main([*args, "--quiet"]) == ExitCode.USAGE
    error = capsys.readouterr().err
    assert f"{out} already exists" in error and "--overwrite" in error
    assert out.read_text() == "precious\n"
    assert main([*args, "--quiet", "--overwrite"]) == ExitCode.OK
    assert list(read_results(out)["metrics"]["overall"]) == ["sem_d"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary file left behind


def test_an_unknown_metric_is_a_usage_error_naming_the_choices(
    e2e_submission: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    code = main(["evaluate", str(e2e_submission), "--per-emotion", "3", "--metrics", "fid,fidelity", "--out", str(out)])
    error = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "fidelity" in error and all(key in error for key in METRIC_KEYS)
    assert not out.exists()


def test_an_invalid_submission_exits_1_with_its_problems(
    e2e_submission: Path, real_layout_weights: RealLayoutWeights, e2e_reference: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    broken = tmp_path / "broken"
    shutil.copytree(e2e_submission, broken)
    (broken / "awe" / "0000.png").unlink()
    out = tmp_path / "results.json"
    assert main(_args(broken, real_layout_weights, e2e_reference, "--out", str(out), "--quiet")) == ExitCode.INVALID
    error = capsys.readouterr().err
    assert "is invalid" in error and "awe" in error and "emogen-bench validate" in error
    assert not out.exists()


def test_missing_weights_exit_3_naming_the_fetch_command(
    e2e_submission: Path, bench_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    args = ["evaluate", str(e2e_submission), "--per-emotion", "3", "--metrics", "sem_d", "--out", str(out), "-q"]
    assert main(args) == ExitCode.WEIGHTS
    error = capsys.readouterr().err
    assert "clip-vit-l14" in error and "emogen-bench weights fetch clip-vit-l14" in error
    assert not out.exists()


def test_without_out_the_json_goes_to_a_new_file_under_the_home(
    e2e_submission: Path, real_layout_weights: RealLayoutWeights, bench_home: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    override = real_layout_weights.override_for(("clip-vit-l14", "emo-head-clip"), tmp_path / "override.toml")
    args = [
        "evaluate", str(e2e_submission), "--per-emotion", "3", "--metrics", "sem_d", "--weights-override",
        str(override), "--device", "cpu", "--workers", "0", "--quiet",
    ]  # fmt: skip
    assert main(args) == ExitCode.OK
    written = sorted((bench_home / "results").glob("*.json"))
    assert len(written) == 1
    assert capsys.readouterr().out.splitlines()[-1] == f"results JSON: {written[0]}"
    assert main(args) == ExitCode.OK  # a second run never replaces the first
    assert len(list((bench_home / "results").glob("*.json"))) == 2


def test_python_m_emogen_bench_evaluate_in_a_subprocess(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, real_layout_weights: RealLayoutWeights, e2e_reference: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    out = tmp_path / "results.json"
    args = _args(e2e_submission, real_layout_weights, e2e_reference, "--out", str(out), "--metrics", LIGHT_METRICS)
    environment = {**os.environ, "EMOGEN_BENCH_HOME": str(e2e_evaluation.home)}
    completed = subprocess.run(
        [sys.executable, "-m", "emogen_bench", *args, "--format", "json", "--quiet"],
        capture_output=True, text=True, env=environment, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == ExitCode.OK, completed.stderr
    document = read_results(out)
    assert json.loads(completed.stdout) == document
    assert document["metrics"] == _selected(e2e_evaluation.result.to_dict(), LIGHT_METRICS.split(","))
    assert document["environment"]["device"] == "cpu" and document["config"]["metrics"] == LIGHT_METRICS.split(",")
