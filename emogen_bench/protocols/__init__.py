"""The evaluation protocols: one name per way of computing the numbers, never mixed in one column.

``eicg-v3`` (:mod:`emogen_bench.protocols.eicg`) is the benchmark's own
definition (CHANGELOG.md).  ``emogen-paper-code``
(:mod:`emogen_bench.protocols.paper_code`) reproduces what the EmoGen authors'
released scripts compute, quirks included (PROTOCOL.md section 3), so a new
method can be placed next to the published numbers; each quirk it reproduces
is listed on it, with why it matters, and the README prints this list.
Results, reference statistics and leaderboard entries all record their
protocol and its version; nothing compares numbers across protocols.  A
protocol is an object (:class:`~emogen_bench.protocols.base.Protocol`) that
says which files each metric reads, which extractors the pass needs and how
the metrics come out of the features; a new one is a new module here.
"""

from __future__ import annotations

from emogen_bench.errors import UsageError
from emogen_bench.protocols.base import FileFilter, MetricSpec, Protocol, Quirk, Selection
from emogen_bench.protocols.eicg import EICG
from emogen_bench.protocols.paper_code import EMOGEN_PAPER_CODE, PAPER_CODE

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (EICG, EMOGEN_PAPER_CODE)}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown name is a usage error listing the known ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UsageError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None


__all__ = [
    "EICG",
    "EMOGEN_PAPER_CODE",
    "PAPER_CODE",
    "PROTOCOLS",
    "FileFilter",
    "MetricSpec",
    "Protocol",
    "Quirk",
    "Selection",
    "get_protocol",
]
