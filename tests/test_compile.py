"""``--compile``: torch.compile'd models against eager ones, and what a compiled run records (slow: inductor
compiles each model in C++, tens of seconds on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tolerances import network_bound

from emogen_bench.cache import FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.evaluate import evaluate
from emogen_bench.features import tiny_extractors
from emogen_bench.pipeline import items_from_report, read_image
from emogen_bench.runtime import Runtime
from emogen_bench.submission import validate_submission, write_example_submission

pytestmark = pytest.mark.slow
PER_EMOTION = 2


@pytest.fixture(scope="module")
def submission(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_submission(tmp_path_factory.mktemp("compile") / "sub", per_emotion=PER_EMOTION, size=256)


def test_compiled_logits_are_within_the_float32_rounding_bound_of_eager_ones(submission: Path) -> None:
    """Eager and compiled are two float32 evaluation orders of one conv/ReLU/pool/linear chain: each is within
    gamma_K |W|...|x| of the exact logits (tests/tolerances.py), so they are within twice that of each other."""
    extractor = tiny_extractors(["emoset"])["emoset"]
    compiled = extractor.for_runtime(Runtime("cpu", compile="inductor"))
    assert compiled.info.runtime["compile"] == "inductor" and extractor.info.runtime == {}
    items = items_from_report(validate_submission(submission, show_progress=False))
    batch = torch.stack([extractor.preprocess(read_image(i.path, i.sha256, i.source)) for i in items])
    eager, fast = extractor(batch)["logits"], compiled(batch)["logits"]
    model_input = torch.ones((1, 3, 224, 224))  # |(x / 255 - 0.5) / 0.5| <= 1 for every 8-bit pixel
    bound, gamma_k = network_bound(list(extractor.model), model_input)
    assert np.all(np.abs(eager - fast) <= 2 * gamma_k * bound)
    assert eager.shape == fast.shape == (len(items), 8)


def test_a_compiled_run_records_it_and_never_reuses_eager_features(submission: Path, tmp_path: Path) -> None:
    cache = FeatureCache(root=tmp_path / "cache")
    base = dict(metrics=("emo_a_resnet50",), per_emotion=PER_EMOTION, device="cpu", num_workers=0,
                show_progress=False)  # fmt: skip
    eager = evaluate(submission, EvalConfig(**base), extractors=tiny_extractors(["emoset"]), cache=cache)
    compiled = evaluate(submission, EvalConfig(**base, compile=True), extractors=tiny_extractors(["emoset"]),
                        cache=cache)  # fmt: skip
    n = 8 * PER_EMOTION
    assert eager.features["emoset"] == {"computed": n, "cached": 0}
    assert compiled.features["emoset"] == {"computed": n, "cached": 0}  # eager features are not served
    assert compiled.metrics_cached is False
    document = compiled.to_dict()
    assert document["environment"]["runtime"]["compile"] == "inductor"
    assert document["config"]["compile"] is True
