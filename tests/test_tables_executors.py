"""The executors of ``tables regenerate`` give the tables of the in-process loop.

- Slots (``--slots 2`` on this CPU machine): independent stages of the smoke plan run at once, each its own
  ``tables run-stage`` process.
- Stages whose ``[resources]`` ask for two GPUs run on two processes (torchrun, gloo): generation and
  evaluation give the one-process folder and numbers bit for bit; training records the process count.
- Slurm, on a real one-node Slurm (``.ci/slurm-up start``): every stage its own job, chained with
  ``afterok``; a second run submits nothing.

Slow (one process per stage, about 50): ``pytest -m slow``; CI runs them after starting Slurm, with
``EMOGEN_BENCH_REQUIRE_SLURM=1`` so that a Slurm that did not come up fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from leaderboard.regenerate import RunSummary, load_plan, run_plan
from leaderboard.regenerate.parallel import cpu_slots

pytestmark = pytest.mark.slow
PLAN = Path(__file__).resolve().parents[1] / "leaderboard" / "plans" / "smoke.toml"


def _slurm_ready() -> str | None:
    """None when sbatch works here, else why not."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "Slurm is not installed (run .ci/slurm-up start)"
    states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False)
    if states.returncode != 0 or not any(s.strip() in ("idle", "mix", "alloc") for s in states.stdout.splitlines()):
        return f"no Slurm node is up ({states.stderr.strip() or states.stdout.strip()}); run .ci/slurm-up start"
    return None


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> RunSummary:
    """The smoke plan run by the in-process loop (one slot), the reference for every executor."""
    return run_plan(load_plan(PLAN), tmp_path_factory.mktemp("in-process"), show_progress=False, slots=["cpu"],
                    log=lambda line: None)  # fmt: skip


def _same_tables(local: RunSummary, workdir: Path) -> None:
    for suffix in ("md", "csv"):
        table = (workdir / "tables" / local.outputs[suffix].name).read_text(encoding="utf-8")
        assert table == local.outputs[suffix].read_text(encoding="utf-8"), suffix


def test_two_slots_run_stages_side_by_side_and_give_the_same_tables(in_process: RunSummary, tmp_path: Path) -> None:
    lines: list[str] = []
    summary = run_plan(load_plan(PLAN), tmp_path / "w", show_progress=False, slots=cpu_slots(2), log=lines.append)
    assert sorted(summary.ran) == sorted(in_process.ran)
    _same_tables(in_process, tmp_path / "w")
    starts = [line for line in lines if line.startswith(("start", "done"))]
    running, most = 0, 0
    for line in starts:  # at some moment two stages ran at once
        running += 1 if line.startswith("start") else -1
        most = max(most, running)
    assert most == 2
    again = run_plan(load_plan(PLAN), tmp_path / "w", show_progress=False, slots=cpu_slots(2), log=lines.append)
    assert again.ran == ()


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = _slurm_ready()
    if reason is not None:
        if os.environ.get("EMOGEN_BENCH_REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def test_the_smoke_plan_on_slurm_gives_the_local_tables(slurm: None, in_process: RunSummary, tmp_path: Path) -> None:
    local = in_process
    command = [sys.executable, "-m", "emogen_bench", "tables", "regenerate", str(PLAN), "--workdir",
               str(tmp_path / "slurm"), "--executor", "slurm", "--quiet"]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=3000, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stderr.count("submit ") == len(local.ran)  # one job per stage
    _same_tables(local, tmp_path / "slurm")
    logs = sorted((tmp_path / "slurm" / "logs").glob("*.log"))
    assert len(logs) == len(local.ran)
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0 and "submit " not in again.stderr and "skip " in again.stderr
    assert again.stdout == completed.stdout


def _variant(tmp_path: Path, extra_rows: dict[str, str], plan_wide: str) -> Path:
    """The smoke plan with ``[resources]`` added: ``extra_rows`` maps a row id to its ``resources`` line."""
    text = PLAN.read_text(encoding="utf-8")
    text = text.replace('published = "../entries"', f'published = "{PLAN.parent.parent / "entries"}"')
    for row, line in extra_rows.items():
        text = text.replace(f'id = "{row}"\n', f'id = "{row}"\n{line}\n')
    path = tmp_path / "plan.toml"
    path.write_text(text + "\n" + plan_wide + "\n", encoding="utf-8")
    return path


def test_stages_asking_for_two_gpus_run_on_two_processes_and_match_one(tmp_path: Path) -> None:
    rows = "stable-diffusion,textual-inversion"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's ranks run one thread each: so does the reference
    one = subprocess.run([sys.executable, "-m", "emogen_bench", "tables", "regenerate", str(PLAN), "--workdir",
                          str(tmp_path / "one"), "--rows", rows, "--quiet"], capture_output=True, text=True,
                         env=environment, timeout=1200, check=False)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    plan = _variant(tmp_path, {"textual-inversion": "resources = { gpus = { train = 2 } }"},
                    "[resources.gpus]\ngenerate = 2\nevaluate = 2")  # fmt: skip
    two = subprocess.run([sys.executable, "-m", "emogen_bench", "tables", "regenerate", str(plan), "--workdir",
                          str(tmp_path / "two"), "--rows", rows, "--slots", "2", "--quiet"], capture_output=True,
                         text=True, env=environment, timeout=1200, check=False)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert "start  stable-diffusion/generate on the CPU (2 processes)" in two.stderr
    assert "start  textual-inversion/train on the CPU (2 processes)" in two.stderr
    marker = json.loads((tmp_path / "two" / "stages" / "stable-diffusion" / "evaluate.json").read_text())
    assert marker["processes"] == 2
    for folder in ("submission", "submission-jpg"):  # sharded generation: byte for byte the one-process folder
        first, second = (tmp_path / side / "rows" / "stable-diffusion" / folder for side in ("one", "two"))
        assert _files(first) == _files(second) and len(_files(first)) == 17
    tables = [(tmp_path / side / "tables" / "smoke-smoke.csv").read_text().splitlines() for side in ("one", "two")]
    sd = [[line for line in table if ",stable-diffusion," in line] for table in tables]
    assert sd[0] == sd[1] and len(sd[0]) == 5  # data-parallel evaluation: the one-process numbers, bit for bit
    ti = json.loads((tmp_path / "two" / "rows" / "textual-inversion" / "train" / "config.json").read_text())
    assert ti["processes"] == 2  # two processes change the effective batch: recorded, and the row differs
    assert [line for line in tables[1] if ",textual-inversion," in line] != [
        line for line in tables[0] if ",textual-inversion," in line]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
