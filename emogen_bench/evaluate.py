"""``evaluate``: validate a submission, extract every feature in one cached pass, compute the metrics.

The flow is deliberately linear: validation (refuse an invalid submission with
its report) -> the protocol's selection (the files each metric reads, the
extractors its pass needs, its pair stage if any) -> weights (missing ones
fail before any image is read) -> one pass over the images (each decoded
once, each model run once per image, features cached by content hash) -> the
protocol's pair stage -> the protocol's pure metric maths on the features -> a
results document with its provenance.  Nothing here depends on which protocol
runs: :mod:`emogen_bench.protocols` holds what differs.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from emogen_bench import __version__
from emogen_bench.cache import FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.distributed import World
from emogen_bench.errors import InvalidInputError, UsageError, WeightsError
from emogen_bench.features import ARTIFACTS_BY_EXTRACTOR, build_extractors, check_artifacts
from emogen_bench.features.base import FeatureExtractor, runtime_cache_key
from emogen_bench.features.paper_code import is_paper_code
from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.intervals import clip_values, wilson_interval
from emogen_bench.pipeline import ExtractionResult, ImageItem, extract, items_from_report, resolve_device
from emogen_bench.protocols import PAPER_CODE, Protocol, get_protocol
from emogen_bench.protocols.base import Features, Selection
from emogen_bench.reference_stats import ReferenceStats, build_hint, load_reference_stats
from emogen_bench.results import EvaluationResult, environment
from emogen_bench.runtime import Runtime, policy_state
from emogen_bench.submission import ValidationReport, validate_submission
from emogen_bench.task import EMOTION_NAMES, METRICS, PROTOCOL
from emogen_bench.weights import WeightStore, open_store

#: Called by :func:`evaluate` with the images, the selection and the features the metrics are computed from.
FeaturesHook = Callable[[Sequence[ImageItem], Selection, Features], None]

REFERENCE_HINT = "no reference statistics given (--reference-stats); build them once with `{command}`"
#: Where FID/KID are all that was asked and no reference statistics are given: nothing could be scored.
REFERENCE_NEEDED = (
    "{metrics} need{s} reference statistics: give --reference-stats FILE (build the file once with `{command}`) "
    "or the name of the protocol's official statistics (e.g. --reference-stats ref-stats-{protocol}, fetched and "
    "verified like a weight); nothing was evaluated"
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


def compute_metrics(
    metrics: tuple[str, ...],
    items: list[ImageItem],
    extraction: ExtractionResult,
    reference: ReferenceStats | None,
    *,
    seed: int,
    protocol: str = PROTOCOL,
    pairs: Any = None,
) -> tuple[dict[str, MetricValue], dict[str, dict[str, MetricValue]]]:
    """Pure step for one extraction over ``items``: every metric reads every item (the protocol's file
    filters are not applied; :func:`evaluate` applies them).  Kept for callers holding one extraction."""
    spec = get_protocol(protocol)
    selection = Selection(metrics=tuple(metrics), files={m: list(items) for m in metrics}, n_items=len(items))
    if pairs is not None and "lpips" in spec.metrics:
        reads = spec.spec("lpips").reads
        selection.pair_plan, selection.pair_files = pairs.plan, [item for item in items if reads(item.relpath)]
    features = Features({m: dict(extraction.features) for m in metrics}, dict(extraction.lpips))
    return clip_values(*spec.compute(selection, features, reference, pairs, seed=seed))


def _pass(
    protocol: Protocol,
    selection: Selection,
    extractors: Mapping[str, FeatureExtractor],
    cache: FeatureCache,
    config: EvalConfig,
    device: str,
) -> tuple[Features, dict[str, dict[str, int]], dict[str, float]]:
    """The feature pass, one :func:`extract` per group of extractors that read the same files; then each
    metric's rows picked out for its own files.  Returns the features, computed/cached counts and timings."""
    results: dict[str, tuple[dict[str, int], ExtractionResult]] = {}
    counts: dict[str, dict[str, int]] = {}
    timings: dict[str, float] = {}
    for files, names in protocol.pass_groups(selection):
        extraction = extract(
            files,
            {name: extractors[name] for name in names},
            cache=cache,
            batch_size=config.batch_size,
            num_workers=config.num_workers,
            device=device,
            show_progress=config.show_progress,
            compile=config.compile,
        )
        row_of = {item.relpath: row for row, item in enumerate(files)}
        for name in names:
            results[name] = (row_of, extraction)
            counts[name] = dict(extraction.counts[name])
        for stage, seconds in extraction.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    by_metric: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    lpips = {}
    for metric in selection.metrics:
        by_metric[metric] = {}
        for name in protocol.spec(metric).pass_extractors:
            row_of, extraction = results[name]
            if name == "lpips":
                lpips = dict(extraction.lpips)
                continue
            rows = np.array([row_of[item.relpath] for item in selection.files[metric]], dtype=np.int64)
            by_metric[metric][name] = {out: array[rows] for out, array in extraction.features[name].items()}
    return Features(by_metric, lpips), counts, timings


def _artifacts(
    used: Mapping[str, tuple[str, bool]], store: WeightStore | None, weights_override: Path | None
) -> dict[str, Any]:
    """Provenance of every artifact used (``{id: (digest, smoke)}``): hash, official, pinned, overridden.

    The digest recorded is always the one the extractor was built from (or would
    be).  Whether those bytes are the official ones is taken from the weights
    store (the override file applied) only when the store holds the very same
    bytes; an artifact of extractors passed in by the caller that the store
    cannot vouch for is recorded as not official, with source ``caller``.  ``pinned`` is true only for
    official bytes the registry fixes by a full sha256 of every file (or a Hub revision): false for a
    trust-on-first-use artifact ("unpinned weights").
    """
    artifacts: dict[str, Any] = {}
    for artifact_id, (digest, smoke) in used.items():
        if smoke:
            artifacts[artifact_id] = {
                "digest": digest, "official": False, "pinned": False, "overridden": False, "smoke": True,
            }
            continue
        if store is None:
            store = open_store(weights_override)
        try:
            resolved = store.resolve(artifact_id)
        except WeightsError:
            resolved = None
        if resolved is None or resolved.digest != digest:
            artifacts[artifact_id] = {
                "digest": digest, "official": False, "pinned": False, "overridden": False, "source": "caller",
                "path": None,
            }
            continue
        artifacts[artifact_id] = {
            "digest": resolved.digest,
            "official": resolved.official,
            "pinned": resolved.pinned,
            "overridden": resolved.overridden,
            "source": resolved.source,
            "path": str(resolved.path),
        }
    return artifacts


def metric_values_key(
    *,
    protocol: str,
    protocol_version: int,
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
        "protocol_version": protocol_version,
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


def _confusion_mismatch(key: str, overall: MetricValue, per_emotion: Mapping[str, MetricValue]) -> str | None:
    """Why an accuracy's cached values disagree with its own 8x8 confusion matrix (``None`` when they agree).

    Emo-A (and its ResNet-50 twin) store the counts they come from: the value, ``n``, the Wilson interval of
    each scope and each emotion's ``predicted`` row follow from them, so an edited number shows.
    """
    try:
        matrix = np.asarray(overall.extra["confusion"])
    except ValueError:
        return f"{key}: the confusion matrix is not a matrix"
    shape = (len(EMOTION_NAMES),) * 2
    if matrix.shape != shape or matrix.dtype.kind not in "iu" or (matrix < 0).any() or matrix.sum() == 0:
        return f"{key}: the confusion matrix is not {shape[0]}x{shape[1]} counts of at least one image"
    rows = matrix.sum(axis=1)
    present = {name for name, count in zip(EMOTION_NAMES, rows) if count > 0}
    if set(per_emotion) != present:
        return f"{key}: the emotions listed ({sorted(per_emotion)}) are not those the confusion matrix counts"
    scopes = [("overall", overall, int(np.trace(matrix)), int(matrix.sum()))]
    for index, name in enumerate(EMOTION_NAMES):
        if name in present:
            if per_emotion[name].extra.get("predicted") != matrix[index].tolist():
                return f"{key} ({name}): the predicted counts are not the confusion matrix's row"
            scopes.append((name, per_emotion[name], int(matrix[index, index]), int(rows[index])))
    for scope, value, correct, n in scopes:
        interval = wilson_interval(correct, n)
        if (
            value.n != n or value.value != correct / n or value.ci95 is None
            or not all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(value.ci95, interval))
        ):  # fmt: skip
            return f"{key} ({scope}): {value.value!r} (n={value.n}) is not {correct}/{n} as its confusion matrix says"
    return None


def _cached_values(
    cache: FeatureCache, key: str
) -> tuple[dict[str, MetricValue], dict[str, dict[str, MetricValue]]] | None:
    """The metric values cached under ``key`` if present and consistent; a warning and ``None`` otherwise."""
    document = cache.get_summary(key)
    if document is None:
        return None
    values = _decode_values(document)
    if values is None:
        cache.reject_summary(key, "it does not hold metric values")
        return None
    overall, per_emotion = values
    for metric, value in overall.items():
        if "confusion" in value.extra:
            by_emotion = {e: scores[metric] for e, scores in per_emotion.items() if metric in scores}
            problem = _confusion_mismatch(metric, value, by_emotion)
            if problem is not None:
                cache.reject_summary(key, problem)
                return None
    return values


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


def _check_variants(extractors: Mapping[str, FeatureExtractor], protocol: Protocol) -> None:
    """Refuse an Inception extractor whose preprocessing is not the protocol's variant (eicg's under paper-code)."""
    inception = extractors.get("inception")
    wanted = protocol.variants.get("inception") == PAPER_CODE
    if inception is not None and is_paper_code(inception.info) != wanted:
        raise UsageError(
            f"the Inception extractor given has the preprocessing {inception.info.preprocess_version!r}, not the one "
            f"of protocol {protocol.name}; build the extractors with build_extractors(..., protocol={protocol.name!r}) "
            f"or tiny_extractors(protocol={protocol.name!r})"
        )


def reference_needed(metrics: tuple[str, ...], protocol: str) -> str:
    """The usage message for ``metrics`` (FID and/or KID) asked for without reference statistics."""
    wanted = [m for m in metrics if m in ("fid", "kid")]
    return REFERENCE_NEEDED.format(
        metrics=" and ".join(m.upper() for m in wanted), s="" if len(wanted) > 1 else "s",
        command=build_hint(protocol), protocol=protocol,
    )  # fmt: skip


def check_reference_given(metrics: tuple[str, ...], protocol: str) -> None:
    """Refuse (:class:`UsageError`) an evaluation whose every metric needs the reference statistics not given:
    it would score nothing, yet print empty tables and write a results file."""
    if metrics and set(metrics) <= {"fid", "kid"}:
        raise UsageError(reference_needed(metrics, protocol))


def _reference_for(
    metrics: tuple[str, ...], reference: ReferenceStats | None, config: EvalConfig
) -> tuple[tuple[str, ...], ReferenceStats | None, dict[str, str]]:
    """The reference statistics FID and KID need (loaded only if requested), the metrics left computable,
    and why FID/KID are not computed when there are none."""
    if not {"fid", "kid"} & set(metrics):
        return metrics, None, {}  # neither loaded (~430 MB) nor cited when not requested
    if reference is None and config.reference_stats is not None:
        reference = load_reference_stats(config.reference_stats, store=open_store(config.weights_override))
    if reference is not None:
        reference.check_protocol(config.protocol)
        return metrics, reference, {}
    reason = REFERENCE_HINT.format(command=build_hint(config.protocol))
    return (
        tuple(m for m in metrics if m not in ("fid", "kid")),
        None,
        {key: reason for key in ("fid", "kid") if key in metrics},
    )


def evaluate(
    path: str | Path,
    config: EvalConfig | None = None,
    *,
    extractors: Mapping[str, FeatureExtractor] | None = None,
    reference: ReferenceStats | None = None,
    cache: FeatureCache | None = None,
    on_features: FeaturesHook | None = None,
) -> EvaluationResult:
    """Score the submission at ``path``; the CLI's ``evaluate`` is a thin face over this.

    ``extractors``, ``reference`` and ``cache`` let tests and the demo pass models
    built in code, statistics already loaded and a private cache; by default they
    come from the pinned weights (``config.weights_override`` applied),
    ``config.reference_stats`` and the benchmark's cache folder.  Extractors and
    reference statistics must be those of ``config.protocol``.  ``on_features`` is called with every
    image (canonical order), the selection and the very features the metrics are computed from (the
    per-image results of :mod:`emogen_bench.per_image`); with it, cached metric values are not used.
    """
    config = config or EvalConfig()
    protocol = get_protocol(config.protocol)
    if reference is None and config.reference_stats is None:
        check_reference_given(config.metrics, protocol.name)  # before any image is read
    timings: dict[str, float] = {}
    started = time.perf_counter()
    report = validate_submission(path, per_emotion=config.per_emotion, show_progress=config.show_progress)
    timings["validate"] = time.perf_counter() - started
    if not report.valid:
        raise InvalidSubmissionError(report)

    metrics, reference, not_computed = _reference_for(config.metrics, reference, config)
    items = items_from_report(report)
    selection = protocol.select(items, metrics, pairs=config.pairs, seed=config.seed)
    not_computed.update(selection.not_computed)
    names = protocol.extractor_names(selection)
    cache = cache if cache is not None else FeatureCache(enabled=config.cache)

    store: WeightStore | None = None
    used: dict[str, tuple[str, bool]] = {}
    digests: dict[str, dict[str, str]] = {}
    if extractors is None:
        store = open_store(config.weights_override)
        check_artifacts(names, store)
        digests = {n: {a: store.resolve(a).digest for a in ARTIFACTS_BY_EXTRACTOR[n]} for n in names}
        used = {a: (d, False) for by_artifact in digests.values() for a, d in by_artifact.items()}
    else:
        missing = [n for n in names if n not in extractors]
        if missing:
            raise UsageError(f"no extractor given for {', '.join(missing)} (needed by {', '.join(selection.metrics)})")
        extractors = {n: extractors[n] for n in names}
        _check_variants(extractors, protocol)
        used = {a: (d, e.info.smoke) for e in extractors.values() for a, d in e.info.artifacts.items()}
    cache.ensure_usable()  # before any model is built or the cache read: if unusable, one warning and no cache
    device = str(resolve_device(config.device))
    runtime = Runtime.for_device(device, compile=config.compile)
    identity = (
        _recorded_identity(cache, digests, protocol.name) if extractors is None
        else {n: e.info.cache_key for n, e in extractors.items()}
    )  # fmt: skip

    def values_key(identity: Mapping[str, str] | None) -> str | None:
        if identity is None or (reference is not None and reference.sha256 is None):
            return None  # models not built yet, or an unsaved reference with no identity to key on
        computed_as = {name: runtime_cache_key(key, runtime.key_part()) for name, key in identity.items()}
        return metric_values_key(
            protocol=protocol.name,
            protocol_version=protocol.version,
            pairs=selection.pair_count,
            metrics=selection.metrics,
            seed=config.seed,
            submission_digest=report.digest,
            per_emotion=report.per_emotion,
            reference_sha256=None if reference is None else reference.sha256,
            extractor_identity=computed_as,
        )

    started = time.perf_counter()
    key = values_key(identity)
    cached_values = _cached_values(cache, key) if key is not None and on_features is None else None
    timings["metrics_cache_read"] = time.perf_counter() - started

    if cached_values is not None:
        overall, per_emotion = cached_values  # stored clipped; the key holds the protocol version, so no older values
        counts = {name: {"computed": 0, "cached": len(files)} for files, group in protocol.pass_groups(selection)
                  for name in group}  # fmt: skip
    else:
        if store is not None:  # the models come from the weights store: built only now that they are needed
            started = time.perf_counter()
            extractors = build_extractors(names, store, protocol=protocol.name)
            timings["load_models"] = time.perf_counter() - started
            _record_identity(cache, digests, extractors, protocol.name)
            identity = {n: e.info.cache_key for n, e in extractors.items()}
            used = {a: (d, e.info.smoke) for e in extractors.values() for a, d in e.info.artifacts.items()}
        assert extractors is not None
        if reference is not None and "inception" in extractors:
            reference.check_extractor(extractors["inception"].info)
        features, counts, pass_timings = _pass(protocol, selection, extractors, cache, config, device)
        if on_features is not None:
            on_features(items, selection, features)
        timings.update({f"extract.{k}": v for k, v in pass_timings.items()})
        pairs = protocol.score_pairs(selection, extractors, device)
        if pairs is not None:
            timings["pairs"] = pairs.scores.seconds
        started = time.perf_counter()
        overall, per_emotion = clip_values(*protocol.compute(selection, features, reference, pairs, seed=config.seed))
        timings["metrics"] = time.perf_counter() - started
        key = values_key(identity)
        if key is not None:
            cache.put_summary(key, _encode_values(overall, per_emotion))

    smoke = any(is_smoke for _, is_smoke in used.values()) or bool(reference is not None and reference.smoke)
    return EvaluationResult(
        protocol=protocol.name,
        protocol_version=protocol.version,
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
        environment={**environment(device), "runtime": runtime.to_dict(), "precision_settings": policy_state()},
        timings={k: round(v, 3) for k, v in timings.items()},
        features=counts,
        metrics_cached=cached_values is not None,
        overall=overall,
        per_emotion=per_emotion,
        not_computed=not_computed,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def fill_cache_for_rank(
    path: str | Path,
    config: EvalConfig,
    world: World,
    *,
    extractors: Mapping[str, FeatureExtractor] | None = None,
    cache: FeatureCache | None = None,
) -> dict[str, dict[str, int]]:
    """This rank's share of :func:`evaluate`'s feature pass, written to the shared feature cache; no metrics.

    Under ``torchrun`` / ``accelerate launch`` every rank calls this on its
    slice, then rank 0 runs :func:`evaluate`, which finds every feature cached.
    Images are dealt out one by one in canonical order (features of an image do
    not depend on the other images of its model batch); LPIPS, reduced per
    emotion, is dealt out by emotion.  Returns computed/cached counts per extractor.
    """
    if not config.cache or (cache is not None and not cache.enabled):
        raise UsageError("a data-parallel evaluation shares features through the cache: drop --no-cache")
    cache = cache if cache is not None else FeatureCache(enabled=True)
    problem = cache.probe()  # before any image is hashed or model built
    if problem is not None:
        raise UsageError(
            f"the feature cache folder {cache.root} cannot be used ({problem}); a data-parallel evaluation hands "
            "the features of every rank over through it: make it writable, or set EMOGEN_BENCH_HOME to a writable "
            "folder that every rank shares"
        )
    protocol = get_protocol(config.protocol)
    if config.reference_stats is None:
        check_reference_given(config.metrics, protocol.name)
    report = validate_submission(
        path, per_emotion=config.per_emotion, show_progress=config.show_progress and world.is_main
    )
    if not report.valid:
        raise InvalidSubmissionError(report)
    metrics = config.metrics
    if config.reference_stats is None:
        metrics = tuple(m for m in metrics if m not in ("fid", "kid"))
    selection = protocol.select(items_from_report(report), metrics, pairs=config.pairs, seed=config.seed)
    groups = protocol.pass_groups(selection)
    names = sorted({name for _, group in groups for name in group})
    if extractors is None:
        extractors = build_extractors(names, open_store(config.weights_override), protocol=protocol.name)
    device = str(resolve_device(world.device(config.device)))
    counts: dict[str, dict[str, int]] = {}
    for files, group in groups:
        mine = set(world.shard(list(dict.fromkeys(item.emotion for item in files))))
        per_image = tuple(name for name in group if name != "lpips")
        shares = [(world.shard(files), per_image), ([i for i in files if i.emotion in mine], ("lpips",))]
        for share, share_names in shares:
            share_names = tuple(name for name in share_names if name in group)
            if not share or not share_names:
                continue
            extraction = extract(
                share, {name: extractors[name] for name in share_names}, cache=cache,
                batch_size=config.batch_size, num_workers=config.num_workers, device=device,
                show_progress=config.show_progress and world.is_main, desc=f"rank {world.rank} of {world.size}",
                compile=config.compile,
            )  # fmt: skip
            counts.update({name: dict(extraction.counts[name]) for name in share_names})
    return counts
