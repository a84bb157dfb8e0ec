"""Intervals stay within each metric's domain (issue 13): clipped to it, and the clipping recorded and shown.

Sem-D's jackknife at 3 images per emotion (tiny CLIP on the synthetic example) reaches below 0 without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emogen_bench.cache import FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.evaluate import evaluate
from emogen_bench.features import tiny_extractors
from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.intervals import METRIC_DOMAINS, clip_interval, clip_to_domain
from emogen_bench.report import CLIPPED_MARK, render_markdown, render_table
from emogen_bench.results import METRIC_LABELS
from emogen_bench.submission import write_example_submission

CONFIG = EvalConfig(metrics=("emo_a", "sem_d"), per_emotion=3, device="cpu", num_workers=0, show_progress=False)


def test_every_metric_has_a_domain() -> None:
    assert set(METRIC_DOMAINS) == set(METRIC_LABELS)
    assert all(low == 0.0 for low, _ in METRIC_DOMAINS.values())


@pytest.mark.parametrize(
    ("ci95", "domain", "clipped", "expected"),
    [
        ((-621.0, 1876.0), (0.0, None), ("low",), (0.0, 1876.0)),
        ((-0.2, 1.3), (0.0, 1.0), ("low", "high"), (0.0, 1.0)),
        ((0.9, 1.2), (0.0, 1.0), ("high",), (0.9, 1.0)),
        ((-0.0007, -0.0003), (0.0, None), ("low", "high"), (0.0, 0.0)),
        ((0.1, 0.4), (0.0, 1.0), (), (0.1, 0.4)),
        ((0.0, 5.0), (0.0, None), (), (0.0, 5.0)),  # a bound on the edge is inside
    ],
)
def test_clip_interval(ci95: tuple, domain: tuple, clipped: tuple, expected: tuple) -> None:
    assert clip_interval(ci95, domain) == (expected, clipped)


def test_kid_keeps_its_unbiased_value_and_clips_only_its_interval() -> None:
    value = clip_to_domain("kid", MetricValue(-0.0005, (-0.0007, -0.0003), 16, {"std": 0.1}))
    assert value == MetricValue(-0.0005, (0.0, 0.0), 16, {"std": 0.1, "clipped": ["low", "high"]})


def test_clipping_is_idempotent_and_leaves_values_inside_alone() -> None:
    once = clip_to_domain("sem_d", MetricValue(600.0, (-621.0, 1876.0), 3))
    assert clip_to_domain("sem_d", once) == once and once.to_dict()["clipped"] == ["low"]
    inside = MetricValue(0.5, (0.2, 0.7), 24)
    assert clip_to_domain("emo_a", inside) is inside
    assert clip_to_domain("fid", MetricValue(3.0, None, 3)).ci95 is None


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("domain")
    return write_example_submission(base / "submission", per_emotion=3), base / "cache"


@pytest.fixture(scope="module")
def document(small: tuple[Path, Path]) -> dict:
    submission, cache = small
    return evaluate(submission, CONFIG, extractors=tiny_extractors(["clip"]), cache=FeatureCache(cache)).to_dict()


def test_sem_d_at_three_images_is_clipped_at_zero_and_says_so(document: dict) -> None:
    scopes = [document["metrics"]["overall"], *document["metrics"]["per_emotion"].values()]
    for values in scopes:
        sem_d = values["sem_d"]
        assert sem_d["ci95"][0] == 0.0 and sem_d["clipped"] == ["low"]
        assert 0.0 < sem_d["value"] < sem_d["ci95"][1]
        assert "clipped" not in values["emo_a"]  # Wilson intervals are inside [0, 1] already
    assert all(low >= 0.0 for values in scopes for value in values.values() for low in value["ci95"][:1])


def test_a_cached_evaluation_reports_the_same_clipped_values(small: tuple[Path, Path], document: dict) -> None:
    submission, cache = small
    again = evaluate(submission, CONFIG, extractors=tiny_extractors(["clip"]), cache=FeatureCache(cache)).to_dict()
    assert again["metrics_cached"] is True
    assert json.dumps(again["metrics"], sort_keys=True) == json.dumps(document["metrics"], sort_keys=True)


def test_the_table_marks_a_clipped_interval_and_explains_it(document: dict) -> None:
    text = render_table(document)
    row = next(line for line in text.splitlines() if line.startswith("Sem-D "))
    assert row.split()[2] == "[0.0000," and row.split()[3].endswith("]" + CLIPPED_MARK)
    emo_a = next(line for line in text.splitlines() if line.startswith("Emo-A "))
    assert CLIPPED_MARK not in emo_a
    assert f'{CLIPPED_MARK} Sem-D: interval clipped to the metric\'s range (low end set to 0.0000; "clipped"' in text
    markdown = render_markdown(document)
    assert f"]{CLIPPED_MARK} |" in markdown and "Sem-D: interval clipped" in markdown


def test_an_unclipped_document_has_no_mark(document: dict) -> None:
    plain = json.loads(json.dumps(document))
    for values in [plain["metrics"]["overall"], *plain["metrics"]["per_emotion"].values()]:
        values["sem_d"] = MetricValue(0.5, (0.1, 0.9), 3).to_dict()
    assert CLIPPED_MARK not in render_table(plain) and "clipped" not in render_table(plain)
