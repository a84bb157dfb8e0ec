"""A plan's ``[resources]``: what each stage asks of Slurm, and how many processes it runs on.

Fast checks of the executors' bookkeeping (no stage runs here); the multi-process runs themselves are
in ``test_tables_executors.py`` (slow).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from emogen_bench.errors import UsageError
from leaderboard.regenerate import load_plan, plan_stages, run_plan
from leaderboard.regenerate.parallel import cpu_slots
from leaderboard.regenerate.run import rank_command, run_rank
from leaderboard.regenerate.stages import stage_processes, stage_resources

PLANS = Path(__file__).resolve().parents[1] / "leaderboard" / "plans"
RESOURCES = """
[resources]
partition = "gpu"
account = "emotion"
time = "08:00:00"
cpus = 8

[resources.gpus]
generate = 2
evaluate = 4
"""


def _plan(tmp_path: Path, name: str, extra: str, row_line: tuple[str, str] | None = None) -> Path:
    text = (PLANS / name).read_text(encoding="utf-8")
    text = text.replace('published = "../entries"', f'published = "{PLANS.parent / "entries"}"')
    if row_line is not None:
        text = text.replace(f'id = "{row_line[0]}"\n', f'id = "{row_line[0]}"\n{row_line[1]}\n')
    path = tmp_path / name
    path.write_text(text + "\n" + extra, encoding="utf-8")
    return path


def test_rows_override_the_plan_and_gpus_become_processes_for_the_stages_that_spread(tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, "main.toml", RESOURCES,
                           ("dreambooth", 'resources = { time = "24:00:00", gpus = { train = 8 } }')))  # fmt: skip
    stages = {stage.key: stage for stage in plan_stages(plan, plan.rows, tmp_path / "w")}
    dreambooth = plan.row("dreambooth")
    train = stage_resources(plan, dreambooth, stages["dreambooth/train"])
    assert train == {"partition": "gpu", "account": "emotion", "time": "24:00:00", "cpus": 8, "gpus": 8}
    assert stage_resources(plan, plan.row("emogen"), stages["emogen/train"])["time"] == "08:00:00"
    counts = {key: stage_processes(plan, stage) for key, stage in stages.items()}
    assert counts["dreambooth/train"] == 8 and counts["emogen/train"] == 1  # the full-size default: one GPU
    assert counts["emogen/generate"] == 2 and counts["emogen/evaluate"] == 4
    assert counts["emogen/entry"] == 1  # writing an entry runs in one process, whatever it asks for


def test_the_slurm_dry_run_asks_for_the_gpus_and_starts_that_many_processes(tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, "main.toml", RESOURCES))
    summary = run_plan(plan, tmp_path / "w", executor="slurm", dry_run=True, log=lambda line: None)
    jobs = {}
    for line in summary.markdown.splitlines():
        argv = shlex.split(line)
        name = next(a for a in argv if a.startswith("--job-name=")).split(":", 1)[1]
        jobs[name] = argv
    generate, evaluate = jobs["emogen/generate"], jobs["emogen/evaluate"]
    assert "--gpus=2" in generate and "--partition=gpu" in generate and "--account=emotion" in generate
    assert "--cpus-per-task=8" in generate and "--time=08:00:00" in generate
    wrapped = shlex.split(next(a for a in generate if a.startswith("--wrap=")).removeprefix("--wrap="))
    assert wrapped[wrapped.index("--stage") + 1] == "emogen/generate"
    assert wrapped[wrapped.index("--processes") + 1] == "2"
    assert "--gpus=4" in evaluate and any(a.startswith("--dependency=afterok:<emogen/generate>") for a in evaluate)
    entry = shlex.split(next(a for a in jobs["emogen/entry"] if a.startswith("--wrap=")).removeprefix("--wrap="))
    assert "--processes" not in entry
    assert not (tmp_path / "w").exists()  # a dry run writes nothing


def test_a_stage_asking_for_more_gpus_than_slots_is_refused_before_anything_runs(tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, "smoke.toml", "[resources.gpus]\ngenerate = 3\n"))
    with pytest.raises(UsageError, match=r"stable-diffusion/generate \(3\).*slots \(2\)"):
        run_plan(plan, tmp_path / "w", rows=["stable-diffusion"], slots=cpu_slots(2), log=lambda line: None)
    assert not (tmp_path / "w" / "stages").exists()


def test_the_ranks_are_started_by_torchrun_and_refuse_to_run_without_it(tmp_path: Path) -> None:
    plan = load_plan(PLANS / "smoke.toml")
    stage = next(s for s in plan_stages(plan, plan.rows, tmp_path) if s.key == "stable-diffusion/generate")
    command = rank_command(plan, tmp_path, stage, 2, resume=False)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert command[-2:] == ["--rank-attempt", "fresh"] and "--processes" not in command
    with pytest.raises(UsageError, match="--rank-attempt is for the processes"):
        run_rank(plan, tmp_path, stage.key, resume=False)
