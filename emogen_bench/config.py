"""Evaluation settings: the one place their defaults live.

``emogen-bench evaluate`` builds its options from :class:`EvalConfig`'s field
defaults, and :func:`emogen_bench.evaluate` takes the same object, so the CLI and
the Python API can never disagree.  Settings here change how the work is done
(device, batch size, cache), never what a number means: those are protocol
constants in :mod:`emogen_bench.task`.  Two exceptions are recorded with every
result: the seed (KID's subsets, the bootstrap, the paper-code pair sampling)
and the ``protocol`` (:mod:`emogen_bench.protocols`), which names the
definitions the numbers follow; ``pairs`` belongs to the ``emogen-paper-code``
protocol (random pairs per emotion for its LPIPS and Sem-D) and is ignored by
``eicg-v3``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError
from emogen_bench.protocols import get_protocol
from emogen_bench.task import DEFAULT_SEED, METRIC_KEYS, PROTOCOL

OUTPUT_FORMATS = ("table", "json", "markdown", "csv")


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate a submission; every field has the default the CLI shows.

    ``compile=True`` runs every model through ``torch.compile`` (inductor): faster
    forwards after a compile of several seconds per model, features within the
    documented tolerance of eager ones but not bitwise equal, so it is recorded in
    the results and in the feature-cache keys (docs/benchmarks.md).

    ``metrics=None`` means every metric of ``protocol``; a metric the protocol
    does not define is a usage error.
    """

    metrics: tuple[str, ...] | None = None
    per_emotion: int | None = None
    reference_stats: Path | None = None
    device: str = "auto"
    batch_size: int = 32
    num_workers: int | str = "auto"
    seed: int = DEFAULT_SEED
    cache: bool = True
    weights_override: Path | None = None
    show_progress: bool = True
    protocol: str = PROTOCOL
    pairs: int = 10
    compile: bool = False

    def __post_init__(self) -> None:
        protocol = get_protocol(self.protocol)
        metrics = protocol.metrics if self.metrics is None else tuple(self.metrics)
        unknown = [m for m in metrics if m not in METRIC_KEYS]
        if unknown or not metrics:
            raise UsageError(
                f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRIC_KEYS)}"
            )
        foreign = [m for m in metrics if m not in protocol.metrics]
        if foreign:
            raise UsageError(
                f"metric(s) {', '.join(foreign)} are not defined under protocol {protocol.name}; "
                f"its metrics are {', '.join(protocol.metrics)}"
            )
        check_seed(self.seed)
        check_device(self.device)
        if isinstance(self.pairs, bool) or not isinstance(self.pairs, int) or self.pairs < 1:
            raise UsageError(f"pairs per emotion must be an integer of at least 1 (got {self.pairs!r})")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1 (got {self.batch_size})")
        if not isinstance(self.compile, bool):
            raise UsageError(f"compile must be true or false (got {self.compile!r})")
        check_num_workers(self.num_workers)
        object.__setattr__(self, "metrics", tuple(m for m in METRIC_KEYS if m in metrics))

    def to_dict(self, device_type: str | None = None) -> dict[str, Any]:
        """JSON-ready settings, recorded in every result.

        ``num_workers`` is recorded as the number of workers used: ``auto`` resolved for ``device_type``
        (``cpu``, ``cuda``, ...; by default the type ``device`` resolves to here).
        """
        document = asdict(self)
        document["num_workers"] = resolve_num_workers(self.num_workers, device_type or _device_type(self.device))
        document["metrics"] = list(self.metrics)
        for key in ("reference_stats", "weights_override"):
            document[key] = None if document[key] is None else str(document[key])
        document.pop("show_progress")
        return document


#: Devices a command accepts: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")
#: Seeds are non-negative and fit 63 bits (numpy, torch and the per-image seed derivation all take them).
MAX_SEED = 2**63 - 1


def check_device(device: str) -> str:
    """``device`` if a command can compute on it; a usage error for ``foo`` or ``meta`` (which holds no data)."""
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise UsageError(f"device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


#: Data-loader workers on the CPU when ``num_workers`` is ``auto``: the models share the cores with them.
CPU_WORKERS = 2
#: The most workers ``auto`` starts on an accelerator (each holds a copy of the preprocessing and its batches).
MAX_AUTO_WORKERS = 16


def auto_num_workers(device_type: str, cores: int) -> int:
    """Workers for ``num_workers="auto"``: on CUDA every available core but one for the main process (1 to
    :data:`MAX_AUTO_WORKERS`), since decoding and resizing feed the GPU; elsewhere :data:`CPU_WORKERS`, or none
    on a machine of at most that many cores, where torch's threads already use every core and workers only take
    time from the models (issue 16, 2 cores, 64 images: CLIP ran 77 s in the pass with 2 workers, 71 s alone)."""
    if device_type != "cuda":
        return 0 if cores <= CPU_WORKERS else CPU_WORKERS
    return max(1, min(MAX_AUTO_WORKERS, cores - 1))


def available_cores() -> int:
    """The cores this process may run on (its affinity mask), or ``os.cpu_count()`` where there is no mask."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_num_workers(value: int | str) -> int | str:
    """``value`` if it is ``"auto"`` or an integer of at least 0; a usage error otherwise."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise UsageError(f"number of data-loader workers must be auto or an integer of at least 0 (got {value!r})")


def parse_num_workers(text: str) -> int | str:
    """The ``--num-workers`` argument: ``auto`` or a whole number (``argparse`` type)."""
    value = text.strip()
    if value == "auto":
        return value
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected auto or a whole number of at least 0, got {text!r}")
    return int(value)


def cores_per_process(environ: Mapping[str, str] | None = None) -> int:
    """The cores ``auto`` may count on for this process: its affinity mask, shared with the other processes a
    launcher started on this node (``LOCAL_WORLD_SIZE``, set by torchrun and accelerate) when the mask is the whole
    machine; a launcher that bound each process to its own cores has already divided them."""
    cores = available_cores()
    local = (os.environ if environ is None else environ).get("LOCAL_WORLD_SIZE", "1")
    processes = int(local) if local.isdigit() and int(local) > 0 else 1
    return max(1, cores // processes) if cores == (os.cpu_count() or cores) else cores


def resolve_num_workers(value: int | str, device_type: str) -> int:
    """The number of workers ``value`` (``auto`` or a number) means on a device of type ``device_type``; under
    torchrun, ``auto`` counts this rank's share of the node's cores (:func:`cores_per_process`), so eight ranks
    on a 16-core node start one worker each, not fifteen."""
    check_num_workers(value)
    return auto_num_workers(device_type, cores_per_process()) if value == "auto" else int(value)


def _device_type(device: str) -> str:
    """The type of device ``device`` resolves to here (``auto``: ``cuda`` when torch sees one, else ``cpu``)."""
    if device != "auto":
        return device.split(":", 1)[0]
    import torch  # here, not at the top: the command line reads this module before it needs torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_seed(seed: int) -> int:
    """``seed`` if it is an integer in [0, 2**63 - 1]; a usage error otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed {seed!r}: expected an integer from 0 to {MAX_SEED}")
    return seed


def parse_metrics(text: str, protocol: str = PROTOCOL) -> tuple[str, ...]:
    """``"fid,lpips"`` -> ``("fid", "lpips")``; ``"all"`` -> every metric of ``protocol``."""
    if text.strip() == "all":
        return get_protocol(protocol).metrics
    return tuple(part.strip() for part in text.split(",") if part.strip())
