"""Stage 2 under a real ``torchrun`` (2 CPU processes, gloo through accelerate): every rank ends well.

One process writes the run folder, the log and the checkpoints; every rank
returns the same final checkpoint and exits 0; the checkpoint records the
process count, the effective batch size and the learning rate used (data
parallelism changes results); a run resumes with another process count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_reference_train import write_emoset

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
WORKER = Path(__file__).parent / "stage2_worker.py"


def _launch(processes: int, *args: str) -> list[dict]:
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(processes), str(WORKER), *args]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun (part of torch) is not on PATH")
def test_two_processes_train_checkpoint_and_resume_with_one(tmp_path: Path) -> None:
    write_emoset(tmp_path / "emoset")
    out = tmp_path / "run"
    ranks = _launch(2, str(tmp_path / "emoset"), str(out), "3")
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    assert {r["checkpoint"] for r in ranks} == {str(out / "checkpoint-3")} and {r["steps"] for r in ranks} == {3}
    config = json.loads((out / "checkpoint-3" / "config.json").read_text(encoding="utf-8"))
    assert config["processes"] == 2 and config["effective_batch_size"] == 2 * config["stage2"]["batch_size"]
    assert config["learning_rate_used"] == config["stage2"]["learning_rate"]
    assert [json.loads(line)["step"] for line in (out / "loss.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2", "checkpoint-3", "loss.jsonl"]

    resumed = _launch(1, str(tmp_path / "emoset"), str(out), "5", "--resume")
    assert resumed == [{**resumed[0], "rank": 0, "checkpoint": str(out / "checkpoint-5"), "steps": 5}]
    config = json.loads((out / "checkpoint-5" / "config.json").read_text(encoding="utf-8"))
    assert config["processes"] == 1 and config["step"] == 5
    assert [json.loads(line)["step"] for line in (out / "loss.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
