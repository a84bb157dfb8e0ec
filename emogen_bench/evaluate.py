"""``evaluate``: validate a submission, extract every feature in one cached pass, compute the metrics.

The flow is deliberately linear: validation (refuse an invalid submission with
its report) -> weights (missing ones fail before any image is read) -> one pass
over the images (each decoded once, each model run once per image, features
cached by content hash) -> pure metric maths on the features -> a results
document with its provenance.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from emogen_bench.cache import FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.errors import InvalidInputError, UsageError, WeightsError
from emogen_bench.features import METRIC_EXTRACTORS, build_extractors
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
    extractors: Mapping[str, FeatureExtractor], store: WeightStore | None, weights_override: Path | None
) -> dict[str, Any]:
    """Provenance of every artifact the extractors used: hash, official, overridden.

    The digest recorded is always the one the extractor was built from.  Whether
    those bytes are the official ones is taken from the weights store (the
    override file applied) only when the store holds the very same bytes; an
    artifact of extractors passed in by the caller that the store cannot vouch
    for is recorded as not official, with source ``caller``.
    """
    artifacts: dict[str, Any] = {}
    for extractor in extractors.values():
        for artifact_id, digest in extractor.info.artifacts.items():
            if extractor.info.smoke:
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

    store: WeightStore | None = None
    started = time.perf_counter()
    if extractors is None:
        store = open_store(config.weights_override)
        extractors = build_extractors(names, store)
    else:
        missing = [n for n in names if n not in extractors]
        if missing:
            raise UsageError(f"no extractor given for {', '.join(missing)} (needed by {', '.join(metrics)})")
        extractors = {n: extractors[n] for n in names}
    timings["load_models"] = time.perf_counter() - started
    if reference is not None and "inception" in extractors:
        reference.check_extractor(extractors["inception"].info)

    device = str(resolve_device(config.device))
    items = items_from_report(report)
    extraction = extract(
        items,
        extractors,
        cache=cache if cache is not None else FeatureCache(enabled=config.cache),
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        device=device,
        show_progress=config.show_progress,
    )
    timings.update({f"extract.{k}": v for k, v in extraction.timings.items()})
    started = time.perf_counter()
    overall, per_emotion = compute_metrics(metrics, items, extraction, reference, seed=config.seed)
    timings["metrics"] = time.perf_counter() - started

    smoke = any(e.info.smoke for e in extractors.values()) or bool(reference is not None and reference.smoke)
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
        artifacts=_artifacts(extractors, store, config.weights_override),
        seed=config.seed,
        config=config.to_dict(),
        environment=environment(device),
        timings={k: round(v, 3) for k, v in timings.items()},
        features={name: dict(c) for name, c in extraction.counts.items()},
        overall=overall,
        per_emotion=per_emotion,
        not_computed=not_computed,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
