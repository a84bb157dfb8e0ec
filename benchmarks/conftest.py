"""Fixtures of the speed benchmarks: one fixed image set and the real architectures with random weights.

Every cache is sent to a temporary folder at import time (as in
``tests/conftest.py``), so a benchmark run never touches the user's cache.
Run with ``pytest benchmarks -m benchmark --benchmark-enable``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_CACHE_ROOT = Path(tempfile.mkdtemp(prefix="emogen-bench-benchmarks-"))
for _name, _sub in (("HF_HOME", "hf"), ("TORCH_HOME", "torch"), ("EMOGEN_BENCH_HOME", "emogen-bench")):
    os.environ[_name] = str(_CACHE_ROOT / _sub)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

#: The fixed image set: 8 emotions x PER_EMOTION synthetic 512x512 PNGs (seed 0).
PER_EMOTION = 4
IMAGE_SIZE = 512


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_CACHE_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def submission_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixed image set written as a (reduced) benchmark submission."""
    from emogen_bench.submission.example import write_example_submission

    return write_example_submission(
        tmp_path_factory.mktemp("bench") / "submission", per_emotion=PER_EMOTION, size=IMAGE_SIZE, seed=0
    )


@pytest.fixture(scope="session")
def image_items(submission_root: Path) -> list:
    """The validated image set as pipeline items, in canonical order."""
    from emogen_bench.pipeline import items_from_report
    from emogen_bench.submission import validate_submission

    return items_from_report(validate_submission(submission_root, show_progress=False))


@pytest.fixture(scope="session")
def saved_reference(extractors: dict, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Synthetic 2048-d reference statistics for the benchmark's Inception, written to a file (so it has a sha256)."""
    from benchmarks.synthetic import reference_stats
    from emogen_bench.reference_stats import write_reference_stats

    stats = reference_stats(extractor_info=extractors["inception"].info)
    return write_reference_stats(stats, tmp_path_factory.mktemp("reference") / "reference.npz")


@pytest.fixture(scope="session")
def extractors() -> dict:
    """All five extractors around the real architectures, random weights (built once: ~15 s)."""
    from benchmarks.models import random_extractors

    return random_extractors(seed=0)


@pytest.fixture(scope="session")
def decoded(image_items: list) -> list:
    """The images decoded once (8-bit RGB arrays), for the stage benchmarks."""
    from emogen_bench.pipeline import read_image

    return [read_image(item.path, item.sha256) for item in image_items]


@pytest.fixture(scope="session")
def preprocessed(decoded: list, extractors: dict) -> dict:
    """Each extractor's stacked inputs for the whole set, for the bare-forward benchmarks."""
    import torch

    return {name: torch.stack([ex.preprocess(image) for image in decoded]) for name, ex in extractors.items()}


@pytest.fixture(scope="session")
def populated_caches() -> dict:
    """Cache roots filled by the cold cached run, shared with the warm run (filled there if run alone)."""
    return {}
