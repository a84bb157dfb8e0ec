"""One small evaluation with the tiny models and its per-image rows, shared by the per-image and report tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emogen_bench.cache import FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.features import tiny_extractors
from emogen_bench.per_image import Row, evaluate_per_image, write_per_image
from emogen_bench.results import EvaluationResult
from emogen_bench.submission import write_example_submission

#: Images per emotion: 3, so each emotion's lowest and highest images differ with a count of 1.
PER_EMOTION = 3
#: Every metric that needs no reference statistics, but LPIPS (its tiny model would only add time here).
METRICS = ("emo_a", "emo_a_resnet50", "sem_c", "sem_d")


@dataclass(frozen=True)
class Evaluated:
    """The submission, the results JSON and the per-image CSV of one evaluation (all read-only by convention)."""

    submission: Path
    results: Path
    per_image: Path
    result: EvaluationResult
    rows: list[Row]


def evaluate_tiny(folder: Path) -> Evaluated:
    """Evaluate the example submission in ``folder`` with the tiny models; write results.json and per_image.csv."""
    submission = write_example_submission(folder / "submission", per_emotion=PER_EMOTION)
    config = EvalConfig(per_emotion=PER_EMOTION, device="cpu", num_workers=0, show_progress=False, metrics=METRICS)
    extractors = tiny_extractors(("clip", "emoset", "semantic"))
    result, rows = evaluate_per_image(submission, config, extractors=extractors, cache=FeatureCache(root=folder / "c"))
    results = result.write(folder / "results.json")
    per_image = write_per_image(rows, folder / "per_image.csv")
    return Evaluated(submission, results, per_image, result, rows)
