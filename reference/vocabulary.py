"""The attribute vocabulary of EmoGen's attribute loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def vocabulary_from_rows(rows: Sequence[Any], split: str | None = "train") -> list[str]:
    """The attribute vocabulary of the attribute loss: the sorted distinct attributes of ``split``'s rows."""
    return sorted({row.attribute for row in rows if split is None or row.split == split})
