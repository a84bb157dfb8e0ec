"""Speed benchmarks of the evaluation pipeline (issue 3, "Performance"); numbers go to docs/benchmarks.md.

Run: ``pytest benchmarks -m benchmark --benchmark-enable --benchmark-json=bench.json``,
then ``python -m benchmarks.summarise bench.json`` for the ratios.  No test
asserts a time: the asserts only check that each benchmark did the work it
claims to measure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.conftest import PER_EMOTION
from benchmarks.naive import NAIVE_PASSES, lpips_sampled_pairs, single_metric_pass
from emogen_bench.cache import FeatureCache
from emogen_bench.evaluate import compute_metrics
from emogen_bench.pipeline import decode_image, extract
from emogen_bench.task import EMOTION_NAMES, METRIC_KEYS, METRICS

#: Rounds of the expensive benchmarks (one fused pass with CLIP ViT-L/14 is about a minute on 2 cores).
ROUNDS_SLOW = 2
ROUNDS_FAST = 5
#: Sampled LPIPS pairs per emotion actually timed (the released protocol uses 1,000; extrapolated from this).
NAIVE_PAIRS_PER_EMOTION = 16
#: Images per emotion of the peak-memory runs (8 emotions each).
MEMORY_PER_EMOTION = (4, 16)
#: Full size for the metric maths: 8 emotions x 1,000 images.
FULL_PER_EMOTION = 1000
REPO = Path(__file__).resolve().parents[1]


def _context(benchmark, items: list) -> None:  # noqa: ANN001 - pytest-benchmark fixture
    benchmark.extra_info.update(images=len(items), torch_threads=torch.get_num_threads(), torch=torch.__version__)


def _fused(items: list, extractors: dict, cache: FeatureCache):  # noqa: ANN202
    return extract(items, extractors, cache=cache, device="cpu", num_workers=0, show_progress=False)


# --- 1. fused vs naive ----------------------------------------------------------------------------


@pytest.mark.benchmark(group="1-fused-vs-naive")
def test_fused_pass_no_cache(benchmark, image_items, extractors, tmp_path):  # noqa: ANN001
    """One pass, all five extractors, each image decoded once, cache disabled."""
    _context(benchmark, image_items)
    runs = []

    def run() -> None:
        runs.append(_fused(image_items, extractors, FeatureCache(tmp_path / "unused", enabled=False)))

    benchmark.pedantic(run, rounds=ROUNDS_SLOW, iterations=1)
    benchmark.extra_info["timings"] = [r.timings for r in runs]
    assert all(r.decoded == len(image_items) for r in runs)
    assert all(r.counts[name]["computed"] == len(image_items) for r in runs for name in extractors)
    assert not (tmp_path / "unused").exists()


@pytest.mark.benchmark(group="1-fused-vs-naive")
def test_naive_per_metric_passes(benchmark, image_items, extractors):  # noqa: ANN001
    """Each metric on its own: five passes (CLIP twice), each decoding every image again; no LPIPS."""
    _context(benchmark, image_items)
    seconds: list[dict[str, float]] = []

    def run() -> None:
        spent = {}
        for metric, name in NAIVE_PASSES:
            started = time.perf_counter()
            outputs = single_metric_pass(image_items, extractors[name])
            spent[metric] = time.perf_counter() - started
            assert all(len(value) == len(image_items) for value in outputs.values())
        seconds.append(spent)

    benchmark.pedantic(run, rounds=ROUNDS_SLOW, iterations=1)
    benchmark.extra_info["seconds_per_metric"] = seconds
    assert all(set(s) == {metric for metric, _ in NAIVE_PASSES} for s in seconds)


@pytest.mark.benchmark(group="1-fused-vs-naive")
def test_naive_lpips_sampled_pairs(benchmark, image_items, extractors):  # noqa: ANN001
    """LPIPS the released way: sampled pairs, two AlexNet forwards and two decodes per pair."""
    _context(benchmark, image_items)
    benchmark.extra_info["pairs"] = NAIVE_PAIRS_PER_EMOTION * len(EMOTION_NAMES)
    means = benchmark.pedantic(
        lpips_sampled_pairs,
        args=(image_items, extractors["lpips"], NAIVE_PAIRS_PER_EMOTION),
        rounds=ROUNDS_FAST,
        iterations=1,
    )
    assert set(means) == set(EMOTION_NAMES)
    assert all(np.isfinite(v) and v > 0 for v in means.values())


# --- 2. warm cache vs cold ------------------------------------------------------------------------


@pytest.mark.benchmark(group="2-warm-vs-cold")
def test_cold_pass_cache_written(benchmark, image_items, extractors, tmp_path, populated_caches):  # noqa: ANN001
    """A first evaluation: empty cache, every feature computed and written (one round: it fills the cache)."""
    _context(benchmark, image_items)
    cache = FeatureCache(tmp_path / "cache")
    result = benchmark.pedantic(_fused, args=(image_items, extractors, cache), rounds=1, iterations=1)
    populated_caches["root"] = cache.root
    benchmark.extra_info["timings"] = [result.timings]
    assert all(result.counts[name]["cached"] == 0 for name in extractors)


@pytest.mark.benchmark(group="2-warm-vs-cold")
def test_warm_pass_all_cached(benchmark, image_items, extractors, tmp_path, populated_caches):  # noqa: ANN001
    """Re-evaluation of the unchanged set: every feature and every LPIPS summary from the cache."""
    _context(benchmark, image_items)
    if "root" not in populated_caches:  # run alone: fill a cache first, untimed
        _fused(image_items, extractors, FeatureCache(tmp_path / "cache"))
        populated_caches["root"] = tmp_path / "cache"
    cache = FeatureCache(populated_caches["root"])
    result = benchmark.pedantic(_fused, args=(image_items, extractors, cache), rounds=ROUNDS_FAST, iterations=1)
    benchmark.extra_info["timings"] = [result.timings]
    assert result.decoded == 0
    assert all(result.counts[name]["cached"] == len(image_items) for name in extractors)


def _evaluate(root: Path, extractors: dict, reference, cache: FeatureCache):  # noqa: ANN001, ANN202
    from emogen_bench.config import EvalConfig
    from emogen_bench.evaluate import evaluate

    config = EvalConfig(per_emotion=PER_EMOTION, device="cpu", num_workers=0, show_progress=False)
    return evaluate(root, config, extractors=extractors, reference=reference, cache=cache)


@pytest.mark.benchmark(group="2b-evaluate-warm-vs-cold")
def test_evaluate_cold(benchmark, submission_root, image_items, extractors, saved_reference, tmp_path, populated_caches):  # noqa: ANN001, E501
    """A first ``evaluate`` (all seven metrics): validation, one pass writing the cache, the metric maths."""
    _context(benchmark, image_items)
    cache = FeatureCache(tmp_path / "evaluate-cache")
    result = benchmark.pedantic(
        _evaluate, args=(submission_root, extractors, saved_reference, cache), rounds=1, iterations=1
    )
    populated_caches["evaluate"] = cache.root
    benchmark.extra_info["timings"] = [result.timings]
    assert set(result.overall) == set(METRIC_KEYS) and not result.metrics_cached


@pytest.mark.benchmark(group="2b-evaluate-warm-vs-cold")
def test_evaluate_warm(benchmark, submission_root, image_items, extractors, saved_reference, tmp_path, populated_caches):  # noqa: ANN001, E501
    """The same ``evaluate`` again: validation (every image hashed and decoded), then the cached values."""
    _context(benchmark, image_items)
    if "evaluate" not in populated_caches:  # run alone: evaluate once first, untimed
        _evaluate(submission_root, extractors, saved_reference, FeatureCache(tmp_path / "evaluate-cache"))
        populated_caches["evaluate"] = tmp_path / "evaluate-cache"
    cache = FeatureCache(populated_caches["evaluate"])
    result = benchmark.pedantic(
        _evaluate, args=(submission_root, extractors, saved_reference, cache), rounds=ROUNDS_FAST, iterations=1
    )
    benchmark.extra_info["timings"] = [result.timings]
    assert result.metrics_cached and set(result.overall) == set(METRIC_KEYS)


@pytest.mark.benchmark(group="2-warm-vs-cold")
def test_metric_maths_benchmark_size(benchmark, image_items):  # noqa: ANN001
    """compute_metrics on features of the benchmark's image count (2048-d Inception, synthetic reference)."""
    from benchmarks.synthetic import extraction, reference_stats

    items, result = extraction(len(image_items) // len(EMOTION_NAMES))
    reference = reference_stats()
    _context(benchmark, items)
    overall, _ = benchmark.pedantic(
        compute_metrics,
        args=(tuple(METRIC_KEYS), items, result, reference),
        kwargs={"seed": 0},
        rounds=ROUNDS_SLOW,
        iterations=1,
    )
    assert set(overall) == set(METRIC_KEYS)


# --- 3. stages and bare forwards ------------------------------------------------------------------


@pytest.mark.benchmark(group="3-stages")
def test_stage_read_and_decode(benchmark, image_items):  # noqa: ANN001
    """Read + sha256 check + PNG decode of every image (what the pipeline does once per image)."""
    from emogen_bench.pipeline import read_image

    _context(benchmark, image_items)
    arrays = benchmark.pedantic(
        lambda: [read_image(item.path, item.sha256) for item in image_items], rounds=ROUNDS_FAST, iterations=1
    )
    assert all(a.shape == (512, 512, 3) for a in arrays)
    assert np.array_equal(arrays[0], decode_image(image_items[0].path.read_bytes()))


@pytest.mark.benchmark(group="3-stages")
@pytest.mark.parametrize("name", ["inception", "clip", "semantic", "emoset", "lpips"])
def test_stage_preprocess(benchmark, name, decoded, extractors):  # noqa: ANN001
    """One extractor's preprocessing of every decoded image."""
    _context(benchmark, decoded)
    preprocess = extractors[name].preprocess
    tensors = benchmark.pedantic(lambda: [preprocess(image) for image in decoded], rounds=ROUNDS_FAST, iterations=1)
    assert len(tensors) == len(decoded) and all(t.dtype == torch.float32 for t in tensors)


@pytest.mark.benchmark(group="3-stages")
@pytest.mark.parametrize("name", ["inception", "clip", "semantic", "emoset", "lpips"])
def test_stage_bare_forward(benchmark, name, preprocessed, extractors):  # noqa: ANN001
    """One extractor's own forward on pre-decoded, pre-processed inputs (fixed batches of 16, CPU numpy out)."""
    inputs = preprocessed[name]
    benchmark.extra_info.update(images=len(inputs), torch_threads=torch.get_num_threads())
    outputs = benchmark.pedantic(extractors[name], args=(inputs,), rounds=ROUNDS_SLOW, iterations=1)
    assert {k: v.shape[1:] for k, v in outputs.items()} == dict(extractors[name].info.outputs)


# --- 4. peak memory -------------------------------------------------------------------------------


@pytest.mark.benchmark(group="4-peak-memory")
@pytest.mark.parametrize("per_emotion", MEMORY_PER_EMOTION)
def test_peak_memory_cold_pass(benchmark, per_emotion, tmp_path):  # noqa: ANN001
    """Peak RSS of a fresh process that builds all five models and runs one cold pass over 8 x per_emotion images."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "benchmarks.peak_memory",
        "--per-emotion",
        str(per_emotion),
        "--workdir",
        str(tmp_path),
    ]

    def run() -> dict:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    report = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(report)
    assert report["images"] == per_emotion * len(EMOTION_NAMES)
    assert report["peak_rss_mib_after_pass"] >= report["peak_rss_mib_models_built"]


# --- 5. metric maths at full size -----------------------------------------------------------------


@pytest.fixture(scope="module")
def full_size():  # noqa: ANN201
    from benchmarks.synthetic import extraction, reference_stats

    items, result = extraction(FULL_PER_EMOTION)
    return items, result, reference_stats()


@pytest.mark.benchmark(group="5-metric-maths-8000")
def test_maths_pooled_fid_jackknife(benchmark, full_size):  # noqa: ANN001
    """Pooled FID of 8,000 x 2048 features with its 20-group jackknife interval."""
    from emogen_bench.metrics.fid import fid

    items, result, reference = full_size
    value = benchmark.pedantic(
        fid,
        args=(result.features["inception"]["pool"], reference.pooled),
        kwargs={"groups": METRICS.jackknife_groups},
        rounds=1,
        iterations=1,
    )
    assert value.n == len(items) and value.ci95 is not None


@pytest.mark.benchmark(group="5-metric-maths-8000")
def test_maths_per_emotion_fid_and_kid(benchmark, full_size):  # noqa: ANN001
    """Per-emotion FID (8 x 1,000 images) and KID (per emotion and pooled, 100 subsets of 1,000)."""
    from emogen_bench.metrics.fid import fid

    items, result, reference = full_size
    emotions = np.array([item.emotion for item in items])
    pool = result.features["inception"]["pool"]

    def run() -> tuple:
        fids = {e: fid(pool[emotions == e], reference.per_emotion[e], groups=None) for e in EMOTION_NAMES}
        return fids, compute_metrics(("kid",), items, result, reference, seed=0)

    fids, (overall, per_emotion) = benchmark.pedantic(run, rounds=1, iterations=1)
    assert overall["kid"].n == len(items) and set(per_emotion) == set(fids) == set(EMOTION_NAMES)


@pytest.mark.benchmark(group="5-metric-maths-8000")
def test_maths_summaries(benchmark, full_size):  # noqa: ANN001
    """LPIPS (from cached per-emotion summaries), Sem-D (8 x 1,000 x 768), Sem-C, Emo-A, Emo-A ResNet-50."""
    items, result, reference = full_size
    keys = ("lpips", "sem_d", "sem_c", "emo_a", "emo_a_resnet50")
    overall, _ = benchmark.pedantic(
        compute_metrics, args=(keys, items, result, reference), kwargs={"seed": 0}, rounds=ROUNDS_SLOW, iterations=1
    )
    assert set(overall) == set(keys)


@pytest.mark.benchmark(group="5-metric-maths-8000")
def test_maths_lpips_accumulate_rows(benchmark):  # noqa: ANN001
    """Adding 32 LPIPS phi rows (2.65 M values each, 512x512) to a per-emotion accumulator: the per-image cost."""
    from emogen_bench.features.lpips import phi_dim
    from emogen_bench.metrics.intervals import group_ids
    from emogen_bench.metrics.pairwise import PairwiseAccumulator

    rows = np.random.default_rng(0).standard_normal((32, phi_dim(METRICS.lpips_size)), dtype=np.float32)
    benchmark.extra_info.update(rows=len(rows), dim=rows.shape[1])

    def run() -> PairwiseAccumulator:
        accumulator = PairwiseAccumulator(rows.shape[1], METRICS.jackknife_groups)
        accumulator.add(rows, group_ids(len(rows), METRICS.jackknife_groups))
        return accumulator

    accumulator = benchmark.pedantic(run, rounds=ROUNDS_SLOW, iterations=1)
    assert accumulator.n == len(rows)
