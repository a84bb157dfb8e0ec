"""``evaluate``: validate a submission, extract every feature in one cached pass, compute the metrics.

The flow is deliberately linear: validation (refuse an invalid submission with
its report) -> weights (missing ones fail before any image is read) -> one pass
over the images (each decoded once, each model run once per image, features
cached by content hash) -> pure metric maths on the features -> a results
document with its provenance.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from emogen_bench import __version__
from emogen_bench.cache import FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.errors import InvalidInputError, UsageError, WeightsError
from emogen_bench.features import ARTIFACTS_BY_EXTRACTOR, METRIC_EXTRACTORS, build_extractors, check_artifacts
from emogen_bench.features.base import FeatureExtractor
from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.emo_a import emo_a
from emogen_bench.metrics.fid import fid
from emogen_bench.metrics.kid import kid
from emogen_bench.metrics.lpips import lpips_diversity
from emogen_bench.metrics.sem_c import sem_c
from emogen_bench.metrics.sem_d import sem_d
from emogen_bench.pipeline import ExtractionResult, ImageItem, extract, items_from_report, resolve_device
from emogen_bench.reference_stats import ReferenceStats, load_reference_stats
from emogen_bench.results import EvaluationResult, environment
from emogen_bench.submission import ValidationReport, validate_submission
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES, METRICS, PROTOCOL
from emogen_bench.weights import WeightStore, open_store

REFERENCE_HINT = (
    "no reference statistics given (--reference-stats); build them once with "
    "`emogen-bench reference-stats build --index DIR --emoset-root ROOT --out REF.npz`"
)


class InvalidSubmissionError(InvalidInputError):
    """The submission failed validation; ``report`` holds every problem."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        shown = "\n".join(f"  {p.code}: {p.path}: {p.message}" for p in report.errors[:20])
        more = f"\n  ... and {len(report.errors) - 20} more" if len(report.errors) > 20 else ""
        super().__init__(
            f"submission {report.path} is invalid ({len(report.errors)} error(s); nothing was evaluated):\n"
            f"{shown}{more}\nRun `emogen-bench validate {report.path}` for the full report."
        )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def compute_metrics(
    metrics: tuple[str, ...],
    items: list[ImageItem],
    extraction: ExtractionResult,
    reference: ReferenceStats | None,
    *,
    seed: int,
) -> tuple[dict[str, MetricValue], dict[str, dict[str, MetricValue]]]:
    """Pure step: features (aligned with ``items``) -> overall and per-emotion metric values."""
    emotions = np.array([item.emotion for item in items])
    present = [e for e in EMOTION_NAMES if (emotions == e).any()]
    overall: dict[str, MetricValue] = {}
    per_emotion: dict[str, dict[str, MetricValue]] = {e: {} for e in present}

    def put(key: str, result: tuple[MetricValue, Mapping[str, MetricValue]]) -> None:
        overall[key] = result[0]
        for emotion, value in result[1].items():
            per_emotion[emotion][key] = value

    features = extraction.features
    if reference is not None and ("fid" in metrics or "kid" in metrics):
        pool = features["inception"]["pool"]
        if "fid" in metrics:
            overall["fid"] = fid(pool, reference.pooled, groups=METRICS.jackknife_groups)
            for emotion in present:
                per_emotion[emotion]["fid"] = fid(
                    pool[emotions == emotion], reference.per_emotion[emotion], groups=None
                )
        if "kid" in metrics:
            options = {"subsets": METRICS.kid_subsets, "subset_size": METRICS.kid_subset_size, "seed": seed}
            overall["kid"] = kid(pool, reference.kid_pooled, **options)
            for emotion in present:
                per_emotion[emotion]["kid"] = kid(pool[emotions == emotion], reference.kid_sample[emotion], **options)
    if "lpips" in metrics:
        put("lpips", lpips_diversity({e: extraction.lpips[e] for e in present}))
    targets = np.array([EMOTION_IDS[e] for e in emotions])
    if "emo_a" in metrics:
        put("emo_a", emo_a(_softmax(features["clip"]["emotion_logits"]), targets))
    if "emo_a_resnet50" in metrics:
        put("emo_a_resnet50", emo_a(_softmax(features["emoset"]["logits"]), targets))
    if "sem_c" in metrics:
        semantic = features["semantic"]
        put("sem_c", sem_c(semantic["imagenet_max_prob"], semantic["places_max_prob"], emotions, seed=seed))
    if "sem_d" in metrics:
        embeddings = features["clip"]["embedding"]
        put("sem_d", sem_d({e: embeddings[emotions == e] for e in present}))
    return overall, per_emotion


def _artifacts(
    used: Mapping[str, tuple[str, bool]], store: WeightStore | None, weights_override: Path | None
) -> dict[str, Any]:
    """Provenance of every artifact used (``{id: (digest, smoke)}``): hash, official, overridden.

    The digest recorded is always the one the extractor was built from (or would
    be).  Whether those bytes are the official ones is taken from the weights
    store (the override file applied) only when the store holds the very same
    bytes; an artifact of extractors passed in by the caller that the store
    cannot vouch for is recorded as not official, with source ``caller``.
    """
    artifacts: dict[str, Any] = {}
    for artifact_id, (digest, smoke) in used.items():
        if smoke:
            artifacts[artifact_id] = {"digest": digest, "official": False, "overridden": False, "smoke": True}
            continue
        if store is None:
            store = open_store(weights_override)
        try:
            resolved = store.resolve(artifact_id)
        except WeightsError:
            resolved = None
        if resolved is None or resolved.digest != digest:
            artifacts[artifact_id] = {
                "digest": digest, "official": False, "overridden": False, "source": "caller", "path": None,
            }
            continue
        artifacts[artifact_id] = {
            "digest": resolved.digest,
            "official": resolved.official,
            "overridden": resolved.overridden,
            "source": resolved.source,
            "path": str(resolved.path),
        }
    return artifacts


def metric_values_key(
    *,
    metrics: tuple[str, ...],
    seed: int,
    submission_digest: str,
    per_emotion: int,
    reference_sha256: str | None,
    extractor_identity: Mapping[str, Any],
) -> str:
    """Cache key of a whole evaluation's metric values: everything that decides them.

    The submission digest covers every file's path (hence emotion) and content;
    ``extractor_identity`` the weights (or a caller's extractor cache keys); the
    benchmark version covers preprocessing and metric code.
    """
    document = {
        "kind": "metric-values",
        "benchmark_version": __version__,
        "protocol": PROTOCOL,
        "metrics": list(metrics),
        "seed": seed,
        "submission": submission_digest,
        "per_emotion": per_emotion,
        "reference": reference_sha256,
        "extractors": {k: extractor_identity[k] for k in sorted(extractor_identity)},
        "model_batch": METRICS.model_batch,
    }
    return "metrics-" + hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _encode_values(
    overall: Mapping[str, MetricValue], per_emotion: Mapping[str, Mapping[str, MetricValue]]
) -> dict[str, Any]:
    return {
        "overall": {k: v.to_dict() for k, v in overall.items()},
        "per_emotion": {e: {k: v.to_dict() for k, v in values.items()} for e, values in per_emotion.items()},
    }


def _decode_values(
    document: Any,
) -> tuple[dict[str, MetricValue], dict[str, dict[str, MetricValue]]] | None:
    """The metric values of a cached document, or ``None`` if it is not one (treated as a miss)."""
    try:
        overall = {k: MetricValue.from_dict(v) for k, v in document["overall"].items()}
        per_emotion = {
            e: {k: MetricValue.from_dict(v) for k, v in values.items()} for e, values in document["per_emotion"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None
    return overall, per_emotion


def _identity_record_key(name: str, digests: Mapping[str, str]) -> str:
    """Cache key under which the extractor ``name`` built from ``digests`` records its feature cache key."""
    document = {"kind": "extractor-identity", "version": __version__, "name": name, "artifacts": dict(digests)}
    return "extractor-" + hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _recorded_identity(cache: FeatureCache, digests: Mapping[str, Mapping[str, str]]) -> dict[str, str] | None:
    """The feature cache keys that extractors built from these weights had, if every one was recorded.

    An extractor's cache key depends on its model (e.g. output sizes), so it is
    only known once the model is built; recording it lets a warm re-evaluation
    find its cached metric values without loading any model.
    """
    identity = {}
    for name, by_artifact in digests.items():
        record = cache.get_summary(_identity_record_key(name, by_artifact))
        if not isinstance(record, dict) or not isinstance(record.get("cache_key"), str):
            return None
        identity[name] = record["cache_key"]
    return identity


def _record_identity(
    cache: FeatureCache, digests: Mapping[str, Mapping[str, str]], extractors: Mapping[str, FeatureExtractor]
) -> None:
    for name, extractor in extractors.items():
        if dict(extractor.info.artifacts) == dict(digests[name]):  # the bytes loaded are the ones resolved
            cache.put_summary(_identity_record_key(name, digests[name]), {"cache_key": extractor.info.cache_key})


def evaluate(
    path: str | Path,
    config: EvalConfig | None = None,
    *,
    extractors: Mapping[str, FeatureExtractor] | None = None,
    reference: ReferenceStats | None = None,
    cache: FeatureCache | None = None,
) -> EvaluationResult:
    """Score the submission at ``path``; the CLI's ``evaluate`` is a thin face over this.

    ``extractors``, ``reference`` and ``cache`` let tests and the demo pass models
    built in code, statistics already loaded and a private cache; by default they
    come from the pinned weights (``config.weights_override`` applied),
    ``config.reference_stats`` and the benchmark's cache folder.
    """
    config = config or EvalConfig()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    report = validate_submission(path, per_emotion=config.per_emotion, show_progress=config.show_progress)
    timings["validate"] = time.perf_counter() - started
    if not report.valid:
        raise InvalidSubmissionError(report)

    metrics = config.metrics
    not_computed: dict[str, str] = {}
    if not {"fid", "kid"} & set(metrics):
        reference = None  # only FID and KID use it: neither loaded (~430 MB) nor cited when not requested
    elif reference is None and config.reference_stats is not None:
        reference = load_reference_stats(config.reference_stats)
    if reference is None:
        for key in ("fid", "kid"):
            if key in metrics:
                not_computed[key] = REFERENCE_HINT
        metrics = tuple(m for m in metrics if m not in ("fid", "kid"))
    names = sorted({name for m in metrics for name in METRIC_EXTRACTORS[m]})
    cache = cache if cache is not None else FeatureCache(enabled=config.cache)

    store: WeightStore | None = None
    used: dict[str, tuple[str, bool]] = {}
    if extractors is None:
        store = open_store(config.weights_override)
        check_artifacts(names, store)
        digests = {n: {a: store.resolve(a).digest for a in ARTIFACTS_BY_EXTRACTOR[n]} for n in names}
        used = {a: (d, False) for by_artifact in digests.values() for a, d in by_artifact.items()}
        identity = _recorded_identity(cache, digests)
    else:
        missing = [n for n in names if n not in extractors]
        if missing:
            raise UsageError(f"no extractor given for {', '.join(missing)} (needed by {', '.join(metrics)})")
        extractors = {n: extractors[n] for n in names}
        used = {a: (d, e.info.smoke) for e in extractors.values() for a, d in e.info.artifacts.items()}
        identity = {n: e.info.cache_key for n, e in extractors.items()}

    def values_key(identity: Mapping[str, str] | None) -> str | None:
        if identity is None or (reference is not None and reference.sha256 is None):
            return None  # models not built yet, or an unsaved reference with no identity to key on
        return metric_values_key(
            metrics=metrics,
            seed=config.seed,
            submission_digest=report.digest,
            per_emotion=report.per_emotion,
            reference_sha256=None if reference is None else reference.sha256,
            extractor_identity=identity,
        )

    started = time.perf_counter()
    key = values_key(identity)
    cached_values = _decode_values(cache.get_summary(key)) if key is not None else None
    timings["metrics_cache_read"] = time.perf_counter() - started

    device = str(resolve_device(config.device))
    items = items_from_report(report)
    if cached_values is not None:
        overall, per_emotion = cached_values
        counts = {name: {"computed": 0, "cached": len(items)} for name in names}
    else:
        if store is not None:  # the models come from the weights store: built only now that they are needed
            started = time.perf_counter()
            extractors = build_extractors(names, store)
            timings["load_models"] = time.perf_counter() - started
            _record_identity(cache, digests, extractors)
            identity = {n: e.info.cache_key for n, e in extractors.items()}
            used = {a: (d, e.info.smoke) for e in extractors.values() for a, d in e.info.artifacts.items()}
        if reference is not None and "inception" in extractors:
            reference.check_extractor(extractors["inception"].info)
        extraction = extract(
            items,
            extractors,
            cache=cache,
            batch_size=config.batch_size,
            num_workers=config.num_workers,
            device=device,
            show_progress=config.show_progress,
        )
        timings.update({f"extract.{k}": v for k, v in extraction.timings.items()})
        started = time.perf_counter()
        overall, per_emotion = compute_metrics(metrics, items, extraction, reference, seed=config.seed)
        timings["metrics"] = time.perf_counter() - started
        counts = {name: dict(c) for name, c in extraction.counts.items()}
        key = values_key(identity)
        if key is not None:
            cache.put_summary(key, _encode_values(overall, per_emotion))

    smoke = any(is_smoke for _, is_smoke in used.values()) or bool(reference is not None and reference.smoke)
    return EvaluationResult(
        protocol=PROTOCOL,
        run={"kind": report.run_kind, "per_emotion": report.per_emotion, "label": report.run_label},
        smoke=smoke,
        submission={
            "path": str(report.path),
            "digest": report.digest,
            "n_images": len(report.manifest),
            "counts": dict(report.counts),
            "metadata_sha256": report.metadata_sha256,
            "metadata": report.metadata.to_dict() if report.metadata else None,
            "manifest": [[entry.path, entry.sha256] for entry in report.manifest],
        },
        reference=reference.provenance() if reference is not None else None,
        artifacts=_artifacts(used, store, config.weights_override),
        seed=config.seed,
        config=config.to_dict(),
        environment=environment(device),
        timings={k: round(v, 3) for k, v in timings.items()},
        features=counts,
        metrics_cached=cached_values is not None,
        overall=overall,
        per_emotion=per_emotion,
        not_computed=not_computed,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
