"""emogen-bench: the benchmark for Emotional Image Content Generation (EICG).

Public API (stable; ``reference``, ``baselines`` and ``leaderboard`` use only this):
the task constants in :mod:`emogen_bench.task`, submission validation, the EmoSet
data index, and the pinned-weights registry.
"""

from __future__ import annotations

__version__ = "0.1.0"
