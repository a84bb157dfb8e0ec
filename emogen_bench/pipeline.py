"""One pass over the images: each decoded once, each model run once per image, features cached.

The flow of :func:`extract`:

1. Put the items in the canonical order (emotion id, relative path).
2. Read what the cache holds: per-image features of each cacheable extractor
   (by image sha256), and the LPIPS summary of each emotion (by the sequence
   of the emotion's image hashes).
3. One data-loader pass over the images that still need any model: a worker
   reads each file once, checks its sha256, decodes it to 8-bit RGB and applies
   every needed extractor's ``preprocess`` to the same array.  Cached images are
   never opened.
4. The main process gathers each extractor's inputs into batches of exactly
   ``task.METRICS.model_batch`` images, in canonical order, whatever the
   loader's batch size or worker count: every image is seen by the model at
   the same batch position in every run, so its features do not depend on
   those settings.  Each model batch's features are handed at once to a
   background thread that writes them to the cache (in order; the pass waits
   for it on every way out, an error or Ctrl-C included), so an interrupted run
   resumes where it stopped.  The extractors whose
   features are stored run first on each batch and LPIPS (never stored per
   image, and the slowest) last, so an interruption inside LPIPS loses no
   other extractor's features of the images read so far.
5. LPIPS features (millions of values per image) are never stored: each row is
   added, in canonical order, to one streaming :class:`PairwiseAccumulator`
   per emotion (group = index within the emotion modulo ``lpips_groups``),
   summarised as soon as the emotion's last image is added, and the small
   summary is cached at once.  On CUDA the rows stay on the device and the sums
   are kept there (:class:`DeviceAccumulator`, equal to the CPU's within 1e-6
   relative); elsewhere they are added on the CPU in float64.

:func:`score_pairs` is the ``emogen-paper-code`` protocol's pair stage, run
after the pass: only the images of the sampled pairs (a few hundred at most)
are read and decoded again, at full resolution, for LPIPS and Sem-D.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from emogen_bench.cache import FeatureCache
from emogen_bench.config import check_num_workers, resolve_num_workers
from emogen_bench.errors import BenchError, DataError, InvalidInputError, UsageError
from emogen_bench.features.base import ExtractorInfo, FeatureExtractor
from emogen_bench.features.lpips_accumulator import DeviceAccumulator
from emogen_bench.features.paper_code import double_rescaled_embeddings, lpips_unit_distance
from emogen_bench.hashing import SHA256_HEX, sha256_bytes
from emogen_bench.metrics.intervals import group_ids
from emogen_bench.metrics.pairwise import PairwiseAccumulator, PairwiseSummary
from emogen_bench.progress import progress
from emogen_bench.runtime import Runtime, precision_policy
from emogen_bench.safe_read import file_kind
from emogen_bench.task import EMOTION_IDS, METRICS

#: The extractor whose features are reduced to per-emotion all-pairs summaries instead of returned.
LPIPS = "lpips"
#: The output of the LPIPS extractor that the all-pairs identity is applied to.
LPIPS_OUTPUT = "phi"

#: Where an image comes from, which decides whose fault a file that cannot be read is: EmoSet, the
#: reference data (:class:`DataError`, exit 4), or a validated submission (:class:`InvalidInputError`, exit 1).
ImageSource = Literal["emoset", "submission"]


@dataclass(frozen=True)
class ImageItem:
    """One image to score: its file, its path relative to the set's root (posix), content hash, emotion, and
    where it comes from (EmoSet unless said otherwise; :func:`items_from_report` says ``"submission"``)."""

    path: Path
    relpath: str
    sha256: str
    emotion: str
    source: ImageSource = "emoset"

    def __post_init__(self) -> None:
        if self.emotion not in EMOTION_IDS:
            raise ValueError(f"{self.relpath}: unknown emotion {self.emotion!r}")
        if not SHA256_HEX.fullmatch(self.sha256):
            raise ValueError(f"{self.relpath}: {self.sha256!r} is not a sha256 (64 lower-case hex digits)")
        if self.source not in ("emoset", "submission"):
            raise ValueError(f"{self.relpath}: unknown image source {self.source!r} (emoset or submission)")


def canonical_key(item: ImageItem) -> tuple[int, str]:
    """The canonical order of images: emotion id, then relative path."""
    return (EMOTION_IDS[item.emotion], item.relpath)


def items_from_report(report: Any) -> list[ImageItem]:
    """The images of a validated submission (a ``ValidationReport``), in canonical order."""
    items = [
        ImageItem(path=Path(report.path) / entry.path, relpath=entry.path, sha256=entry.sha256,
                  emotion=entry.path.split("/", 1)[0], source="submission")
        for entry in report.manifest
    ]
    return sorted(items, key=canonical_key)


@dataclass(eq=False)
class ExtractionResult:
    """What one pass produced.

    ``features[extractor][output]`` is ``(len(items), *shape)``, row ``i`` for
    ``items[i]`` as given (LPIPS excluded: see ``lpips``).  ``lpips[emotion]``
    is the all-pairs summary of that emotion's LPIPS features.  ``counts[extractor]``
    has ``computed`` (images run through the model now) and ``cached`` (images
    whose features came from the cache; for LPIPS, images of emotions whose
    summary was cached).  ``decoded`` is the number of image files read.
    ``timings`` are seconds per stage: ``cache_read``, ``loader_wait`` (the
    main process waiting for decoded, preprocessed images), ``model.<name>``,
    ``cache_write`` (the main process handing writes to the writer thread, and
    waiting for it at the end), ``lpips_accumulate``, ``lpips_summary`` and ``total``.
    """

    features: dict[str, dict[str, np.ndarray]]
    lpips: dict[str, PairwiseSummary]
    timings: dict[str, float]
    counts: dict[str, dict[str, int]]
    decoded: int = 0


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a CUDA device that is absent is a usage error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device}: no CUDA device is available here; use --device cpu (or auto)")
    return resolved


# --- decoding -------------------------------------------------------------------------------------


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes -> ``H x W x 3`` uint8 RGB array (grayscale and other modes converted to RGB)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return np.array(rgb, dtype=np.uint8)


def read_image(path: Path, sha256: str, source: ImageSource = "emoset") -> np.ndarray:
    """Read ``path`` once, check its bytes still hash to ``sha256``, decode it; errors name the file.

    The file was listed before (validated, or indexed): one that is now missing, not a regular file
    (refused by type before it is opened), unreadable, changed or undecodable is a :class:`DataError`
    for EmoSet and an :class:`InvalidInputError` for a submission (see :data:`ImageSource`).
    """
    submission = source == "submission"
    error = InvalidInputError if submission else DataError
    since = "after validation" if submission else "after it was listed"
    again = (
        "Validate the submission again" if submission
        else "Re-create the EmoSet index with `emogen-bench data prepare`"
    )  # fmt: skip
    kind = file_kind(path)
    if kind is not None and kind != "missing" and not kind.startswith("unreadable"):
        raise error(f"{path} became {kind} {since}, not a regular file; refused without opening it. {again}")
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path} is missing: it was {'validated' if submission else 'indexed'} but is no longer there. "
                    f"{again}") from None  # fmt: skip
    except OSError as problem:
        raise error(f"{path} became unreadable {since}: {problem.strerror or problem}. {again}") from None
    actual = sha256_bytes(data)
    if actual != sha256:
        recorded = "validation recorded" if submission else "the listing recorded"
        raise error(f"{path} changed {since}: its sha256 is {actual}, {recorded} {sha256}. {again}")
    try:
        return decode_image(data)
    except Exception as problem:  # noqa: BLE001 - PIL raises many types for a bad file; all mean "not an image"
        raise error(f"{path} cannot be decoded as an image ({type(problem).__name__}: {problem}). {again}") from None


@dataclass(frozen=True)
class _Work:
    """One image the loader must read: its canonical position and the extractors that need it."""

    position: int
    path: Path
    sha256: str
    needs: tuple[str, ...]
    source: ImageSource = "emoset"


class _ImageDataset(torch.utils.data.Dataset):
    """Decode each image once and apply each distinct preprocessing needed to it once.

    Extractors whose preprocessors are equal values (Sem-C's and EmoSet's resize and crop) share one
    computation per image: both names receive the same tensor.
    """

    def __init__(self, work: Sequence[_Work], preprocessors: Mapping[str, Callable[[np.ndarray], torch.Tensor]]):
        self.work = list(work)
        self.preprocessors = dict(preprocessors)
        self.shared = _first_equal(self.preprocessors)

    def __len__(self) -> int:
        return len(self.work)

    def __getitem__(self, index: int) -> tuple[int, dict[str, torch.Tensor] | BenchError]:
        work = self.work[index]
        try:
            image = read_image(work.path, work.sha256, work.source)
        except BenchError as error:  # returned, not raised: the main process raises it with a clean message
            return work.position, error
        computed: dict[str, torch.Tensor] = {}
        for name in work.needs:
            first = self.shared[name]
            if first not in computed:
                computed[first] = self.preprocessors[first](image)
        return work.position, {name: computed[self.shared[name]] for name in work.needs}


def _first_equal(preprocessors: Mapping[str, Callable[[np.ndarray], torch.Tensor]]) -> dict[str, str]:
    """Each name -> the first name (in the mapping's order) with the same preprocessing (see :func:`_same`)."""
    shared: dict[str, str] = {}
    firsts: list[str] = []
    for name, preprocessor in preprocessors.items():
        first = next((f for f in firsts if _same(preprocessors[f], preprocessor)), None)
        if first is None:
            firsts.append(name)
        shared[name] = first or name
    return shared


def _same(one: Callable[[np.ndarray], torch.Tensor], other: Callable[[np.ndarray], torch.Tensor]) -> bool:
    """One object, or equal values of one type (frozen dataclasses with equal settings compute the same)."""
    return one is other or (type(one) is type(other) and bool(one == other))


@dataclass
class _LoaderBatch:
    """A loader batch regrouped per extractor: canonical positions and stacked inputs."""

    inputs: dict[str, tuple[list[int], torch.Tensor]]
    errors: list[BenchError]

    def pin_memory(self) -> _LoaderBatch:
        """Page-locked copies, so the copy to a CUDA device can overlap with work (``pin_memory=True``)."""
        return _LoaderBatch({name: (p, t.pin_memory()) for name, (p, t) in self.inputs.items()}, self.errors)


def _collate(samples: list[tuple[int, dict[str, torch.Tensor] | BenchError]]) -> _LoaderBatch:
    positions: dict[str, list[int]] = {}
    tensors: dict[str, list[torch.Tensor]] = {}
    errors = []
    for position, result in samples:
        if isinstance(result, BenchError):
            errors.append(result)
            continue
        for name, tensor in result.items():
            positions.setdefault(name, []).append(position)
            tensors.setdefault(name, []).append(tensor)
    stacked: dict[tuple[int, ...], torch.Tensor] = {}  # names sharing one preprocessing share one stacked tensor,
    for name, rows in tensors.items():  # which then crosses from the worker once
        key = tuple(id(row) for row in rows)
        if key not in stacked:
            stacked[key] = torch.stack(rows)
        tensors[name] = [stacked[key]]
    return _LoaderBatch({name: (positions[name], tensors[name][0]) for name in positions}, errors)


# --- bookkeeping ----------------------------------------------------------------------------------


@dataclass
class _Stopwatch:
    """Seconds spent per stage, summed over the pass."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


class _FeatureTable:
    """Per-output arrays over the canonical positions, allocated on the first row seen."""

    def __init__(self, info: ExtractorInfo, n: int) -> None:
        self.info = info
        self.n = n
        self.arrays: dict[str, np.ndarray] = {}

    def fill(self, positions: list[int], outputs: Mapping[str, np.ndarray]) -> None:
        for name, value in outputs.items():
            if name not in self.arrays:
                self.arrays[name] = np.empty((self.n, *value.shape), dtype=value.dtype)
            self.arrays[name][positions] = value

    def in_order(self, inverse: np.ndarray) -> dict[str, np.ndarray]:
        """The arrays reordered from canonical positions to the caller's item order."""
        if not self.arrays:
            return {name: np.empty((0, *shape), dtype=np.float32) for name, shape in self.info.outputs.items()}
        return {name: array[inverse] for name, array in self.arrays.items()}


class _Pending:
    """Preprocessed inputs of one extractor (already on the device) waiting for a full model batch, in order."""

    def __init__(self) -> None:
        self.positions: list[int] = []
        self.inputs: torch.Tensor | None = None

    def add(self, positions: list[int], inputs: torch.Tensor) -> None:
        self.positions.extend(positions)
        self.inputs = inputs if self.inputs is None else torch.cat([self.inputs, inputs])

    def take(self, *, final: bool) -> tuple[list[int], torch.Tensor] | None:
        """Every whole model batch waiting (and, if ``final``, the rest too); ``None`` when there is none."""
        size = len(self.positions) if final else len(self.positions) // METRICS.model_batch * METRICS.model_batch
        if size == 0 or self.inputs is None:
            return None
        positions, inputs = self.positions[:size], self.inputs[:size]
        self.positions = self.positions[size:]
        self.inputs = self.inputs[size:] if self.positions else None
        return positions, inputs


def check_outputs(info: ExtractorInfo, outputs: Mapping[str, np.ndarray], rows: int) -> None:
    """Raise when an extractor's outputs do not match what its :class:`ExtractorInfo` declares (a bug)."""
    got = {name: tuple(value.shape) for name, value in outputs.items()}
    want = {name: (rows, *shape) for name, shape in info.outputs.items()}
    if got != want:
        raise RuntimeError(
            f"extractor {info.name!r} returned outputs {got} for {rows} images, but its ExtractorInfo declares "
            f"{dict(info.outputs)}; this is a bug in the extractor"
        )


# --- LPIPS summaries ------------------------------------------------------------------------------


def lpips_summary_key(info: ExtractorInfo, sha256s: Sequence[str], groups: int) -> str:
    """Cache key of one emotion's LPIPS summary.

    The hashes are taken in canonical order, not sorted: the jackknife group of
    an image is its index within the emotion, so the same images under other
    names can have other groups (the mean is the same; the interval may not be).
    """
    document = {"v": 1, "extractor": info.cache_key, "groups": groups, "images": list(sha256s)}
    return "lpips-" + hashlib.sha256(json.dumps(document).encode()).hexdigest()


class _CacheWriter:
    """Cache writes (feature entries, LPIPS summaries) done in order by one background thread.

    The main process hands each write over and goes on with the next batch; the bounded queue keeps at
    most ``depth`` writes waiting, so a slow disk slows the pass down instead of piling features up in
    memory.  An exception raised by a write is raised again, unchanged, in the main process at its next
    hand-over or at :meth:`close`; the writes after it are skipped.  :meth:`close` waits until every
    write handed over is done.  With ``threaded=False`` each write is done at once in the caller's thread.
    """

    def __init__(self, *, threaded: bool = True, depth: int = 8) -> None:
        self.error: BaseException | None = None
        self.reported = False
        self.queue: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.Queue(maxsize=depth)
        self.thread: threading.Thread | None = None
        if threaded:
            self.thread = threading.Thread(target=self._drain, name="emogen-bench cache writer", daemon=True)
            self.thread.start()

    def submit(self, write: Callable[..., None], *args: Any) -> None:
        """Do ``write(*args)`` after every write handed over before it (blocks while the queue is full)."""
        self._raise()
        if self.thread is None:
            write(*args)
        else:
            self.queue.put((write, args))

    def close(self, *, raise_error: bool = True) -> None:
        """Wait for every write handed over; then raise a write's error unless ``raise_error`` is false."""
        if self.thread is not None and self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if raise_error:
            self._raise()

    def _drain(self) -> None:
        while (job := self.queue.get()) is not None:
            if self.error is not None:
                continue  # a write failed: the rest are skipped, the main process raises the error
            write, args = job
            try:
                write(*args)
            except BaseException as error:  # noqa: BLE001 - handed to the main process, raised there
                self.error = error

    def _raise(self) -> None:
        if self.error is not None and not self.reported:
            self.reported = True
            raise self.error


class _LpipsReducer:
    """Adds LPIPS rows, arriving in canonical order, to one accumulator per emotion; summarises each.

    With ``device`` (a CUDA device) the rows are tensors on it and are summed there
    (:class:`DeviceAccumulator`); without, numpy rows go to a :class:`PairwiseAccumulator` on the CPU.
    """

    def __init__(self, groups: int, keys: Mapping[str, str], positions: Mapping[str, list[int]],
                 writer: _CacheWriter, cache: FeatureCache, clock: _Stopwatch,
                 device: torch.device | None = None) -> None:
        self.groups, self.keys, self.writer, self.cache, self.clock = groups, keys, writer, cache, clock
        self.device = device
        self.starts = {emotion: found[0] for emotion, found in positions.items()}
        self.remaining = {emotion: len(found) for emotion, found in positions.items()}
        self.group_of = {emotion: group_ids(len(found), groups) for emotion, found in positions.items()}
        self.summaries: dict[str, PairwiseSummary] = {}
        self.emotion: str | None = None
        self.accumulator: PairwiseAccumulator | DeviceAccumulator | None = None

    def add(self, emotion: str, positions: Sequence[int], rows: np.ndarray | torch.Tensor) -> None:
        """Add the rows of consecutive canonical ``positions``, all of ``emotion``."""
        if emotion != self.emotion:
            self.finish()
            dim = int(np.prod(tuple(rows.shape[1:])))
            self.emotion = emotion
            self.accumulator = (
                PairwiseAccumulator(dim, self.groups) if self.device is None
                else DeviceAccumulator(dim, self.groups, self.device)
            )  # fmt: skip
        assert self.accumulator is not None
        indices = np.asarray(positions) - self.starts[emotion]
        with self.clock("lpips_accumulate"):
            self.accumulator.add(rows.reshape(len(rows), -1), self.group_of[emotion][indices])  # type: ignore[arg-type]
        self.remaining[emotion] -= len(positions)
        if self.remaining[emotion] == 0:  # the emotion is complete: its summary is stored now, not at the next one
            self.finish()

    def finish(self) -> None:
        """Summarise the emotion in progress (if any) and cache its summary."""
        if self.emotion is None or self.accumulator is None:
            return
        with self.clock("lpips_summary"):
            summary = self.accumulator.summary()
        with self.clock("cache_write"):
            self.writer.submit(self.cache.put_summary, self.keys[self.emotion], summary.to_dict())
        self.summaries[self.emotion] = summary
        self.emotion, self.accumulator = None, None


def cached_summary(document: Any, groups: int, n: int) -> PairwiseSummary | None:
    """A cached LPIPS summary document as a :class:`PairwiseSummary`; ``None`` unless it is one for ``n`` images."""
    try:
        summary = PairwiseSummary.from_dict(document)
    except (TypeError, KeyError, ValueError):
        return None
    return summary if summary.groups == groups and summary.n == n else None


# --- shared memory -------------------------------------------------------------------------------

#: Where data-loader workers put the tensors they hand to the main process (Linux; Docker gives 64 MB).
SHARED_MEMORY = Path("/dev/shm")
#: Loader batches each worker prepares ahead (passed to the DataLoader, so the bound below is its own).
PREFETCH_FACTOR = 2
#: Loader batches held in shared memory besides those prepared ahead: the one the main process is
#: regrouping and the remainder of the previous one waiting for a full model batch.
HELD_BATCHES = 2


def _size(count: float) -> str:
    """``count`` bytes in MiB, for messages."""
    return f"{count / 2**20:.1f} MiB"


def fit_shared_memory(batch_size: int, workers: int, bytes_per_image: int, free_bytes: int, *,
                      auto_workers: bool = False, prefetch_factor: int = PREFETCH_FACTOR,
                      where: str = str(SHARED_MEMORY)) -> tuple[int, int]:
    """The loader batch size and worker count whose batches in flight fit in ``free_bytes`` of shared memory.

    In flight: ``(workers * prefetch_factor + HELD_BATCHES) * batch * bytes_per_image``.  The batch size is
    lowered until that fits; when not even one image per batch fits, ``auto_workers`` (the count was not
    chosen by the user) lowers the workers instead, and otherwise it is a :class:`UsageError` naming
    ``where``, its free space and the two ways out.  Never changes a result (model batches are regrouped).
    """
    slots = workers * prefetch_factor + HELD_BATCHES
    if bytes_per_image <= 0 or workers == 0:
        return batch_size, workers
    fits = free_bytes // (slots * bytes_per_image)
    if fits >= 1:
        return min(batch_size, fits), workers
    fewer = (free_bytes // bytes_per_image - HELD_BATCHES) // prefetch_factor
    if auto_workers and fewer >= 1:
        batch = free_bytes // ((fewer * prefetch_factor + HELD_BATCHES) * bytes_per_image)
        return min(batch_size, batch), fewer
    raise UsageError(
        f"{where} has {_size(free_bytes)} free, but {workers} data-loader worker(s) need "
        f"{_size(slots * bytes_per_image)} of it even with one image per batch ({slots} batches in flight x "
        f"{_size(bytes_per_image)} per image): use --num-workers 0 (images decoded in the main process, no shared "
        "memory), or give the container more shared memory (docker run --shm-size=2g ...)"
    )


def _payload_bytes(sample: Any) -> int:
    """Bytes of the tensors and arrays in one dataset sample (what a worker hands over per image)."""
    if isinstance(sample, torch.Tensor):
        return sample.numel() * sample.element_size()
    if isinstance(sample, np.ndarray):
        return int(sample.nbytes)
    if isinstance(sample, Mapping):
        return sum(_payload_bytes(value) for value in sample.values())
    if isinstance(sample, (list, tuple)):
        return sum(_payload_bytes(value) for value in sample)
    return 0


def _fit_loader(dataset: _ImageDataset, batch_size: int, workers: int, auto_workers: bool,
                ) -> tuple[int, int, tuple[int, Any] | None]:
    """Check the loader's shared-memory use against the free space of :data:`SHARED_MEMORY`.

    The first image is decoded and preprocessed here to measure it; it is returned (to be used, not read
    again).  Lowered settings are said once on stderr.  Nothing is done without workers or without the folder.
    """
    if workers == 0 or len(dataset) == 0:
        return batch_size, workers, None
    try:
        stats = os.statvfs(SHARED_MEMORY)
    except OSError:  # not Linux: torch shares tensors another way
        return batch_size, workers, None
    free = stats.f_bavail * stats.f_frsize
    first = dataset[0]
    if isinstance(first[1], BenchError):
        raise first[1]
    per_image = _payload_bytes(first[1])
    fitted = fit_shared_memory(batch_size, workers, per_image, free, auto_workers=auto_workers)
    if fitted != (batch_size, workers):
        print(
            f"emogen-bench: warning: {SHARED_MEMORY} has {_size(free)} free, too little for {workers} data-loader "
            f"workers with {batch_size} images per batch ({_size(per_image)} per image); using {fitted[1]} "
            f"workers with {fitted[0]} images per batch (results are the same; docker run --shm-size=2g gives "
            "more room)",
            file=sys.stderr,
        )
    return fitted[0], fitted[1], first


# --- the pass -------------------------------------------------------------------------------------


def extract(
    items: Sequence[ImageItem],
    extractors: Mapping[str, FeatureExtractor],
    *,
    cache: FeatureCache,
    batch_size: int = 32,
    num_workers: int | str = 0,
    device: str | torch.device = "auto",
    show_progress: bool = True,
    lpips_groups: int = METRICS.jackknife_groups,
    desc: str = "extracting features",
    background_writes: bool = True,
    compile: bool = False,
) -> ExtractionResult:
    """Run every extractor once on every image that the cache does not already cover.

    ``extractors`` maps names to extractors (``"lpips"`` is reduced to
    per-emotion summaries, see :class:`ExtractionResult`); they are moved to
    ``device``.  Images identical in content are computed once.  Raises
    :class:`DataError` (EmoSet) or :class:`InvalidInputError` (a submission's
    image; see :func:`read_image`) naming a file that is missing, changed since
    it was listed, or not decodable; features computed before the error stay cached.
    ``num_workers`` may be ``"auto"`` (:func:`emogen_bench.config.resolve_num_workers`); with workers, the
    loader batch is lowered when its tensors would not fit in ``/dev/shm`` (:func:`fit_shared_memory`).
    ``background_writes=False`` writes the cache in the calling thread (same entries, same results).
    The models run under the protocol's precision policy (:func:`emogen_bench.runtime.precision_policy`) and,
    with ``compile``, through ``torch.compile``; both, with the device type, are part of the feature-cache keys
    (each extractor is used through a copy carrying its :class:`~emogen_bench.runtime.Runtime`).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a positive integer (got {batch_size!r})")
    check_num_workers(num_workers)
    clock = _Stopwatch()
    started = time.perf_counter()
    given = list(items)
    order = sorted(range(len(given)), key=lambda i: canonical_key(given[i]))
    canon = [given[i] for i in order]
    inverse = np.empty(len(given), dtype=np.int64)
    inverse[order] = np.arange(len(given))
    target = resolve_device(device)
    workers = resolve_num_workers(num_workers, target.type)
    runtime = Runtime.for_device(target, compile=compile)
    extractors = {name: extractor.for_runtime(runtime) for name, extractor in extractors.items()}
    writer = _CacheWriter(threaded=background_writes)
    try:
        with precision_policy(target):
            result = _extract(canon, extractors, cache, writer, clock, target, batch_size=batch_size,
                              workers=workers, auto_workers=num_workers == "auto", show_progress=show_progress,
                              lpips_groups=lpips_groups, desc=desc)  # fmt: skip
    except BaseException:
        writer.close(raise_error=False)  # what was computed before the error is written before it is raised
        raise
    with clock("cache_write"):
        writer.close()
    tables, lpips, counts, decoded = result
    clock.seconds["total"] = time.perf_counter() - started
    return ExtractionResult(
        features={name: table.in_order(inverse) for name, table in tables.items()},
        lpips=dict(sorted(lpips.summaries.items(), key=lambda kv: EMOTION_IDS[kv[0]])) if lpips else {},
        timings=clock.seconds,
        counts=counts,
        decoded=decoded,
    )


def _extract(
    canon: Sequence[ImageItem],
    extractors: Mapping[str, FeatureExtractor],
    cache: FeatureCache,
    writer: _CacheWriter,
    clock: _Stopwatch,
    target: torch.device,
    *,
    batch_size: int,
    workers: int,
    auto_workers: bool,
    show_progress: bool,
    lpips_groups: int,
    desc: str,
) -> tuple[dict[str, _FeatureTable], _LpipsReducer | None, dict[str, dict[str, int]], int]:
    """The pass of :func:`extract` over the canonically ordered items, its cache writes handed to ``writer``."""
    positions_of: dict[str, list[int]] = {}
    for position, item in enumerate(canon):
        positions_of.setdefault(item.sha256, []).append(position)
    tables = {name: _FeatureTable(ex.info, len(canon)) for name, ex in extractors.items() if name != LPIPS}
    counts = {name: {"computed": 0, "cached": 0} for name in extractors}
    needs: dict[int, list[str]] = {}

    for name, table in tables.items():
        with clock("cache_read"):
            hits = cache.get_many(table.info, positions_of)
        for sha, outputs in hits.items():
            table.fill(positions_of[sha], outputs)
            counts[name]["cached"] += len(positions_of[sha])
        for sha, positions in positions_of.items():
            if sha not in hits:
                needs.setdefault(positions[0], []).append(name)

    lpips_on_device = target.type == "cuda"  # float64 sums there; MPS has no float64, so it sums on the CPU
    lpips: _LpipsReducer | None = None
    if LPIPS in extractors:
        lpips = _plan_lpips(canon, extractors[LPIPS].info, lpips_groups, cache, writer, clock, needs,
                            counts[LPIPS], target if lpips_on_device else None)  # fmt: skip

    work = [
        _Work(position, canon[position].path, canon[position].sha256, tuple(sorted(needs[position])),
              canon[position].source)
        for position in sorted(needs)
    ]
    if work:
        used = sorted({name for entry in work for name in entry.needs})
        for name in used:
            extractors[name].to(target)
        dataset = _ImageDataset(work, {name: extractors[name].preprocessor for name in used})
        batch_size, workers, first = _fit_loader(dataset, batch_size, workers, auto_workers)
        loader = torch.utils.data.DataLoader(
            dataset if first is None else torch.utils.data.Subset(dataset, range(1, len(dataset))),
            batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
            pin_memory=target.type == "cuda", prefetch_factor=PREFETCH_FACTOR if workers else None,
        )
        pending = {name: _Pending() for name in used}

        def run(name: str, *, final: bool) -> None:
            taken = pending[name].take(final=final)
            if taken is None:
                return
            positions, inputs = taken
            extractor = extractors[name]
            on_device = name == LPIPS and lpips_on_device
            with clock(f"model.{name}"):
                outputs = extractor(inputs, as_tensors=True) if on_device else extractor(inputs)
            check_outputs(extractor.info, outputs, len(positions))
            counts[name]["computed"] += len(positions)
            if name == LPIPS:
                assert lpips is not None
                phi = outputs[LPIPS_OUTPUT]
                emotions = [canon[p].emotion for p in positions]
                for start, stop in _runs(emotions):
                    lpips.add(emotions[start], positions[start:stop], phi[start:stop])
                return
            rows = {
                canon[p].sha256: {out: value[row] for out, value in outputs.items()} for row, p in enumerate(positions)
            }
            for sha, row_outputs in rows.items():
                tables[name].fill(positions_of[sha], row_outputs)
            with clock("cache_write"):
                writer.submit(cache.put_many, extractor.info, rows)

        head = [] if first is None else [_collate([first])]
        total = len(loader) + len(head)
        batches: Iterator[_LoaderBatch] | None = itertools.chain(head, loader)
        try:
            for _ in progress(range(total), desc=desc, total=total, enabled=show_progress, unit="batch"):
                with clock("loader_wait"):
                    batch = next(batches)  # type: ignore[arg-type]
                if batch.errors:
                    raise batch.errors[0]
                for name, (positions, inputs) in batch.inputs.items():
                    pending[name].add(positions, inputs.to(target, non_blocking=True))
                for name in run_order(batch.inputs, extractors):
                    run(name, final=False)
        finally:
            batches = None  # on an error, stop the workers now, not when the traceback is collected
        for name in run_order(used, extractors):
            run(name, final=True)
    if lpips is not None:
        lpips.finish()
    return tables, lpips, counts, len(work)


def run_order(names: Iterable[str], extractors: Mapping[str, FeatureExtractor]) -> list[str]:
    """The order extractors run on a batch: those whose features are stored first, by name; then the others.

    The features of a stored extractor survive an interruption from the moment they are written; LPIPS
    (never stored per image, and the slowest) runs last, so stopping a run during it costs no other
    extractor's work on the images already read.
    """
    return sorted(names, key=lambda name: (not extractors[name].info.cacheable, name))


def _plan_lpips(
    canon: Sequence[ImageItem],
    info: ExtractorInfo,
    groups: int,
    cache: FeatureCache,
    writer: _CacheWriter,
    clock: _Stopwatch,
    needs: dict[int, list[str]],
    counts: dict[str, int],
    device: torch.device | None = None,
) -> _LpipsReducer:
    """Take cached per-emotion LPIPS summaries; mark every image of the other emotions as needing LPIPS."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 2:
        raise UsageError(f"lpips_groups must be an integer of at least 2 (got {groups!r})")
    by_emotion: dict[str, list[int]] = {}
    for position, item in enumerate(canon):
        by_emotion.setdefault(item.emotion, []).append(position)
    keys = {e: lpips_summary_key(info, [canon[p].sha256 for p in ps], groups) for e, ps in by_emotion.items()}
    reducer = _LpipsReducer(groups, keys, by_emotion, writer, cache, clock, device)
    for emotion, positions in by_emotion.items():
        with clock("cache_read"):
            cached = cached_summary(cache.get_summary(keys[emotion]), groups, len(positions))
        if cached is not None:
            reducer.summaries[emotion] = cached
            counts["cached"] += len(positions)
            continue
        for position in positions:
            needs.setdefault(position, []).append(LPIPS)
    return reducer


def _runs(labels: Sequence[str]) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each run of equal consecutive labels."""
    start = 0
    for index in range(1, len(labels) + 1):
        if index == len(labels) or labels[index] != labels[start]:
            yield start, index
            start = index


# --- the emogen-paper-code pair stage -------------------------------------------------------------


@dataclass(eq=False)
class PairScores:
    """Model outputs on the sampled pairs, per emotion, rows in the order of the pairs.

    ``lpips[emotion]`` is ``(P,)`` (LPIPS of each pair, images in [0, 1]);
    ``clip[emotion]`` is ``(P, 2, dim)`` (the double-rescaled CLIP embeddings of
    both images).  ``decoded`` is the number of image files read.
    """

    lpips: dict[str, np.ndarray]
    clip: dict[str, np.ndarray]
    decoded: int
    seconds: float


def score_pairs(
    files: Sequence[ImageItem],
    pairs: Mapping[str, np.ndarray],
    *,
    lpips_model: torch.nn.Module | None = None,
    clip: tuple[torch.nn.Module, Any] | None = None,
    device: str | torch.device = "cpu",
) -> PairScores:
    """Run the paper-code LPIPS and/or CLIP (``(vision model, pixel settings)``) on the sampled pairs.

    ``pairs[emotion]`` holds ``(P, 2)`` indices into ``files``.  Each sampled
    file is read once (its sha256 checked).  Two images of different sizes in
    an LPIPS pair are an :class:`InvalidInputError` naming both files: the
    released code would crash on them.
    """
    started = time.perf_counter()
    target = resolve_device(device)
    needed = sorted({int(i) for chosen in pairs.values() for i in np.asarray(chosen).ravel()})
    images = {i: read_image(files[i].path, files[i].sha256, files[i].source) for i in needed}
    lpips_values: dict[str, np.ndarray] = {}
    clip_values: dict[str, np.ndarray] = {}
    if lpips_model is not None:
        lpips_model.to(target)
        for emotion, chosen in pairs.items():
            values = []
            for first, second in np.asarray(chosen):
                a, b = images[int(first)], images[int(second)]
                if a.shape != b.shape:
                    raise InvalidInputError(
                        f"{files[int(first)].path} ({a.shape[1]}x{a.shape[0]}) and {files[int(second)].path} "
                        f"({b.shape[1]}x{b.shape[0]}) were drawn as an LPIPS pair but differ in size; the "
                        "emogen-paper-code protocol compares full-resolution images, as the released code does, "
                        "so every *jpg image must have one size: resize them, or use the eicg-v3 protocol"
                    )
                values.append(lpips_unit_distance(lpips_model, a, b))
            lpips_values[emotion] = np.asarray(values, dtype=np.float64)
    if clip is not None:
        vision_model, settings = clip
        vision_model.to(target)
        rows = double_rescaled_embeddings(vision_model, settings, [images[i] for i in needed])
        row_of = {index: row for row, index in enumerate(needed)}
        for emotion, chosen in pairs.items():
            index = np.vectorize(row_of.__getitem__, otypes=[np.int64])(np.asarray(chosen))
            clip_values[emotion] = rows[index]
    return PairScores(lpips_values, clip_values, len(needed), time.perf_counter() - started)
