"""Progress bars for long work: one switch turns them all off (``--quiet``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(
    items: Iterable[T], *, desc: str, total: int | None = None, enabled: bool = True, unit: str = "it"
) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar on stderr unless ``enabled`` is false."""
    yield from tqdm(items, desc=desc, total=total, disable=not enabled, unit=unit, leave=False, dynamic_ncols=True)
