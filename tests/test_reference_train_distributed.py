"""Stages 1 and 2 under a real ``torchrun`` (2 CPU processes, gloo through accelerate): every rank ends well.

One process writes the run folder, the log and the checkpoints; every rank
returns the same final checkpoint and exits 0; the checkpoint records the
process count, the effective batch size and the learning rate used (data
parallelism changes results); a run resumes with another process count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_reference_train import write_emoset
from torchrun_launch import TORCHRUN, launch

WORKER = Path(__file__).parent / "stage2_worker.py"


def _launch(processes: int, *args: str, worker: Path = WORKER) -> list[dict]:
    return launch(processes, worker, *args)


@pytest.mark.slow  # torchrun with two processes: CI runs it (.ci/run), `pytest -m slow` here
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


@pytest.mark.slow  # torchrun with two processes: CI runs it (.ci/run), `pytest -m slow` here
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun (part of torch) is not on PATH")
def test_stage1_on_two_processes_writes_once_and_resumes_on_one(tmp_path: Path) -> None:
    import torch
    from fake_emoset import make_fake_emoset

    from emogen_bench.data import prepare_emoset

    make_fake_emoset(tmp_path / "emoset", per_split={"train": 3, "val": 1, "test": 1}, edge_cases=False, image_size=32)
    prepare_emoset(tmp_path / "emoset", tmp_path / "index", show_progress=False)
    worker = Path(__file__).parent / "stage1_worker.py"
    args = [str(tmp_path / "index"), str(tmp_path / "emoset"), str(tmp_path / "run")]
    ranks = _launch(2, *args, "2", worker=worker)
    assert sorted(r["rank"] for r in ranks) == [0, 1] and len({json.dumps(r | {"rank": 0}) for r in ranks}) == 1
    last = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert last["processes"] == 2 and last["effective_batch_size"] == 8 and last["epoch"] == 2
    assert [json.loads(line)["epoch"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()] == [1, 2]
    assert all(entry["steps"] == 3 for entry in last["history"])  # 24 images, 2 processes x 4: 3 steps each
    resumed = _launch(1, *args, "3", "--resume", worker=worker)
    assert resumed[0]["epochs"] == 3
    last = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert last["processes"] == 1 and [entry["epoch"] for entry in last["history"]] == [1, 2, 3]
