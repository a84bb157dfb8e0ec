"""``emogen-bench demo``: the whole benchmark on synthetic data, to prove an install.

It writes a synthetic submission and a synthetic miniature EmoSet, prepares the
EmoSet index, builds reference statistics, and evaluates the submission, all
with a tiny deterministic model set built in code.  No weights, no network.
The miniature EmoSet is drawn from another synthetic distribution than the
submission (diagonal stripes in the opposite hue instead of soft gradients), so
FID and KID measure a real gap, as they would between a method and EmoSet, and
a newcomer does not read an FID of 0.00 as a broken install.
Everything it prints is labelled a smoke run: the numbers mean nothing, and
this is never a fallback for missing real weights.
"""

from __future__ import annotations

import colorsys
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
from emogen_bench.submission.validate import ValidationReport, resolve_run
from emogen_bench.task import EMOTIONS

DEMO_PER_EMOTION = 4
DEMO_LABEL = "install check on synthetic images with tiny random models (nothing here measures a method)"
#: Synthetic EmoSet: images per emotion in each split, and their size.
_EMOSET_SPLITS = {"train": 3, "val": 1, "test": 2}
_EMOSET_SIZE = 96
#: The reference images' noise (8-bit levels): stronger than the submission's, one more difference in texture.
_REFERENCE_NOISE_STD = 30.0
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


def reference_image(emotion_id: int, image_seed: int, size: int) -> np.ndarray:
    """A ``size x size x 3`` uint8 image of the demo's EmoSet: diagonal stripes of a seeded width in the hue
    opposite to the emotion's in the example submission, plus noise (another distribution than the submission's).
    """
    rng = np.random.default_rng(image_seed)
    hue = (emotion_id / len(EMOTIONS) + 0.5) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, 0.9, 0.6)) * 255.0
    rows, columns = np.mgrid[0:size, 0:size]
    stripes = ((rows + columns) // int(rng.integers(6, 24)) % 2)[..., None]
    pixels = colour * (0.5 + 0.5 * stripes) + rng.normal(0.0, _REFERENCE_NOISE_STD, (size, size, 3))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def write_synthetic_emoset(root: Path, *, seed: int = 1) -> Path:
    """A miniature folder in EmoSet's real layout (images, annotations, split files), synthetic images
    (:func:`reference_image`)."""
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
                pixels = reference_image(emotion.id, seed * 100_003 + number, _EMOSET_SIZE)
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
