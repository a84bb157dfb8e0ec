"""The runtime under which features are computed: the precision policy, and device + precision in the cache keys."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.utils.deterministic

from emogen_bench.cache import FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.evaluate import evaluate
from emogen_bench.features import tiny_extractors
from emogen_bench.pipeline import extract, items_from_report, read_image
from emogen_bench.runtime import PRECISION_POLICY, Runtime, policy_state, precision_policy
from emogen_bench.submission import validate_submission, write_example_submission
from emogen_bench.task import METRICS

PER_EMOTION = 2


@pytest.fixture(scope="module")
def submission(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_submission(tmp_path_factory.mktemp("runtime") / "sub", per_emotion=PER_EMOTION, size=256)


def _settings() -> dict[str, object]:
    return {
        "matmul": torch.backends.cuda.matmul.fp32_precision,
        "conv": torch.backends.cudnn.conv.fp32_precision,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "fill": torch.utils.deterministic.fill_uninitialized_memory,
    }


def test_the_policy_turns_tf32_off_and_determinism_on_inside_and_restores_torch_after() -> None:
    before = _settings()
    torch.backends.cudnn.benchmark = True  # a caller's own setting must come back
    try:
        with precision_policy("cpu") as applied:
            inside = _settings()
        after = _settings()
    finally:
        torch.backends.cudnn.benchmark = before["cudnn_benchmark"]
    assert inside == {"matmul": "ieee", "conv": "ieee", "cudnn_deterministic": True, "cudnn_benchmark": False,
                      "deterministic": True, "fill": False}  # fmt: skip
    assert applied == policy_state()
    assert after == {**before, "cudnn_benchmark": True}


def test_the_policy_changes_no_feature_on_the_cpu(submission: Path) -> None:
    items = items_from_report(validate_submission(submission, show_progress=False))
    images = [read_image(item.path, item.sha256, item.source) for item in items]
    for name, extractor in tiny_extractors().items():
        batch = torch.stack([extractor.preprocess(image) for image in images])
        outside = extractor(batch)
        with precision_policy("cpu"):
            inside = extractor(batch)
        for output in outside:
            assert np.array_equal(outside[output], inside[output]), (name, output)


def test_an_extractor_without_runtime_keeps_its_identity_key_and_each_runtime_gets_its_own() -> None:
    info = tiny_extractors(["emoset"])["emoset"].info
    document = {"name": info.name, "outputs": {k: list(v) for k, v in sorted(info.outputs.items())},
                "preprocess": info.preprocess_version, "artifacts": dict(sorted(info.artifacts.items())),
                "model_batch": METRICS.model_batch}  # fmt: skip
    identity = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:20]
    assert info.cache_key == identity  # what reference statistics record: unchanged by this issue

    assert Runtime("cpu").key_part() == {}  # the CPU reference runtime: caches filled before stay valid
    assert dataclasses.replace(info, runtime=Runtime("cpu").key_part()).cache_key == identity
    runtimes = [Runtime("cuda"), Runtime("mps"), Runtime("cpu", compile="inductor"), Runtime("cpu", "other")]
    keys = [dataclasses.replace(info, runtime=r.key_part()).cache_key for r in runtimes]
    assert len(set(keys + [identity])) == len(runtimes) + 1
    assert Runtime.for_device("cuda:1") == Runtime.for_device("cuda") == Runtime("cuda", PRECISION_POLICY, None)


def test_features_computed_on_the_cpu_are_never_served_to_another_device_or_to_compiled_models(
    submission: Path, tmp_path: Path
) -> None:
    items = items_from_report(validate_submission(submission, show_progress=False))
    extractors = tiny_extractors(["emoset", "semantic"])
    cache = FeatureCache(root=tmp_path / "cache")
    first = extract(items, extractors, cache=cache, device="cpu", num_workers=0, show_progress=False)
    positions = {item.sha256: [i] for i, item in enumerate(items)}
    for name, extractor in extractors.items():
        assert extractor.info.runtime == {}
        assert set(cache.get_many(extractor.info, positions)) == set(positions)  # the CPU keeps the identity key
        for other in (Runtime("cuda"), Runtime("cpu", compile="inductor")):
            assert cache.get_many(dataclasses.replace(extractor.info, runtime=other.key_part()), positions) == {}
    again = extract(items, extractors, cache=cache, device="cpu", num_workers=0, show_progress=False)
    assert again.counts["emoset"] == {"computed": 0, "cached": len(items)}
    for name in extractors:
        for output, value in first.features[name].items():
            assert np.array_equal(value, again.features[name][output])


def test_results_record_the_runtime_and_the_precision_settings(submission: Path, tmp_path: Path) -> None:
    config = EvalConfig(metrics=("emo_a_resnet50", "sem_c"), per_emotion=PER_EMOTION, device="cpu", num_workers=0,
                        show_progress=False)  # fmt: skip
    result = evaluate(submission, config, extractors=tiny_extractors(["emoset", "semantic"]),
                      cache=FeatureCache(root=tmp_path / "cache"))  # fmt: skip
    document = result.to_dict()
    assert document["environment"]["runtime"] == {"device": "cpu", "precision": "fp32-strict", "compile": None}
    assert document["environment"]["precision_settings"] == policy_state()
    assert document["config"]["compile"] is False
