"""``evaluate`` over a hostile or unusable cache (issue 12): never a number from an edited entry, never exit 70.

The tiny CLIP extractor (the smoke models) on the 8 x 2 example submission: Emo-A is 0.125 there.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest

from emogen_bench.cache import LAYOUT, FeatureCache, encode_summary
from emogen_bench.config import EvalConfig
from emogen_bench.distributed import World
from emogen_bench.errors import UsageError
from emogen_bench.evaluate import evaluate, fill_cache_for_rank
from emogen_bench.features import tiny_extractors
from emogen_bench.features.base import FeatureExtractor
from emogen_bench.results import EvaluationResult
from emogen_bench.submission import write_example_submission

CONFIG = EvalConfig(metrics=("emo_a", "sem_d"), per_emotion=2, device="cpu", num_workers=0, show_progress=False)
WARNING = "emogen-bench: warning: "


@pytest.fixture(scope="module")
def submission(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_submission(tmp_path_factory.mktemp("cache-evaluate") / "submission", per_emotion=2)


@pytest.fixture(scope="module")
def extractors() -> dict[str, FeatureExtractor]:
    return tiny_extractors(["clip"])


@pytest.fixture(scope="module")
def truth(submission: Path, extractors: dict[str, FeatureExtractor]) -> EvaluationResult:
    """The values with the cache off: what every run below must report."""
    return evaluate(submission, dataclasses.replace(CONFIG, cache=False), extractors=extractors)


def metrics_of(result: EvaluationResult) -> str:
    return json.dumps(result.to_dict()["metrics"], sort_keys=True)


def warnings_of(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith(WARNING)]


def warm_cache(root: Path, submission: Path, extractors: dict[str, FeatureExtractor]) -> Path:
    """Evaluate once into a cache at ``root``; the path of the metric-values entry it wrote."""
    evaluate(submission, CONFIG, extractors=extractors, cache=FeatureCache(root))
    [entry] = (root / LAYOUT / "summaries").rglob("metrics-*.json")
    return entry


def test_the_true_emo_a_is_one_eighth(truth: EvaluationResult) -> None:
    assert truth.overall["emo_a"].value == 0.125 and not truth.metrics_cached


def _edit(path: Path, change, *, reseal: bool) -> None:  # type: ignore[no-untyped-def]
    """Apply ``change`` to the cached document; ``reseal`` writes a fresh checksum too (a deliberate forgery)."""
    envelope = json.loads(path.read_text(encoding="utf-8"))
    change(envelope["document"])
    text = encode_summary(envelope["key"], envelope["document"]) if reseal else json.dumps(envelope).encode()
    path.write_bytes(text)


def _overall_value(document: dict) -> None:
    document["overall"]["emo_a"]["value"] = 0.999


def _emotion_value(document: dict) -> None:
    document["per_emotion"]["awe"]["emo_a"]["value"] = 1.0


def _overall_n(document: dict) -> None:
    document["overall"]["emo_a"]["n"] = 1600


def _interval(document: dict) -> None:
    document["overall"]["emo_a"]["ci95"] = [0.9, 1.0]


def test_an_edited_metric_value_is_recomputed_with_a_warning(
    tmp_path: Path, submission: Path, extractors: dict, truth: EvaluationResult, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = warm_cache(tmp_path / "cache", submission, extractors)
    _edit(entry, _overall_value, reseal=False)
    capsys.readouterr()
    again = evaluate(submission, CONFIG, extractors=extractors, cache=FeatureCache(tmp_path / "cache"))
    assert again.overall["emo_a"].value == 0.125 and metrics_of(again) == metrics_of(truth)
    assert not again.metrics_cached and "metrics" in again.timings
    assert again.features == {"clip": {"computed": 0, "cached": 16}}  # only the maths ran again
    [warning] = warnings_of(capsys)
    assert str(entry) in warning and "does not match its checksum" in warning and "recomputed" in warning
    rewritten = evaluate(submission, CONFIG, extractors=extractors, cache=FeatureCache(tmp_path / "cache"))
    assert rewritten.metrics_cached and metrics_of(rewritten) == metrics_of(truth)  # the entry was repaired


def _no_images(document: dict) -> None:
    document["overall"]["emo_a"]["confusion"] = [[0] * 8] * 8


def _ragged(document: dict) -> None:
    document["overall"]["emo_a"]["confusion"] = [[1, 2], [3]]


@pytest.mark.parametrize("change", [_overall_value, _emotion_value, _overall_n, _interval, _no_images, _ragged])
def test_a_resealed_emo_a_that_disagrees_with_its_confusion_matrix_is_recomputed(
    tmp_path: Path, submission: Path, extractors: dict, truth: EvaluationResult, capsys: pytest.CaptureFixture[str],
    change,  # type: ignore[no-untyped-def]
) -> None:  # fmt: skip
    entry = warm_cache(tmp_path / "cache", submission, extractors)
    _edit(entry, change, reseal=True)  # the checksum matches: only the cross-check can tell
    capsys.readouterr()
    again = evaluate(submission, CONFIG, extractors=extractors, cache=FeatureCache(tmp_path / "cache"))
    assert not again.metrics_cached and metrics_of(again) == metrics_of(truth)
    [warning] = warnings_of(capsys)
    assert str(entry) in warning and "emo_a" in warning and "confusion matrix" in warning


def test_an_edited_feature_array_is_recomputed_with_a_warning(
    tmp_path: Path, submission: Path, extractors: dict, truth: EvaluationResult, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    warm_cache(root, submission, extractors).unlink()  # no metric values: the features are read
    entries = sorted((root / LAYOUT / "items" / "clip").rglob("*.npz"))
    assert len(entries) == 16
    with np.load(entries[0]) as archive:
        members = {name: archive[name] for name in archive.files}
    members["emotion_logits"] = np.eye(8, dtype=members["emotion_logits"].dtype)[0] * 100  # still valid arrays
    buffer = io.BytesIO()
    np.savez(buffer, **members)  # the key and checksum members kept as they were
    entries[0].write_bytes(buffer.getvalue())
    capsys.readouterr()
    again = evaluate(submission, CONFIG, extractors=extractors, cache=FeatureCache(root))
    assert again.features == {"clip": {"computed": 1, "cached": 15}}
    assert not again.metrics_cached and metrics_of(again) == metrics_of(truth)
    [warning] = warnings_of(capsys)
    assert str(entries[0]) in warning and "does not match its checksum" in warning


def test_a_cache_path_that_is_a_regular_file_is_one_warning_and_the_same_numbers(
    tmp_path: Path, submission: Path, extractors: dict, truth: EvaluationResult, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "features"
    root.write_text("keep me", encoding="utf-8")
    capsys.readouterr()
    result = evaluate(submission, CONFIG, extractors=extractors, cache=FeatureCache(root))
    assert metrics_of(result) == metrics_of(truth) and not result.metrics_cached
    [warning] = warnings_of(capsys)
    assert f"the feature cache folder {root} cannot be used ({root} is a regular file, not a folder)" in warning
    assert root.read_text(encoding="utf-8") == "keep me"


def test_a_cache_path_under_a_regular_file_is_one_warning_and_the_same_numbers(
    tmp_path: Path, submission: Path, extractors: dict, truth: EvaluationResult, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("keep me", encoding="utf-8")
    capsys.readouterr()
    result = evaluate(submission, CONFIG, extractors=extractors, cache=FeatureCache(blocker / "features"))
    assert metrics_of(result) == metrics_of(truth)
    [warning] = warnings_of(capsys)
    assert str(blocker / "features") in warning and f"{blocker} is a regular file" in warning


def test_writes_that_fail_during_the_run_are_one_warning_and_the_same_numbers(
    tmp_path: Path, submission: Path, extractors: dict, truth: EvaluationResult, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    (root / LAYOUT).mkdir(parents=True)
    (root / LAYOUT / "items").write_text("blocker", encoding="utf-8")  # the probe passes, every feature write fails
    capsys.readouterr()
    result = evaluate(submission, CONFIG, extractors=extractors, cache=FeatureCache(root))
    assert metrics_of(result) == metrics_of(truth)
    [warning] = warnings_of(capsys)
    assert f"cannot write to the feature cache {root}" in warning and "the run goes on" in warning
    assert not (root / LAYOUT / "summaries").exists()  # nothing more was stored after the failure


def test_a_data_parallel_share_refuses_an_unusable_cache_folder_naming_it(
    tmp_path: Path, submission: Path, extractors: dict
) -> None:
    root = tmp_path / "features"
    root.write_text("keep me", encoding="utf-8")
    with pytest.raises(UsageError) as raised:
        fill_cache_for_rank(submission, CONFIG, World(0, 2), extractors=extractors, cache=FeatureCache(root))
    assert f"the feature cache folder {root} cannot be used ({root} is a regular file" in str(raised.value)
    assert root.read_text(encoding="utf-8") == "keep me"
