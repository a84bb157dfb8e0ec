"""``emogen-bench demo``: the whole benchmark on synthetic data, to prove an install.

It writes a synthetic submission and a synthetic miniature EmoSet, prepares the
EmoSet index, builds reference statistics, and evaluates the submission, all
with a tiny deterministic model set built in code.  No weights, no network.
Everything it prints is labelled a smoke run: the numbers mean nothing, and
this is never a fallback for missing real weights.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from emogen_bench.cache import FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.data import prepare_emoset
from emogen_bench.errors import UsageError
from emogen_bench.evaluate import evaluate
from emogen_bench.features import tiny_extractors
from emogen_bench.reference_stats import build_reference_stats
from emogen_bench.results import EvaluationResult
from emogen_bench.submission import validate_submission, write_example_submission
from emogen_bench.submission.example import example_image
from emogen_bench.submission.validate import ValidationReport, resolve_run
from emogen_bench.task import EMOTIONS

DEMO_PER_EMOTION = 4
DEMO_LABEL = "install check on synthetic images with tiny random models (nothing here measures a method)"
#: Synthetic EmoSet: images per emotion in each split, and their size.
_EMOSET_SPLITS = {"train": 3, "val": 1, "test": 2}
_EMOSET_SIZE = 96
_SCENES = ("amusement park", "mountain", "meadow", "stadium", "street", "garbage dump", "forest path", "cemetery")


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: where its files went (if kept), the validation report and the evaluation."""

    workdir: Path
    kept: bool
    validation: ValidationReport
    result: EvaluationResult

    @property
    def ok(self) -> bool:
        return self.validation.valid

    def to_dict(self) -> dict[str, Any]:
        return {
            "demo": DEMO_LABEL,
            "smoke": True,
            "workdir": str(self.workdir) if self.kept else None,
            "validation": self.validation.to_dict(),
            "results": self.result.to_dict(),
        }


def write_synthetic_emoset(root: Path, *, seed: int = 1) -> Path:
    """A miniature folder in EmoSet's real layout (images, annotations, split files), synthetic images."""
    splits: dict[str, list[list[str]]] = {name: [] for name in _EMOSET_SPLITS}
    number = 0
    for emotion in EMOTIONS:
        (root / "image" / emotion.name).mkdir(parents=True)
        (root / "annotation" / emotion.name).mkdir(parents=True)
        for split, count in _EMOSET_SPLITS.items():
            for _ in range(count):
                stem = f"{emotion.name}_{number:05d}"
                image = f"image/{emotion.name}/{stem}.jpg"
                annotation = f"annotation/{emotion.name}/{stem}.json"
                pixels = example_image(emotion.id, seed * 100_003 + number, _EMOSET_SIZE)
                Image.fromarray(pixels).save(root / image, quality=95)
                (root / annotation).write_text(json.dumps({"scene": _SCENES[emotion.id], "object": ["Person"]}))
                splits[split].append([emotion.name, stem, image, annotation])
                number += 1
    for split, entries in splits.items():
        (root / f"{split}.json").write_text(json.dumps(entries))
    return root


def _run(workdir: Path, per_emotion: int, show_progress: bool) -> tuple[ValidationReport, EvaluationResult]:
    submission = write_example_submission(workdir / "submission", per_emotion=per_emotion)
    validation = validate_submission(submission, per_emotion=per_emotion, show_progress=show_progress)
    emoset = write_synthetic_emoset(workdir / "emoset")
    prepare_emoset(emoset, workdir / "index", show_progress=show_progress)
    extractors = tiny_extractors()
    cache = FeatureCache(root=workdir / "cache")
    reference = build_reference_stats(
        workdir / "index",
        emoset,
        workdir / "reference.npz",
        extractor=extractors["inception"],
        cache=cache,
        num_workers=0,
        device="cpu",
        show_progress=show_progress,
    )
    config = EvalConfig(per_emotion=per_emotion, device="cpu", num_workers=0, show_progress=show_progress)
    result = evaluate(submission, config, extractors=extractors, reference=reference, cache=cache)
    return validation, result


def run_demo(
    out: str | Path | None = None, *, per_emotion: int = DEMO_PER_EMOTION, show_progress: bool = True
) -> DemoResult:
    """Run the demo in a temporary folder (removed afterwards), or in ``out`` (new or empty; kept)."""
    resolve_run(per_emotion)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="emogen-bench-demo-") as scratch:
            validation, result = _run(Path(scratch), per_emotion, show_progress)
        return DemoResult(Path(scratch), False, validation, result)
    workdir = Path(out)
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise UsageError(f"--out {workdir} must be a new or empty folder; nothing was written")
    workdir.mkdir(parents=True, exist_ok=True)
    validation, result = _run(workdir, per_emotion, show_progress)
    result.write(workdir / "results.json")
    return DemoResult(workdir, True, validation, result)
