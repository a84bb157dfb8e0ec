"""Per-image results (``evaluate --per-image``): one row per image, from the features the metrics used.

The rows are read back here with the ``csv`` module (not the package's reader) and the metrics of the
results JSON are recomputed from them: they must be equal, not close.
"""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from per_image_fixtures import PER_EMOTION, Evaluated, evaluate_tiny

from emogen_bench.cli import main
from emogen_bench.errors import InvalidInputError
from emogen_bench.metrics.pairwise import PairwiseSummary
from emogen_bench.per_image import COLUMNS, read_per_image, rows_from_features, write_per_image
from emogen_bench.pipeline import ImageItem
from emogen_bench.protocols import get_protocol
from emogen_bench.protocols.base import Features
from emogen_bench.results import read_results
from emogen_bench.task import EMOTION_NAMES

DOCS = Path(__file__).resolve().parents[1] / "docs" / "report.md"
HAS_PARQUET = all(importlib.util.find_spec(name) is not None for name in ("pandas", "pyarrow"))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    return evaluate_tiny(tmp_path_factory.mktemp("per-image"))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("key", ["emo_a", "emo_a_resnet50"])
def test_emo_a_recomputed_from_the_csv_equals_the_results_json(evaluated: Evaluated, key: str) -> None:
    rows = _csv_rows(evaluated.per_image)
    document = read_results(evaluated.results)
    overall = document["metrics"]["overall"][key]
    assert len(rows) == overall["n"] == PER_EMOTION * len(EMOTION_NAMES)
    correct = sum(row[f"{key}_predicted"] == row["emotion"] for row in rows)
    assert correct / len(rows) == overall["value"]
    probabilities = np.array([float(row[f"{key}_target_prob"]) for row in rows])
    assert probabilities.mean() == overall["mean_target_probability"]
    confusion = np.zeros((8, 8), dtype=int)
    for row in rows:
        confusion[EMOTION_NAMES.index(row["emotion"]), EMOTION_NAMES.index(row[f"{key}_predicted"])] += 1
    assert confusion.tolist() == overall["confusion"]
    for emotion, values in document["metrics"]["per_emotion"].items():
        mine = [row for row in rows if row["emotion"] == emotion]
        assert sum(r[f"{key}_predicted"] == emotion for r in mine) / len(mine) == values[key]["value"]
        assert (
            np.array([float(r[f"{key}_target_prob"]) for r in mine]).mean() == (values[key]["mean_target_probability"])
        )


def test_sem_c_recomputed_from_the_csv_equals_the_results_json(evaluated: Evaluated) -> None:
    rows = _csv_rows(evaluated.per_image)
    document = read_results(evaluated.results)
    imagenet = np.array([float(row["sem_c_imagenet_prob"]) for row in rows])
    places = np.array([float(row["sem_c_places365_prob"]) for row in rows])
    assert np.maximum(imagenet, places).mean() == document["metrics"]["overall"]["sem_c"]["value"]
    emotions = np.array([row["emotion"] for row in rows])
    for emotion, values in document["metrics"]["per_emotion"].items():
        mask = emotions == emotion
        assert np.maximum(imagenet[mask], places[mask]).mean() == values["sem_c"]["value"]
    winners = ["imagenet" if a > b else "places365" if b > a else "tie" for a, b in zip(imagenet, places)]
    assert [row["sem_c_winner"] for row in rows] == winners


def test_rows_name_every_manifest_image_in_canonical_order(evaluated: Evaluated) -> None:
    rows = _csv_rows(evaluated.per_image)
    manifest = read_results(evaluated.results)["submission"]["manifest"]
    assert sorted((row["path"], row["sha256"]) for row in rows) == sorted(map(tuple, manifest))
    assert [row["path"] for row in rows] == sorted(
        (row["path"] for row in rows), key=lambda p: (EMOTION_NAMES.index(p.split("/")[0]), p)
    )
    assert all(row["path"].split("/")[0] == row["emotion"] for row in rows)
    assert all((evaluated.submission / row["path"]).is_file() for row in rows)


def test_the_package_reader_gives_back_the_rows_exactly(evaluated: Evaluated) -> None:
    assert read_per_image(evaluated.per_image) == evaluated.rows


def test_columns_are_stable_and_each_is_documented(evaluated: Evaluated) -> None:
    header = evaluated.per_image.read_text().splitlines()[0].split(",")
    assert tuple(header) == COLUMNS
    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", DOCS.read_text(), flags=re.M)
    assert tuple(documented) == COLUMNS


def test_per_image_rows_come_even_when_the_metric_values_are_cached(evaluated: Evaluated, tmp_path: Path) -> None:
    """A warm cache holds the metric values; the rows need the features, so the pass runs from the cache."""
    from emogen_bench.cache import FeatureCache
    from emogen_bench.config import EvalConfig
    from emogen_bench.evaluate import evaluate
    from emogen_bench.features import tiny_extractors
    from emogen_bench.per_image import evaluate_per_image

    config = EvalConfig(per_emotion=PER_EMOTION, device="cpu", num_workers=0, show_progress=False, metrics=("emo_a",))
    extractors, cache = tiny_extractors(("clip",)), FeatureCache(root=tmp_path / "cache")
    first = evaluate(evaluated.submission, config, extractors=extractors, cache=cache)
    assert first.metrics_cached is False
    assert evaluate(evaluated.submission, config, extractors=extractors, cache=cache).metrics_cached is True
    result, rows = evaluate_per_image(evaluated.submission, config, extractors=extractors, cache=cache)
    assert result.metrics_cached is False and result.features["clip"] == {"computed": 0, "cached": len(rows)}
    assert result.to_dict()["metrics"] == first.to_dict()["metrics"]
    assert [(r["emo_a_predicted"], r["emo_a_target_prob"]) for r in rows] == [
        (r["emo_a_predicted"], r["emo_a_target_prob"]) for r in evaluated.rows
    ]
    assert all(r["sem_c_winner"] is None and r["emo_a_resnet50_predicted"] is None for r in rows)


def test_unread_files_and_metrics_not_run_leave_empty_cells() -> None:
    """Under emogen-paper-code Emo-A and Sem-C read only *jpg names: the PNG's cells are empty (None)."""
    items = [
        ImageItem(Path("/s/awe/a.jpg"), "awe/a.jpg", "a" * 64, "awe", "submission"),
        ImageItem(Path("/s/awe/b.png"), "awe/b.png", "b" * 64, "awe", "submission"),
    ]
    protocol = get_protocol("emogen-paper-code")
    selection = protocol.select(items, ("emo_a", "sem_c"), pairs=10, seed=0)
    assert [item.relpath for item in selection.files["emo_a"]] == ["awe/a.jpg"]
    logits = np.array([[0.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    semantic = {"imagenet_max_prob": np.array([0.25], np.float32), "places_max_prob": np.array([0.25], np.float32)}
    features = Features({"emo_a": {"clip": {"emotion_logits": logits}}, "sem_c": {"semantic": semantic}},
                        dict[str, PairwiseSummary]())  # fmt: skip
    jpg, png = rows_from_features(items, selection, features)
    shifted = np.exp(logits[0].astype(np.float64) - 3.0)
    assert jpg["emo_a_predicted"] == "awe" and jpg["emo_a_target_prob"] == shifted[1] / shifted.sum()
    assert (jpg["sem_c_imagenet_prob"], jpg["sem_c_places365_prob"], jpg["sem_c_winner"]) == (0.25, 0.25, "tie")
    assert jpg["emo_a_resnet50_predicted"] is None and jpg["emo_a_resnet50_target_prob"] is None
    assert {k: v for k, v in png.items() if v is not None} == {"path": "awe/b.png", "sha256": "b" * 64,
                                                               "emotion": "awe"}  # fmt: skip


def test_the_reader_refuses_a_file_of_another_shape_naming_the_line(tmp_path: Path) -> None:
    good = ",".join(COLUMNS) + "\nawe/a.png," + "a" * 64 + ",awe,awe,0.5,,,0.1,0.2,places365\n"
    path = tmp_path / "rows.csv"
    path.write_text(good)
    assert read_per_image(path)[0]["emo_a_target_prob"] == 0.5
    path.write_text(good.replace("0.5", "1.5"))
    with pytest.raises(InvalidInputError, match=r"rows\.csv, line 2: emo_a_target_prob is '1\.5', not a probab"):
        read_per_image(path)
    path.write_text(good.replace(",awe,awe,", ",awe,joy,"))
    with pytest.raises(InvalidInputError, match=r"line 2: emo_a_predicted is 'joy'; expected one of amusement"):
        read_per_image(path)
    path.write_text("path,emotion\nawe/a.png,awe\n")
    with pytest.raises(InvalidInputError, match=r"rows\.csv: not a per-image results file of this version"):
        read_per_image(path)


# --- the command line: checked before any work -------------------------------------------------------------------


def _evaluate(tmp_path: Path, *extra: str) -> list[str]:
    return ["evaluate", str(tmp_path / "sub"), "--per-emotion", "3", "--no-cache", "-q", *extra]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("rows.txt", "the file name must end in .csv or .parquet"),
        ("rows", "the file name must end in .csv or .parquet"),
    ],
)
def test_per_image_with_another_ending_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    assert main(_evaluate(tmp_path, "--per-image", str(tmp_path / name))) == 2
    err = capsys.readouterr().err
    assert f"--per-image {tmp_path / name}: {message}" in err
    assert not (tmp_path / name).exists()


@pytest.mark.skipif(not HAS_PARQUET, reason="Parquet needs pandas and pyarrow (the error is tested without them)")
def test_parquet_round_trips_the_rows(evaluated: Evaluated, tmp_path: Path) -> None:
    target = write_per_image(evaluated.rows, tmp_path / "rows.parquet")
    assert read_per_image(target) == evaluated.rows


def test_parquet_without_its_packages_names_the_missing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # Python's own mark for "cannot be imported"
    assert main(_evaluate(tmp_path, "--per-image", str(tmp_path / "rows.parquet"))) == 2
    err = capsys.readouterr().err
    missing = [n for n in ("pandas", "pyarrow") if importlib.util.find_spec(n) is None]
    assert "pyarrow" in missing
    assert f"writing Parquet needs {' and '.join(missing)}, which is not installed" in err
    assert f"`pip install {' '.join(missing)}`, or write CSV" in err
    assert not (tmp_path / "rows.parquet").exists()


def test_an_existing_per_image_file_is_kept_without_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "rows.csv"
    target.write_text("mine\n")
    assert main(_evaluate(tmp_path, "--per-image", str(target))) == 2
    assert f"--per-image {target} already exists; pass --overwrite" in capsys.readouterr().err
    assert target.read_text() == "mine\n"


def test_per_image_inside_the_submission_or_equal_to_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sub").mkdir()
    inside = tmp_path / "sub" / "rows.csv"
    assert main(_evaluate(tmp_path, "--per-image", str(inside))) == 2
    assert f"--per-image {inside} is inside the submission" in capsys.readouterr().err
    same = tmp_path / "out.csv"
    assert main(_evaluate(tmp_path, "--out", str(same), "--per-image", str(same))) == 2
    assert f"--per-image {same} is also --out; give two different files" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_write_per_image_refuses_to_replace_a_file_unless_asked(evaluated: Evaluated, tmp_path: Path) -> None:
    from emogen_bench.errors import UsageError

    target = tmp_path / "rows.csv"
    target.write_text("mine\n")
    with pytest.raises(UsageError, match="already exists"):
        write_per_image(evaluated.rows, target)
    assert target.read_text() == "mine\n"
    write_per_image(evaluated.rows, target, overwrite=True)
    assert read_per_image(target) == evaluated.rows


@pytest.mark.slow
def test_the_command_writes_rows_that_recompute_its_results(
    e2e_evaluation, e2e_submission: Path, real_layout_weights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """``evaluate --per-image`` end to end with weights in the real layouts (warm feature cache)."""
    monkeypatch.setenv("EMOGEN_BENCH_HOME", str(e2e_evaluation.home))
    out, rows_file = tmp_path / "results.json", tmp_path / "rows.csv"
    code = main([
        "evaluate", str(e2e_submission), "--per-emotion", "3", "--weights-override", str(real_layout_weights.override),
        "--metrics", "emo_a", "--device", "cpu", "--workers", "0", "-q", "--out", str(out),
        "--per-image", str(rows_file),
    ])  # fmt: skip
    assert code == 0
    rows, document = _csv_rows(rows_file), read_results(out)
    assert document["metrics"]["overall"]["emo_a"] == e2e_evaluation.result.to_dict()["metrics"]["overall"]["emo_a"]
    correct = sum(row["emo_a_predicted"] == row["emotion"] for row in rows)
    assert correct / len(rows) == document["metrics"]["overall"]["emo_a"]["value"]
    assert (
        np.array([float(r["emo_a_target_prob"]) for r in rows]).mean()
        == (document["metrics"]["overall"]["emo_a"]["mean_target_probability"])
    )
    assert all(row["sem_c_winner"] == "" for row in rows)
