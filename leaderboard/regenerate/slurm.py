"""``tables regenerate --executor slurm``: each stage of a plan is one Slurm job, dependencies as ``afterok``.

Every stage that is not complete becomes ``sbatch --wrap "python -m emogen_bench tables run-stage PLAN
--workdir W --stage KEY"`` (:func:`leaderboard.regenerate.run_one_stage`), depending with ``afterok`` on
the jobs of the stages it reads from (``--kill-on-invalid-dep=yes``: a failure cancels what depends on
it).  Resources come from the plan's ``[resources]`` (partition, account, time, mem, cpus, gpus per
stage) with a row's ``resources`` over them; logs go to ``W/logs/<row>-<stage>.log``.  This process
waits for the jobs, then writes the tables from the markers the jobs left, exactly as the local
executor does.  A re-run after a failure submits only the stages that are still incomplete.
``--dry-run`` prints the ``sbatch`` commands and submits nothing.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from emogen_bench.errors import BenchError
from leaderboard.regenerate.checks import prepare_workdir
from leaderboard.regenerate.comparison import write_tables
from leaderboard.regenerate.plan import PLAN_OWNER, Plan, PlanRow
from leaderboard.regenerate.run import RunSummary, stage_process_command
from leaderboard.regenerate.stages import Stage, plan_statuses, read_marker, stage_processes, stage_resources

#: Seconds between two looks at the queue.
POLL_SECONDS = 2.0


class SlurmError(BenchError):
    """Slurm is not reachable, refused a job, or a job failed."""


def sbatch_command(
    plan: Plan, workdir: Path, stage: Stage, resources: Mapping[str, Any], dependencies: Sequence[str]
) -> list[str]:
    """The ``sbatch`` command line of one stage's job."""
    log = workdir / "logs" / f"{stage.owner}-{stage.name}.log"
    command = [
        "sbatch", "--parsable", f"--job-name=emogen-bench:{stage.key}", f"--output={log}",
        f"--chdir={Path.cwd()}", "--kill-on-invalid-dep=yes",
    ]  # fmt: skip
    for key, option in (("partition", "--partition"), ("account", "--account"), ("time", "--time"), ("mem", "--mem")):
        if resources.get(key):
            command.append(f"{option}={resources[key]}")
    if resources.get("cpus"):
        command.append(f"--cpus-per-task={resources['cpus']}")
    if resources.get("gpus"):
        command.append(f"--gpus={resources['gpus']}")
    if dependencies:
        command.append("--dependency=afterok:" + ":".join(dependencies))
    processes = stage_processes(plan, stage, resources)
    command.append("--wrap=" + shlex.join(stage_process_command(plan, workdir, stage, processes)))
    return command


def _submit(command: Sequence[str]) -> str:
    completed = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SlurmError(f"sbatch refused the job ({completed.stderr.strip() or completed.stdout.strip()}): "
                         f"{shlex.join(command)}")  # fmt: skip
    return completed.stdout.strip().split(";")[0]


def _queued(job_ids: Sequence[str]) -> set[str]:
    completed = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], capture_output=True, text=True,
                               check=False)  # fmt: skip
    if completed.returncode != 0:  # squeue answers an error once every listed job has left the queue
        return set()
    return {line.strip() for line in completed.stdout.splitlines() if line.strip()}


def run_on_slurm(
    plan: Plan,
    workdir: Path,
    rows: Sequence[PlanRow],
    *,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
    poll: float = POLL_SECONDS,
) -> RunSummary:
    """Submit every incomplete stage of ``rows`` as a Slurm job, wait for them, write the tables."""
    if not dry_run and shutil.which("sbatch") is None:
        raise SlurmError("--executor slurm needs Slurm's sbatch and squeue on PATH (run this on a login node)")
    if not dry_run:
        prepare_workdir(plan, workdir, rows)
        (workdir / "logs").mkdir(exist_ok=True)
    statuses = plan_statuses(plan, rows, workdir)
    by_id = {row.id: row for row in rows}
    jobs: dict[str, str] = {}
    lines = []
    for status in statuses:
        stage = status.stage
        if status.action == "skip":
            log(f"skip   {stage.key} (complete)")
            continue
        dependencies = [jobs[f"{o}/{n}"] for o, n in stage.upstream if f"{o}/{n}" in jobs]
        row = by_id.get(stage.owner) if stage.owner != PLAN_OWNER else None
        command = sbatch_command(plan, workdir, stage, stage_resources(plan, row, stage), dependencies)
        if dry_run:
            jobs[stage.key] = f"<{stage.key}>"
            lines.append(shlex.join(command))
            continue
        jobs[stage.key] = _submit(command)
        log(f"submit {stage.key} as job {jobs[stage.key]} ({status.reason})")
    if dry_run:
        return RunSummary(tuple(statuses), (), "\n".join(lines) + ("\n" if lines else ""), {})
    waiting = set(jobs.values())
    while waiting:
        waiting &= _queued(sorted(waiting))
        if waiting:
            time.sleep(poll)
    failed = [key for key in jobs if read_marker(workdir, *key.split("/", 1)) is None]
    if failed:
        logs = ", ".join(str(workdir / "logs" / f"{key.replace('/', '-')}.log") for key in failed[:5])
        raise SlurmError(
            f"{len(failed)} stage(s) did not complete: {', '.join(failed)} (logs: {logs}). Fix the cause and run the "
            "same command again: only the incomplete stages are submitted"
        )
    markdown, outputs = write_tables(plan, workdir)
    return RunSummary(tuple(statuses), tuple(jobs), markdown, outputs)

