"""Where the benchmark keeps its files on a user's machine."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

HOME_ENV = "EMOGEN_BENCH_HOME"
OFFLINE_ENV = "EMOGEN_BENCH_OFFLINE"


def bench_home() -> Path:
    """The benchmark's cache folder: ``$EMOGEN_BENCH_HOME``, else the user's cache dir."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("emogen-bench", appauthor=False))


def weights_dir() -> Path:
    """Downloaded and verified weight files, one sub-folder per artifact id."""
    return bench_home() / "weights"


def offline_from_env() -> bool:
    """True when ``$EMOGEN_BENCH_OFFLINE`` asks never to touch the network."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
