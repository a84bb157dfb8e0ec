"""``emogen-bench demo``: the whole benchmark on synthetic data with tiny models, labelled a smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emogen_bench.cli import main
from emogen_bench.report import SMOKE_BANNER
from emogen_bench.results import METRIC_LABELS, read_results
from emogen_bench.task import EMOTION_NAMES, METRIC_KEYS


def test_demo_prints_every_metric_labelled_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "removed afterwards" in out and "validation: VALID" in out
    assert out.count(SMOKE_BANNER) == 2  # above and below the numbers
    for label in METRIC_LABELS.values():
        assert f"\n{label} " in out


def test_demo_keeps_its_files_and_a_smoke_results_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out", str(out_dir), "--per-emotion", "3", "--json", "-q"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = read_results(out_dir / "results.json")
    assert printed["results"]["submission"]["digest"] == saved["submission"]["digest"]
    assert saved["smoke"] is True and saved["official_weights"] is False
    assert saved["run"] == {"kind": "reduced", "per_emotion": 3, "label": saved["run"]["label"]}
    assert "not the official protocol" in saved["run"]["label"]
    assert list(saved["metrics"]["overall"]) == list(METRIC_KEYS)
    assert all(saved["metrics"]["overall"][key]["n"] == 3 * len(EMOTION_NAMES) for key in METRIC_KEYS)
    assert saved["reference"]["sha256"] and saved["not_computed"] == {}
    assert {"submission", "emoset", "index", "reference.npz", "results.json"} <= {p.name for p in out_dir.iterdir()}


def test_demo_refuses_a_non_empty_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["demo", "--out", str(tmp_path), "-q"]) == 2
    assert "new or empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_demo_bad_per_emotion_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), "--per-emotion", "1", "-q"]) == 2
    assert "per-emotion" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
