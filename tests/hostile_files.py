"""Hostile files the tests make for real: a FIFO that feeds whoever opens it, instead of blocking the test."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def fifo(path: Path, feed: bytes) -> Iterator[Path]:
    """A real FIFO at ``path``; should anything open it for reading, it gets ``feed`` and end of file.

    The code under test must never open it: the feeder only makes the code this replaces, which did,
    go on with what it read instead of waiting forever.
    """
    os.mkfifo(path)
    stop = threading.Event()

    def feeder() -> None:
        while not stop.is_set():
            try:
                handle = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # fails (ENXIO) while nobody reads
            except OSError:
                stop.wait(0.02)
                continue
            try:
                os.write(handle, feed)
            finally:
                os.close(handle)

    thread = threading.Thread(target=feeder, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(5)
