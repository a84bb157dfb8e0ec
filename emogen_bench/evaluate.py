"""``evaluate``: validate a submission, extract every feature in one cached pass, compute the metrics.

The flow is deliberately linear: validation (refuse an invalid submission with
its report) -> weights (missing ones fail before any image is read) -> one pass
over the images (each decoded once, each model run once per image, features
cached by content hash) -> pure metric maths on the features -> a results
document with its provenance.

Under the ``emogen-paper-code`` protocol (docs/paper_code.md) the pass runs the
Inception behind the released code's preprocessing, and LPIPS and Sem-D come
from a stage after it: seeded random pairs of ``*jpg`` files, only those
images decoded again (:func:`emogen_bench.pipeline.score_pairs`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emogen_bench import __version__
from emogen_bench.cache import FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.errors import InvalidInputError, UsageError, WeightsError
from emogen_bench.features import ARTIFACTS_BY_EXTRACTOR, build_extractors, check_artifacts, metric_extractors
from emogen_bench.features.base import FeatureExtractor
from emogen_bench.features.clip import ClipExtractor
from emogen_bench.features.lpips import LpipsExtractor
from emogen_bench.features.paper_code import PAIR_METRICS, PASS_EXTRACTORS, is_paper_code
from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.emo_a import emo_a
from emogen_bench.metrics.fid import fid
from emogen_bench.metrics.kid import kid
from emogen_bench.metrics.lpips import lpips_diversity
from emogen_bench.metrics.paper_code import PairPlan, is_jpg, pair_metric, pair_mse, paper_code_fid, sample_pairs
from emogen_bench.metrics.sem_c import sem_c
from emogen_bench.metrics.sem_d import sem_d
from emogen_bench.pipeline import (
    ExtractionResult,
    ImageItem,
    PairScores,
    extract,
    items_from_report,
    resolve_device,
    score_pairs,
)
from emogen_bench.protocols import PAPER_CODE, get_protocol
from emogen_bench.reference_stats import ReferenceStats, build_hint, load_reference_stats
from emogen_bench.results import EvaluationResult, environment
from emogen_bench.submission import ValidationReport, validate_submission
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES, METRICS, PROTOCOL
from emogen_bench.weights import WeightStore, open_store

REFERENCE_HINT = "no reference statistics given (--reference-stats); build them once with `{command}`"


@dataclass(frozen=True)
class PairResults:
    """The paper-code pair stage: the sampled pairs, the emotion of each ``*jpg`` file, the model outputs.

    ``skipped`` counts the submission's files that the released code would not
    read (names not ending in ``jpg``).
    """

    plan: PairPlan
    file_emotions: tuple[str, ...]
    scores: PairScores
    skipped: int


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
    protocol: str = PROTOCOL,
    pairs: PairResults | None = None,
) -> tuple[dict[str, MetricValue], dict[str, dict[str, MetricValue]]]:
    """Pure step: features (aligned with ``items``) -> overall and per-emotion metric values.

    Under ``emogen-paper-code``, FID follows torchmetrics' formulation and
    LPIPS and Sem-D come from ``pairs``; the other metrics are computed alike.
    """
    paper_code = get_protocol(protocol).name == PAPER_CODE
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
        if "fid" in metrics and paper_code:
            put("fid", paper_code_fid(pool, emotions, reference.per_emotion, reference.pooled))
        elif "fid" in metrics:
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

    def put_pairs(key: str, values: Mapping[str, np.ndarray]) -> None:
        if pairs is None:
            raise ValueError(f"{key} under {protocol} needs the pair stage's results")
        put(key, pair_metric(values, pairs.plan, pairs.file_emotions, seed=seed, skipped=pairs.skipped))

    if "lpips" in metrics and paper_code:
        put_pairs("lpips", pairs.scores.lpips if pairs is not None else {})
    elif "lpips" in metrics:
        put("lpips", lpips_diversity({e: extraction.lpips[e] for e in present}))
    targets = np.array([EMOTION_IDS[e] for e in emotions])
    if "emo_a" in metrics:
        put("emo_a", emo_a(_softmax(features["clip"]["emotion_logits"]), targets))
    if "emo_a_resnet50" in metrics:
        put("emo_a_resnet50", emo_a(_softmax(features["emoset"]["logits"]), targets))
    if "sem_c" in metrics:
        semantic = features["semantic"]
        put("sem_c", sem_c(semantic["imagenet_max_prob"], semantic["places_max_prob"], emotions, seed=seed))
    if "sem_d" in metrics and paper_code:
        put_pairs("sem_d", {e: pair_mse(v) for e, v in pairs.scores.clip.items()} if pairs is not None else {})
    elif "sem_d" in metrics:
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
    protocol: str,
    pairs: int | None,
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
    benchmark version covers preprocessing and metric code; ``pairs`` is the
    pair count of ``emogen-paper-code`` (``None`` under a protocol without pairs).
    """
    document = {
        "kind": "metric-values",
        "benchmark_version": __version__,
        "protocol": protocol,
        "pairs": pairs,
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


def _identity_record_key(name: str, digests: Mapping[str, str], protocol: str) -> str:
    """Cache key under which the extractor ``name`` built from ``digests`` for ``protocol`` records its cache key."""
    document = {
        "kind": "extractor-identity", "version": __version__, "protocol": protocol, "name": name,
        "artifacts": dict(digests),
    }  # fmt: skip
    return "extractor-" + hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _recorded_identity(
    cache: FeatureCache, digests: Mapping[str, Mapping[str, str]], protocol: str
) -> dict[str, str] | None:
    """The feature cache keys that extractors built from these weights had, if every one was recorded.

    An extractor's cache key depends on its model (e.g. output sizes), so it is
    only known once the model is built; recording it lets a warm re-evaluation
    find its cached metric values without loading any model.
    """
    identity = {}
    for name, by_artifact in digests.items():
        record = cache.get_summary(_identity_record_key(name, by_artifact, protocol))
        if not isinstance(record, dict) or not isinstance(record.get("cache_key"), str):
            return None
        identity[name] = record["cache_key"]
    return identity


def _record_identity(
    cache: FeatureCache,
    digests: Mapping[str, Mapping[str, str]],
    extractors: Mapping[str, FeatureExtractor],
    protocol: str,
) -> None:
    for name, extractor in extractors.items():
        if dict(extractor.info.artifacts) == dict(digests[name]):  # the bytes loaded are the ones resolved
            key = _identity_record_key(name, digests[name], protocol)
            cache.put_summary(key, {"cache_key": extractor.info.cache_key})


def _check_variants(extractors: Mapping[str, FeatureExtractor], protocol: str) -> None:
    """Refuse an Inception extractor whose preprocessing is not the protocol's (e.g. eicg-v1's under paper-code)."""
    inception = extractors.get("inception")
    if inception is not None and is_paper_code(inception.info) != (protocol == PAPER_CODE):
        raise UsageError(
            f"the Inception extractor given has the preprocessing {inception.info.preprocess_version!r}, not the one "
            f"of protocol {protocol}; build the extractors with build_extractors(..., protocol={protocol!r}) or "
            f"tiny_extractors(protocol={protocol!r})"
        )


def _plan_pairs(
    items: Sequence[ImageItem], pairs: int, seed: int
) -> tuple[PairPlan | None, list[ImageItem], str | None]:
    """The paper-code pair sample over the ``*jpg`` files, those files, or why the pair metrics cannot be computed."""
    files = [item for item in items if is_jpg(item.relpath)]
    present = sorted({item.emotion for item in items}, key=EMOTION_IDS.__getitem__)
    try:
        return sample_pairs([item.emotion for item in files], present, pairs, seed), files, None
    except ValueError as error:
        return None, files, (
            f"{error}: under {PAPER_CODE} LPIPS and Sem-D read only files whose name ends in 'jpg', as the released "
            f"code does ({len(items) - len(files)} of {len(items)} files skipped); submit JPEG files named *.jpg"
        )


def _pair_models(
    extractors: Mapping[str, FeatureExtractor], metrics: tuple[str, ...]
) -> tuple[torch.nn.Module | None, tuple[torch.nn.Module, Any] | None]:
    """The LPIPS model and the CLIP (vision model, image processor) the pair stage needs, from the extractors."""
    lpips_extractor, clip_extractor = extractors.get("lpips"), extractors.get("clip")
    if "lpips" in metrics and not isinstance(lpips_extractor, LpipsExtractor):
        raise UsageError("the emogen-paper-code LPIPS needs the 'lpips' extractor to be an LpipsExtractor")
    if "sem_d" in metrics and not isinstance(clip_extractor, ClipExtractor):
        raise UsageError("the emogen-paper-code Sem-D needs the 'clip' extractor to be a ClipExtractor")
    lpips_model = lpips_extractor.lpips_model if "lpips" in metrics else None
    clip = (clip_extractor.vision_model, clip_extractor.image_processor) if "sem_d" in metrics else None
    return lpips_model, clip


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
    ``config.reference_stats`` and the benchmark's cache folder.  Extractors and
    reference statistics must be those of ``config.protocol``.
    """
    config = config or EvalConfig()
    protocol = config.protocol
    paper_code = protocol == PAPER_CODE
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
    if reference is not None:
        reference.check_protocol(protocol)
    else:
        for key in ("fid", "kid"):
            if key in metrics:
                not_computed[key] = REFERENCE_HINT.format(command=build_hint(protocol))
        metrics = tuple(m for m in metrics if m not in ("fid", "kid"))
    items = items_from_report(report)
    pair_plan: PairPlan | None = None
    pair_files: list[ImageItem] = []
    if paper_code and set(PAIR_METRICS) & set(metrics):
        pair_plan, pair_files, reason = _plan_pairs(items, config.pairs, config.seed)
        if reason is not None:
            not_computed.update({key: reason for key in PAIR_METRICS if key in metrics})
            metrics = tuple(m for m in metrics if m not in PAIR_METRICS)
    names = sorted({name for m in metrics for name in metric_extractors(m, protocol)})
    pass_names = sorted({n for m in metrics for n in PASS_EXTRACTORS[m]}) if paper_code else names
    cache = cache if cache is not None else FeatureCache(enabled=config.cache)

    store: WeightStore | None = None
    used: dict[str, tuple[str, bool]] = {}
    if extractors is None:
        store = open_store(config.weights_override)
        check_artifacts(names, store)
        digests = {n: {a: store.resolve(a).digest for a in ARTIFACTS_BY_EXTRACTOR[n]} for n in names}
        used = {a: (d, False) for by_artifact in digests.values() for a, d in by_artifact.items()}
        identity = _recorded_identity(cache, digests, protocol)
    else:
        missing = [n for n in names if n not in extractors]
        if missing:
            raise UsageError(f"no extractor given for {', '.join(missing)} (needed by {', '.join(metrics)})")
        extractors = {n: extractors[n] for n in names}
        _check_variants(extractors, protocol)
        used = {a: (d, e.info.smoke) for e in extractors.values() for a, d in e.info.artifacts.items()}
        identity = {n: e.info.cache_key for n, e in extractors.items()}

    def values_key(identity: Mapping[str, str] | None) -> str | None:
        if identity is None or (reference is not None and reference.sha256 is None):
            return None  # models not built yet, or an unsaved reference with no identity to key on
        return metric_values_key(
            protocol=protocol,
            pairs=config.pairs if pair_plan is not None else None,
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
    if cached_values is not None:
        overall, per_emotion = cached_values
        counts = {name: {"computed": 0, "cached": len(items)} for name in pass_names}
    else:
        if store is not None:  # the models come from the weights store: built only now that they are needed
            started = time.perf_counter()
            extractors = build_extractors(names, store, protocol=protocol)
            timings["load_models"] = time.perf_counter() - started
            _record_identity(cache, digests, extractors, protocol)
            identity = {n: e.info.cache_key for n, e in extractors.items()}
            used = {a: (d, e.info.smoke) for e in extractors.values() for a, d in e.info.artifacts.items()}
        if reference is not None and "inception" in extractors:
            reference.check_extractor(extractors["inception"].info)
        extraction = extract(
            items,
            {name: extractors[name] for name in pass_names},
            cache=cache,
            batch_size=config.batch_size,
            num_workers=config.num_workers,
            device=device,
            show_progress=config.show_progress,
        )
        timings.update({f"extract.{k}": v for k, v in extraction.timings.items()})
        pairs: PairResults | None = None
        if pair_plan is not None:
            lpips_model, clip = _pair_models(extractors, metrics)
            scores = score_pairs(pair_files, pair_plan.pairs, lpips_model=lpips_model, clip=clip, device=device)
            timings["pairs"] = scores.seconds
            skipped = len(items) - len(pair_files)
            pairs = PairResults(pair_plan, tuple(item.emotion for item in pair_files), scores, skipped)
        started = time.perf_counter()
        overall, per_emotion = compute_metrics(
            metrics, items, extraction, reference, seed=config.seed, protocol=protocol, pairs=pairs
        )
        timings["metrics"] = time.perf_counter() - started
        counts = {name: dict(c) for name, c in extraction.counts.items()}
        key = values_key(identity)
        if key is not None:
            cache.put_summary(key, _encode_values(overall, per_emotion))

    smoke = any(is_smoke for _, is_smoke in used.values()) or bool(reference is not None and reference.smoke)
    return EvaluationResult(
        protocol=protocol,
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
