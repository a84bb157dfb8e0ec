"""EmoSet and the EICG subset index (PROTOCOL.md section 2).

``prepare_emoset`` reads a user's EmoSet folder and writes the index once;
everything downstream reads it with ``load_index`` and cites it by
``index_digest``.  ``balanced_order`` gives the protocol's oversampled training order.
"""

from __future__ import annotations

from emogen_bench.data.emoset import (
    DROP_REASONS,
    PROBLEM_CODES,
    Attribute,
    EmoSetScan,
    Problem,
    choose_attribute,
    normalise_attribute,
    scan_emoset,
)
from emogen_bench.data.index import (
    INDEX_COLUMNS,
    INDEX_FILE,
    INDEX_FORMAT,
    SUMMARY_FILE,
    SUMMARY_MD_FILE,
    IndexRow,
    balanced_order,
    index_csv_bytes,
    index_digest,
    load_index,
    read_summary,
)
from emogen_bench.data.prepare import EmoSetProblemsError, PrepareResult, prepare_emoset
from emogen_bench.data.summary import render_summary

__all__ = [
    "DROP_REASONS",
    "INDEX_COLUMNS",
    "INDEX_FILE",
    "INDEX_FORMAT",
    "PROBLEM_CODES",
    "SUMMARY_FILE",
    "SUMMARY_MD_FILE",
    "Attribute",
    "EmoSetProblemsError",
    "EmoSetScan",
    "IndexRow",
    "PrepareResult",
    "Problem",
    "balanced_order",
    "choose_attribute",
    "index_csv_bytes",
    "index_digest",
    "load_index",
    "normalise_attribute",
    "prepare_emoset",
    "read_summary",
    "render_summary",
    "scan_emoset",
]
