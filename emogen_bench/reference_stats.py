"""Reference statistics: the Inception statistics of the EmoSet reference images, built once, cited by hash.

:func:`build_reference_stats` streams the Inception features of the indexed
reference images (the EICG subset, or one split of it) into float64 streaming
accumulators, per emotion and pooled, and keeps a seeded sample of features per
emotion for KID.  The result is one versioned ``.npz`` file:

- ``mu.<scope>`` (float64, ``(d,)``) and ``sigma.<scope>`` (float64, ``(d, d)``,
  unbiased) for ``scope`` = ``pooled`` and each emotion;
- ``kid.<emotion>`` (float32, ``(m, d)``): up to ``task.METRICS.kid_reference_per_emotion``
  features per emotion, drawn without replacement by ``numpy.random.default_rng(seed)``
  (emotions in EmoSet order), kept in canonical order; the pooled KID sample is their union;
- ``metadata``: a JSON string (format and version, protocol, benchmark version,
  index digest, split, counts, KID sample sizes, extractor identity, seed, creation time).

At d=2048 the file holds nine 32 MiB covariances and up to 16,000 KID rows:
about 430 MB.  Images are processed in blocks of :data:`BLOCK_IMAGES` in
canonical order (emotion id, path), so memory stays bounded and the sums do not
depend on the loader's batch size or worker count.  Features go through the
feature cache like any evaluation's, so an interrupted build resumes.

Under the ``emogen-paper-code`` protocol (``protocol=``) the statistics are
those of the released code: the Inception behind its preprocessing (the
extractor must be the paper-code variant), every indexed image of each emotion
(split ``all``, forced), mean and covariance from raw float64 sums as
torchmetrics computes them, and no KID sample (that protocol has no KID).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emogen_bench import __version__
from emogen_bench.cache import FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.data import IndexRow, index_digest, load_index
from emogen_bench.distributed import World
from emogen_bench.errors import DataError, InvalidInputError, UsageError
from emogen_bench.features.base import ExtractorInfo, FeatureExtractor
from emogen_bench.features.paper_code import is_paper_code
from emogen_bench.fileio import atomic_writer
from emogen_bench.hashing import sha256_file
from emogen_bench.metrics.fid import GaussianStats, StatsAccumulator
from emogen_bench.metrics.paper_code import SumsAccumulator
from emogen_bench.pipeline import ImageItem, canonical_key, extract
from emogen_bench.protocols import PAPER_CODE, PROTOCOLS, get_protocol
from emogen_bench.safe_read import file_kind, loads_json
from emogen_bench.task import DATA, DEFAULT_SEED, EMOTION_NAMES, METRICS, PROTOCOL
from emogen_bench.weights.registry import (
    REFERENCE_BUILD_HINT,
    REFERENCE_STATS_LOADER,
    Registry,
    load_registry,
    reference_build_hint,
    reference_stats_id,
)

if TYPE_CHECKING:
    from emogen_bench.weights.store import WeightStore

REFERENCE_FORMAT = "emogen-bench-reference-stats"
REFERENCE_FORMAT_VERSION = 1
#: ``all`` is the whole EICG subset; the others are EmoSet's splits of it.
SPLITS: tuple[str, ...] = ("all", *DATA.splits)
#: The extractor output the statistics are computed on (Inception's 2048-d pool features).
FEATURE_OUTPUT = "pool"
#: Images per block of the build; a multiple of the model batch so a cold build batches like one pass.
BLOCK_IMAGES = 256 * METRICS.model_batch
#: Loader settings share the evaluation's defaults (they never change a result).
DEFAULTS = EvalConfig()
BUILD_HINT = REFERENCE_BUILD_HINT


def build_hint(protocol: str = PROTOCOL) -> str:
    """The command that builds reference statistics for ``protocol``."""
    return reference_build_hint(protocol)


@dataclass(frozen=True, eq=False)
class ReferenceStats:
    """Reference statistics: per-emotion and pooled Gaussians, KID samples, and how they were made.

    ``path`` and ``sha256`` (hex of the file's bytes) are set when the
    statistics were written or loaded.
    """

    per_emotion: Mapping[str, GaussianStats]
    pooled: GaussianStats
    kid_sample: Mapping[str, np.ndarray]
    metadata: Mapping[str, Any]
    path: Path | None = None
    sha256: str | None = None

    @property
    def kid_pooled(self) -> np.ndarray:
        """The pooled KID reference sample: the per-emotion samples stacked in EmoSet order."""
        return np.concatenate([self.kid_sample[emotion] for emotion in EMOTION_NAMES if emotion in self.kid_sample])

    @property
    def protocol(self) -> str:
        """The protocol the statistics were built for."""
        return str(self.metadata["protocol"])

    def check_protocol(self, protocol: str) -> None:
        """Refuse statistics built for another protocol than the evaluation's (other preprocessing, other set)."""
        if self.protocol != protocol:
            where = self.path if self.path is not None else "the reference statistics"
            raise UsageError(
                f"{where} were built for protocol {self.protocol}, but this evaluation uses {protocol}; their "
                f"numbers are never mixed. Build reference statistics for {protocol} with `{build_hint(protocol)}`"
            )

    @property
    def extractor(self) -> Mapping[str, Any]:
        """The identity of the extractor the statistics were built with (name, cache_key, artifacts, smoke)."""
        return self.metadata["extractor"]

    @property
    def smoke(self) -> bool:
        """True when built with the tiny in-code models: numbers that mean nothing."""
        return bool(self.extractor.get("smoke", False))

    def check_extractor(self, info: ExtractorInfo) -> None:
        """Refuse to compare features of ``info``'s extractor with statistics built by another one."""
        built = self.extractor.get("cache_key")
        if built != info.cache_key:
            where = self.path if self.path is not None else "the reference statistics"
            raise UsageError(
                f"{where} were built with the Inception extractor {built} (artifacts "
                f"{dict(self.extractor.get('artifacts', {}))}), but this evaluation uses {info.cache_key} "
                f"(artifacts {dict(info.artifacts)}); FID/KID would compare different feature spaces. Build "
                f"reference statistics with the same weights (`{BUILD_HINT}`) or evaluate with the weights "
                "they were built with"
            )

    def provenance(self) -> dict[str, Any]:
        """What a results document records about the reference."""
        meta = self.metadata
        return {
            "path": None if self.path is None else str(self.path),
            "sha256": self.sha256,
            "format": meta["format"],
            "format_version": meta["format_version"],
            "protocol": meta["protocol"],
            "benchmark_version": meta["benchmark_version"],
            "index_digest": meta["index_digest"],
            "split": meta["split"],
            "counts": dict(meta["counts"]),
            "kid_sample_counts": dict(meta["kid_sample_counts"]),
            "extractor": dict(self.extractor),
            "seed": meta["seed"],
            "created": meta["created"],
            "smoke": self.smoke,
        }


# --- pure helpers ---------------------------------------------------------------------------------


def check_split(split: str, protocol: str) -> None:
    """Refuse a split the protocol does not use: ``emogen-paper-code`` compares against every image (``all``)."""
    if get_protocol(protocol).name == PAPER_CODE and split != "all":
        raise UsageError(
            f"split {split!r} under protocol {PAPER_CODE}: the released code compares against every EmoSet image "
            "of each emotion, so its reference statistics use split all (leave --split out)"
        )


def select_rows(rows: Sequence[IndexRow], split: str) -> list[IndexRow]:
    """The rows of ``split`` (``all``: every row)."""
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return [row for row in rows if split == "all" or row.split == split]


def kid_sample_positions(counts: Mapping[str, int], seed: int, per_emotion: int) -> dict[str, np.ndarray]:
    """Sorted within-emotion indices of the KID sample: up to ``per_emotion`` drawn without replacement.

    One generator, ``default_rng(seed)``, draws for each emotion in EmoSet order.
    """
    rng = np.random.default_rng(seed)
    chosen = {}
    for emotion in EMOTION_NAMES:
        n = counts.get(emotion, 0)
        chosen[emotion] = np.sort(rng.choice(n, size=min(per_emotion, n), replace=False)) if n else np.empty(0, int)
    return chosen


def extractor_identity(info: ExtractorInfo) -> dict[str, Any]:
    """The JSON-able identity of an extractor recorded in the metadata."""
    return {
        "name": info.name,
        "cache_key": info.cache_key,
        "preprocess_version": info.preprocess_version,
        "outputs": {name: list(shape) for name, shape in info.outputs.items()},
        "artifacts": dict(sorted(info.artifacts.items())),
        "smoke": info.smoke,
    }


def _stats_arrays(per_emotion: Mapping[str, GaussianStats], pooled: GaussianStats,
                  kid_sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    arrays = {"mu.pooled": pooled.mu, "sigma.pooled": pooled.sigma}
    for emotion, stats in per_emotion.items():
        arrays[f"mu.{emotion}"] = stats.mu
        arrays[f"sigma.{emotion}"] = stats.sigma
    for emotion, sample in kid_sample.items():
        arrays[f"kid.{emotion}"] = sample
    return arrays


# --- building -------------------------------------------------------------------------------------


def _check_out_path(out_path: Path, overwrite: bool) -> None:
    if out_path.is_dir():
        raise UsageError(f"--out {out_path} is a folder; give a file name such as {out_path / 'reference.npz'}")
    if out_path.exists() and not overwrite:
        raise UsageError(f"--out {out_path} already exists; pass --overwrite to replace it or choose another name")


def _reference_items(rows: Sequence[IndexRow], emoset_root: Path, index_dir: Path) -> list[ImageItem]:
    """Items for the rows, in canonical order; every file must exist and every row carry a sha256."""
    unhashed = [row.path for row in rows if not row.sha256]
    if unhashed:
        raise DataError(
            f"the index at {index_dir} has no sha256 for {len(unhashed)} image(s) (e.g. {unhashed[0]}): it was "
            "prepared with --no-hash. Re-create it without --no-hash; reference statistics check every image"
        )
    missing = [row.path for row in rows if not (emoset_root / row.path).is_file()]
    if missing:
        shown = ", ".join(str(emoset_root / path) for path in missing[:3])
        raise DataError(
            f"{len(missing)} indexed image(s) are missing under {emoset_root}: {shown}"
            f"{', ...' if len(missing) > 3 else ''}. Is --emoset-root the folder the index was prepared from?"
        )
    items = [ImageItem(emoset_root / row.path, row.path, row.sha256, row.emotion) for row in rows]
    return sorted(items, key=canonical_key)


def _write_npz_atomic(out_path: Path, arrays: Mapping[str, np.ndarray], *, overwrite: bool) -> None:
    """``np.savez`` through :func:`emogen_bench.fileio.atomic_writer` (never replaces a file that appeared)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_writer(out_path, overwrite=overwrite) as handle:
            np.savez(handle, **arrays)
    except UsageError as error:
        raise UsageError(f"--out: {error}. Pass --overwrite or choose another name") from None


def fill_reference_cache_for_rank(
    index_dir: str | Path,
    emoset_root: str | Path,
    *,
    extractor: FeatureExtractor,
    world: World,
    split: str = "train",
    cache: FeatureCache | None = None,
    batch_size: int = 32,
    num_workers: int = 2,
    device: str = "auto",
    show_progress: bool = True,
) -> int:
    """This rank's share of :func:`build_reference_stats`' features, written to the shared feature cache.

    Under ``torchrun`` / ``accelerate launch`` every rank calls this on every
    ``world.size``-th image (canonical order), then rank 0 builds the statistics
    from the cache.  Returns the number of images this rank covered.
    """
    cache = cache if cache is not None else FeatureCache()
    if not cache.enabled:
        raise UsageError("data-parallel reference statistics share the features through the cache: drop --no-cache")
    problem = cache.probe()  # before any image is read: the ranks hand their features over through it
    if problem is not None:
        raise UsageError(
            f"the feature cache folder {cache.root} cannot be used ({problem}); data-parallel reference statistics "
            "hand every rank's features over through it: make it writable, or set EMOGEN_BENCH_HOME to a writable "
            "folder that every rank shares"
        )
    root = Path(emoset_root)
    items = world.shard(_reference_items(select_rows(load_index(index_dir), split), root, Path(index_dir)))
    if items:
        extract(
            items, {extractor.info.name: extractor}, cache=cache, batch_size=batch_size, num_workers=num_workers,
            device=world.device(device), show_progress=show_progress and world.is_main,
            desc=f"reference features, rank {world.rank} of {world.size}",
        )  # fmt: skip
    return len(items)


def build_reference_stats(
    index_dir: str | Path,
    emoset_root: str | Path,
    out_path: str | Path,
    *,
    extractor: FeatureExtractor,
    split: str = "all",
    cache: FeatureCache | None = None,
    batch_size: int = DEFAULTS.batch_size,
    num_workers: int = DEFAULTS.num_workers,
    device: str = DEFAULTS.device,
    seed: int = DEFAULT_SEED,
    show_progress: bool = True,
    overwrite: bool = False,
    protocol: str = PROTOCOL,
) -> ReferenceStats:
    """Compute the reference statistics of the indexed images of ``split`` and write them to ``out_path``.

    Every image is checked against the sha256 recorded in the index when it is
    read (images whose features are already cached are not re-read); a
    missing or changed file is a :class:`DataError` naming it.  Each emotion
    needs at least two images.  ``out_path`` is never replaced unless
    ``overwrite``; it is written atomically.  Under ``emogen-paper-code`` the
    split must be ``all`` and ``extractor`` the paper-code Inception.
    """
    check_split(split, protocol)
    paper_code = get_protocol(protocol).name == PAPER_CODE
    out = Path(out_path)
    root = Path(emoset_root)
    _check_out_path(out, overwrite)
    if not root.is_dir():
        raise UsageError(f"--emoset-root {root} is not a folder; pass the EmoSet folder the index was prepared from")
    info = extractor.info
    if FEATURE_OUTPUT not in info.outputs or len(info.outputs[FEATURE_OUTPUT]) != 1:
        raise UsageError(f"extractor {info.name!r} has no 1-d {FEATURE_OUTPUT!r} output; pass the Inception extractor")
    if is_paper_code(info) != paper_code:
        raise UsageError(
            f"the Inception extractor given has the preprocessing {info.preprocess_version!r}, not the one of "
            f"protocol {protocol}; build it with build_extractors(..., protocol={protocol!r}) "
            f"(or tiny_extractors(protocol={protocol!r}))"
        )
    all_rows = load_index(index_dir)
    rows = select_rows(all_rows, split)
    counts = {emotion: sum(row.emotion == emotion for row in rows) for emotion in EMOTION_NAMES}
    short = {emotion: n for emotion, n in counts.items() if n < 2}
    if short:
        raise DataError(
            f"split {split!r} of the index at {index_dir} has fewer than 2 images of "
            + ", ".join(f"{emotion} ({n})" for emotion, n in short.items())
            + "; reference statistics need at least 2 per emotion (choose another split, e.g. all)"
        )
    items = _reference_items(rows, root, Path(index_dir))
    dim = info.outputs[FEATURE_OUTPUT][0]
    kid_per_emotion = 0 if paper_code else METRICS.kid_reference_per_emotion
    chosen = kid_sample_positions(counts, seed, kid_per_emotion)
    accumulator_type = SumsAccumulator if paper_code else StatsAccumulator
    accumulators = {emotion: accumulator_type(dim) for emotion in EMOTION_NAMES}
    kid_rows: dict[str, list[np.ndarray]] = {emotion: [] for emotion in EMOTION_NAMES}
    starts: dict[str, int] = {}
    for position, item in enumerate(items):
        starts.setdefault(item.emotion, position)

    cache = cache if cache is not None else FeatureCache()
    blocks = range(0, len(items), BLOCK_IMAGES)
    for number, start in enumerate(blocks, 1):
        block = items[start : start + BLOCK_IMAGES]
        result = extract(
            block, {info.name: extractor}, cache=cache, batch_size=batch_size, num_workers=num_workers,
            device=device, show_progress=show_progress, desc=f"reference features, block {number}/{len(blocks)}",
        )
        features = result.features[info.name][FEATURE_OUTPUT]
        emotions = np.array([item.emotion for item in block])
        for emotion in EMOTION_NAMES:
            rows_here = np.flatnonzero(emotions == emotion)
            if rows_here.size == 0:
                continue
            segment = features[rows_here[0] : rows_here[-1] + 1]
            accumulators[emotion].add(segment)
            within = np.arange(start + rows_here[0], start + rows_here[-1] + 1) - starts[emotion]
            kid_rows[emotion].append(segment[np.isin(within, chosen[emotion])])

    per_emotion = {emotion: accumulators[emotion].stats() for emotion in EMOTION_NAMES}
    pooled_accumulator = accumulator_type(dim)
    for emotion in EMOTION_NAMES:
        pooled_accumulator.merge(accumulators[emotion])
    pooled = pooled_accumulator.stats()
    kid_sample = {
        emotion: np.concatenate(kid_rows[emotion]).astype(np.float32).reshape(-1, dim) for emotion in EMOTION_NAMES
    }
    metadata = {
        "format": REFERENCE_FORMAT,
        "format_version": REFERENCE_FORMAT_VERSION,
        "protocol": get_protocol(protocol).name,
        "benchmark_version": __version__,
        "index_digest": index_digest(all_rows),
        "split": split,
        "n": len(items),
        "counts": counts,
        "kid_sample_counts": {emotion: int(sample.shape[0]) for emotion, sample in kid_sample.items()},
        "feature_dim": dim,
        "extractor": extractor_identity(info),
        "seed": seed,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return write_reference_stats(ReferenceStats(per_emotion, pooled, kid_sample, metadata), out, overwrite=overwrite)


def write_reference_stats(stats: ReferenceStats, out_path: str | Path, *, overwrite: bool = False) -> ReferenceStats:
    """Write ``stats`` (arrays and metadata) to ``out_path`` atomically; returns them with path and sha256 set."""
    out = Path(out_path)
    _check_out_path(out, overwrite)
    arrays = _stats_arrays(stats.per_emotion, stats.pooled, stats.kid_sample)
    arrays["metadata"] = np.array(json.dumps(dict(stats.metadata)))
    _write_npz_atomic(out, arrays, overwrite=overwrite)
    return replace(stats, path=out, sha256=sha256_file(out))


# --- loading --------------------------------------------------------------------------------------


def _invalid(path: Path, problem: str, protocol: str = PROTOCOL) -> InvalidInputError:
    """The file cannot be used; the message ends with the command that rebuilds it for ``protocol``."""
    return InvalidInputError(
        f"{path} is not usable reference statistics: {problem}. Rebuild it with `{build_hint(protocol)}`"
    )


def _read_metadata(path: Path, archive: Any) -> dict[str, Any]:
    if "metadata" not in archive.files:
        raise _invalid(path, "it has no metadata (not written by emogen-bench reference-stats build)")
    try:
        metadata = loads_json(str(archive["metadata"][()]), str(path), "metadata", InvalidInputError)
    except InvalidInputError as error:
        raise _invalid(path, f"its metadata cannot be read ({error})") from None
    except (ValueError, TypeError) as error:
        raise _invalid(path, f"its metadata is not a string ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != REFERENCE_FORMAT:
        raise _invalid(path, f"its format is not {REFERENCE_FORMAT!r}")
    declared = metadata.get("protocol")
    protocol = declared if isinstance(declared, str) and declared in PROTOCOLS else PROTOCOL
    version = metadata.get("format_version")
    if version != REFERENCE_FORMAT_VERSION:
        raise _invalid(path, f"it has format version {version!r}; this emogen-bench reads version "
                             f"{REFERENCE_FORMAT_VERSION}", protocol)
    if declared != protocol:
        raise _invalid(path, f"it was built for protocol {declared!r}, not one of {', '.join(PROTOCOLS)}")
    required = ("counts", "kid_sample_counts", "extractor", "feature_dim", "index_digest", "split", "seed", "created")
    absent = [key for key in required if key not in metadata]
    if absent:
        raise _invalid(path, f"its metadata lacks {', '.join(absent)}", protocol)
    for key in ("counts", "kid_sample_counts"):
        table = metadata[key]
        if not isinstance(table, dict) or any(not isinstance(table.get(e), int) for e in EMOTION_NAMES):
            raise _invalid(path, f"its metadata {key!r} does not give an integer for every emotion", protocol)
    if not isinstance(metadata["feature_dim"], int) or metadata["feature_dim"] < 1:
        raise _invalid(
            path, f"its metadata feature_dim {metadata['feature_dim']!r} is not a positive integer", protocol
        )
    return metadata


def _read_array(path: Path, archive: Any, key: str, shape: tuple[int, ...], protocol: str) -> np.ndarray:
    if key not in archive.files:
        raise _invalid(path, f"the array {key!r} is missing", protocol)
    try:
        array = archive[key]
    except Exception as error:  # noqa: BLE001 - a damaged member fails in zip, header or CRC checks
        problem = f"the array {key!r} cannot be read ({type(error).__name__}: {error})"
        raise _invalid(path, problem, protocol) from None
    if not isinstance(array, np.ndarray):  # a member that is not an .npy array is read back as bytes
        raise _invalid(path, f"the member {key!r} is not an array", protocol)
    if array.shape != shape:
        raise _invalid(path, f"the array {key!r} has shape {array.shape}, expected {shape}", protocol)
    if not np.all(np.isfinite(array)):
        raise _invalid(path, f"the array {key!r} holds NaN or infinite values", protocol)
    return array


def reference_names(registry: Registry | None = None) -> tuple[str, ...]:
    """The registry ids of official reference statistics (``ref-stats-<protocol>``), in registry order."""
    registry = registry if registry is not None else load_registry()
    return tuple(a.id for a in registry.artifacts if a.loader == REFERENCE_STATS_LOADER)


def is_reference_name(value: str | Path, registry: Registry | None = None) -> bool:
    """True when ``value`` names official reference statistics rather than a file.

    An existing file always wins (a path still works); otherwise a bare registry id is a name.
    """
    text = str(value)
    return file_kind(Path(text)) == "missing" and text in reference_names(registry)


def fetch_reference_stats(name: str, store: WeightStore | None = None) -> Path:
    """The local file of the official statistics ``name``, fetched and verified like any weight artifact.

    Downloads it when missing (never in offline mode), checks its sha256 against the registry, and
    raises :class:`WeightsError` (exit code 3) when it cannot: before publication, with the command that
    builds the statistics locally.
    """
    if store is None:
        from emogen_bench.weights import open_store

        store = open_store()
    [resolved] = store.fetch([name], show_progress=False)
    return resolved.path


def load_reference_stats(path: str | Path, *, store: WeightStore | None = None) -> ReferenceStats:
    """Read and check a reference-statistics file (format, version, a known protocol, every array's shape).

    ``path`` may also name official statistics in the weights registry (``ref-stats-eicg-v3``): they are
    fetched and verified through ``store`` (the default store when None) first.
    """
    if is_reference_name(path, None if store is None else store.registry):
        path = fetch_reference_stats(str(path), store)
    path = Path(path)
    kind = file_kind(path)
    if kind == "missing":
        names = ", ".join(reference_names(None if store is None else store.registry))
        raise UsageError(
            f"reference statistics {path} do not exist; build them with `{BUILD_HINT}`, or name official "
            f"statistics ({names})"
        )
    if kind is not None:
        raise UsageError(f"reference statistics {path} is {kind}; give the .npz file `{BUILD_HINT}` wrote")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - not a zip, truncated, or pickled: all mean "not our file"
        raise _invalid(path, f"it cannot be read as .npz ({type(error).__name__}: {error})") from None
    if not hasattr(archive, "files"):
        raise _invalid(path, "it is a single array, not an .npz archive")
    with archive:
        metadata = _read_metadata(path, archive)
        protocol = metadata["protocol"]
        dim = metadata["feature_dim"]
        counts, kid_counts = metadata["counts"], metadata["kid_sample_counts"]
        per_emotion = {}
        kid_sample = {}
        for emotion in EMOTION_NAMES:
            per_emotion[emotion] = GaussianStats(
                _read_array(path, archive, f"mu.{emotion}", (dim,), protocol),
                _read_array(path, archive, f"sigma.{emotion}", (dim, dim), protocol),
                counts[emotion],
            )
            kid_sample[emotion] = _read_array(path, archive, f"kid.{emotion}", (kid_counts[emotion], dim), protocol)
        pooled = GaussianStats(
            _read_array(path, archive, "mu.pooled", (dim,), protocol),
            _read_array(path, archive, "sigma.pooled", (dim, dim), protocol),
            sum(counts[emotion] for emotion in EMOTION_NAMES),
        )
    return ReferenceStats(per_emotion, pooled, kid_sample, metadata, path=path, sha256=sha256_file(path))


# --- publishing -----------------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string (JSON's escaping is valid TOML for these characters)."""
    return json.dumps(text, ensure_ascii=False)


def registry_entry(
    path: str | Path, *, urls: Sequence[str] = (), registry: Registry | None = None
) -> str:
    """The ``registry.toml`` entry that publishes the statistics file ``path`` as ``ref-stats-<protocol>``.

    The file is loaded and checked first; the entry pins its full sha256 and size and says in comments how
    it was made (protocol, split, EmoSet index digest, extractor and its weights, seed, emogen-bench
    version) and under which software the entry was printed.  Without ``urls`` the entry has ``urls = []``
    (still unpublished) and a comment asks for the download URL.
    """
    from emogen_bench.results import environment

    stats = load_reference_stats(path)
    registry = registry if registry is not None else load_registry()
    artifact_id = reference_stats_id(stats.protocol)
    known = registry.get(artifact_id) if artifact_id in registry else None
    file_name = known.files[0].name if known is not None else f"reference-{stats.protocol}.npz"
    meta, extractor = stats.metadata, stats.extractor
    env = environment("cpu")
    packages = ", ".join(f"{name} {version}" for name, version in env["packages"].items() if version)
    weights = ", ".join(f"{a} {d}" for a, d in dict(extractor.get("artifacts", {})).items())
    description = known.description if known is not None else f"Reference statistics of protocol {stats.protocol}"
    license_note = known.license if known is not None else "derived from EmoSet (research use, cite EmoSet)"
    used_by = ["fid", "kid"] if any(meta["kid_sample_counts"].values()) else ["fid"]
    lines = [
        f"[artifacts.{artifact_id}]",
        f"description = {_toml_string(description)}",
        f"used_by = {json.dumps(used_by)}",
        f"license = {_toml_string(license_note)}",
        f'loader = "{REFERENCE_STATS_LOADER}"',
        f"# made by: emogen-bench {meta['benchmark_version']} reference-stats build, protocol {meta['protocol']}, "
        f"split {meta['split']}, seed {meta['seed']}, created {meta['created']}",
        f"# EmoSet index: {meta['index_digest']}, {sum(meta['counts'].values())} images",
        f"# extractor: {extractor.get('name')} {extractor.get('cache_key')}; weights: {weights}",
        f"# entry printed under python {env['python']}, {packages}",
        "",
        f"[[artifacts.{artifact_id}.files]]",
        f"name = {_toml_string(file_name)}",
        f"urls = [{', '.join(_toml_string(u) for u in urls)}]"
        + ("" if urls else "  # add the download URL(s) of the uploaded file here"),
        'pin = "sha256"',
        f'sha256 = "{stats.sha256}"',
        f"size = {Path(path).stat().st_size}",
    ]
    if stats.smoke:
        lines.insert(0, "# SMOKE: built with the tiny in-code models; never publish these statistics")
    return "\n".join(lines) + "\n"
