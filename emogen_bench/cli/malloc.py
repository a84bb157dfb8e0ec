"""glibc malloc tuning for the ``emogen-bench`` command's own process (issue 16).

glibc serves every allocation above its mmap threshold (at most 32 MiB, dynamically) with a fresh ``mmap`` and
returns it with ``munmap`` on free, and it gives the top of the heap back to the kernel whenever more than the trim
threshold is free there.  PyTorch's CPU kernels allocate and free tens of megabytes of temporaries per forward (a
ResNet-50 activation at batch 16 is 51 MB, a CLIP ViT-L/14 attention map 67 MB), so each call paid for new zeroed
pages: sys time and page faults grew with the number of forwards.  With mmap off and a high trim threshold the
freed memory stays in the heap and the next forward reuses it (measured in issue 16: sys time 32 s -> 4-16 s,
30-60x fewer page faults, for 0.4-1.2 GB more peak RSS).  No number changes: the same kernels run on the same
values, only the addresses differ.

Only the command applies it (``emogen_bench.cli.main`` run as a program): importing the library or calling its
Python API never changes the host process's allocator.  ``EMOGEN_BENCH_MALLOC_TUNING=0`` switches it off; where the
C library is not glibc (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

#: The environment variable that switches the tuning off (``0``, ``false``, ``no``, ``off``).
ENVIRONMENT_VARIABLE = "EMOGEN_BENCH_MALLOC_TUNING"
_OFF_WORDS = frozenset({"0", "false", "no", "off"})

#: ``mallopt`` parameters, from glibc's ``<malloc.h>``.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

#: Free memory kept at the top of the heap before glibc returns it: above the working set of one model batch
#: (a few hundred MB for CLIP ViT-L/14 at batch 16), so the memory of one forward is there for the next.
TRIM_THRESHOLD_BYTES = 1 << 30

#: ``(parameter, value)`` in the order they are set: mmap off first, so no large block is mmapped in between.
#: ``M_TOP_PAD`` (extra memory per heap growth) is left at glibc's default: 64 MiB changed neither the system
#: time nor the page faults of an evaluation (3.91 s / 695 k faults against 3.99 s / 672 k), since the heap
#: grows to its working size in the first forwards either way.
SETTINGS: tuple[tuple[int, int], ...] = (
    (M_MMAP_MAX, 0),
    (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
)


def tuning_enabled(environ: Mapping[str, str]) -> bool:
    """False when ``EMOGEN_BENCH_MALLOC_TUNING`` says off; any other value (or none) leaves it on."""
    return environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() not in _OFF_WORDS


def glibc_version() -> str | None:
    """The running glibc's version (``"2.35"``), or None where the C library is another one."""
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or a name this libc does not know
        return None
    if not value or not value.startswith("glibc "):
        return None
    return value.split(" ", 1)[1]


def tune_malloc(environ: Mapping[str, str] | None = None) -> bool:
    """Apply :data:`SETTINGS` with glibc's ``mallopt``; True when every one was accepted.

    Silently does nothing (False) when switched off, on another C library, or when ``mallopt`` is missing or
    refuses a setting: the tuning only saves time, so nothing about it may stop the command.
    """
    if not tuning_enabled(os.environ if environ is None else environ) or glibc_version() is None:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all([mallopt(parameter, value) == 1 for parameter, value in SETTINGS])
