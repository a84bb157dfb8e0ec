"""Run a test worker script under a real ``torchrun`` and collect what each rank reported.

Ranks share one stdout, where their lines can interleave, so each worker writes its result to its own
file (:func:`report`) in the folder :func:`launch` names in ``TORCHRUN_TEST_RESULTS``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
HERE = Path(__file__).parent
RESULTS = "TORCHRUN_TEST_RESULTS"


def report(document: dict[str, Any]) -> None:
    """Write this rank's result (called by a worker script)."""
    rank = int(os.environ.get("RANK", "0"))
    Path(os.environ[RESULTS], f"rank-{rank}.json").write_text(json.dumps({"rank": rank, **document}))


def launch(processes: int, worker: Path, *args: str) -> list[dict[str, Any]]:
    """``torchrun --standalone --nproc_per_node PROCESSES WORKER ARGS``; every rank's result, by rank."""
    with tempfile.TemporaryDirectory() as results:
        environment = {**os.environ, "OMP_NUM_THREADS": "1", RESULTS: results,
                       "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}  # fmt: skip
        command = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(processes), str(worker), *args]
        completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, check=False)
        assert completed.returncode == 0, completed.stderr[-3000:]
        return [json.loads(path.read_text()) for path in sorted(Path(results).glob("rank-*.json"))]
