"""Start-up time of the ``emogen-bench`` command (issue 13: ``--help`` and ``--version`` under 1 s).

Each round starts a new process, as a user's shell does: the time is the interpreter's start, the imports of
building the parser (no torch: the commands that need it import it when they run) and argparse.  Run:
``pytest benchmarks/test_bench_startup.py -m benchmark --benchmark-enable``.  No test asserts a time; the
asserts check that each run did what it claims to measure, and ``extra_info`` records which heavy modules the
start-up imported.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROUNDS = 5
#: Modules whose import dominates a start-up when one of them sneaks in.
HEAVY_MODULES = ("torch", "torchvision", "transformers", "diffusers", "scipy", "numpy", "PIL")


def _command() -> list[str]:
    """The console script beside this interpreter (what ``pip install`` puts on PATH), else ``python -m``."""
    script = Path(sys.executable).with_name("emogen-bench")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "emogen_bench"]


def _heavy_imports() -> list[str]:
    probe = (
        "import sys\nfrom emogen_bench.cli import build_parser\nbuild_parser()\n"
        f"print(' '.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.mark.benchmark(group="startup")
@pytest.mark.parametrize("option", ["--help", "--version"])
def test_startup(benchmark, option: str) -> None:  # noqa: ANN001 - pytest-benchmark fixture
    """Wall time of ``emogen-bench --help`` / ``--version`` in a new process."""
    benchmark.extra_info.update(command=" ".join([*_command(), option]), heavy_imports=_heavy_imports())
    result = benchmark.pedantic(
        lambda: subprocess.run([*_command(), option], capture_output=True, text=True, check=False),
        rounds=ROUNDS, iterations=1, warmup_rounds=1,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert ("reference" in result.stdout and "leaderboard" in result.stdout) if option == "--help" else (
        result.stdout.startswith("emogen-bench ")
    )
