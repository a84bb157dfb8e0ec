"""``tables regenerate --slots N`` (or one slot per GPU): independent stages run at once on one machine.

Each stage that is not complete runs as its own process, ``python -m emogen_bench tables run-stage``
(:func:`leaderboard.regenerate.run_one_stage`), as soon as the stages it reads from are complete and
a slot is free.  A slot is a GPU (the process sees only it, through ``CUDA_VISIBLE_DEVICES``) or, on
a machine without one, a CPU slot.  A ``train``, ``generate`` or ``evaluate`` stage whose
``[resources]`` ask for k GPUs takes k slots and runs on k processes (``tables run-stage --processes k``,
torchrun inside; CPU slots run them with gloo).  A failed stage's log is named and what depends on it is not
started; the stages that did finish keep their markers, so the same command resumes.  Logs go to
``W/logs/<row>-<stage>.log``; the tables are written from the markers, as the in-process loop does.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from emogen_bench.errors import UsageError
from leaderboard.regenerate.checks import prepare_workdir
from leaderboard.regenerate.comparison import write_tables
from leaderboard.regenerate.plan import Plan, PlanRow
from leaderboard.regenerate.run import RunSummary, StageFailed, stage_process_command
from leaderboard.regenerate.stages import plan_statuses, read_marker, stage_processes

#: Seconds between two looks at the running stages.
POLL_SECONDS = 0.5


def default_slots() -> list[str]:
    """One slot per GPU this process may use (``CUDA_VISIBLE_DEVICES`` order), or one CPU slot without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return ["cpu"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [device.strip() for device in visible.split(",") if device.strip()]
    return [str(index) for index in range(torch.cuda.device_count())]


def cpu_slots(count: int) -> list[str]:
    """``count`` CPU slots (``--slots N`` on a machine without GPUs, e.g. to run light stages side by side)."""
    if count < 1:
        raise UsageError(f"--slots {count}: expected at least 1")
    return [f"cpu{index}" for index in range(count)]


def run_in_parallel(
    plan: Plan,
    workdir: Path,
    rows: Sequence[PlanRow],
    slots: Sequence[str],
    *,
    log: Callable[[str], None] = print,
    poll: float = POLL_SECONDS,
) -> RunSummary:
    """Run the incomplete stages of ``rows`` as processes, at most one per slot, each after its upstream stages."""
    prepare_workdir(plan, workdir, rows)
    (workdir / "logs").mkdir(exist_ok=True)
    statuses = plan_statuses(plan, rows, workdir)
    done = {status.stage.key for status in statuses if status.action == "skip"}
    for key in sorted(done):
        log(f"skip   {key} (complete)")
    waiting = [status.stage for status in statuses if status.action != "skip"]
    needs = {stage.key: stage_processes(plan, stage) for stage in waiting}
    too_big = [f"{key} ({count})" for key, count in needs.items() if count > len(slots)]
    if too_big:
        raise UsageError(
            f"{plan.path}: stage(s) {', '.join(too_big)} ask for more GPUs (the plan's [resources]) than this run has "
            f"slots ({len(slots)}); give more (CUDA_VISIBLE_DEVICES, --slots) or ask for fewer (nothing was run)"
        )
    free = list(slots)
    running: dict[str, tuple[subprocess.Popen[bytes], list[str], Path]] = {}
    failed: list[str] = []
    ran: list[str] = []
    while waiting or running:
        blocked = {s.key for s in waiting if any(f"{o}/{n}" in failed for o, n in s.upstream)}
        waiting = [s for s in waiting if s.key not in blocked]
        failed.extend(sorted(blocked))
        for stage in list(waiting):
            need = needs[stage.key]
            if len(free) < need or any(f"{o}/{n}" not in done for o, n in stage.upstream):
                continue
            taken, free = free[:need], free[need:]
            environment = dict(os.environ)
            gpus = [slot for slot in taken if not slot.startswith("cpu")]
            if gpus:
                environment["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            path = workdir / "logs" / f"{stage.owner}-{stage.name}.log"
            with open(path, "ab") as handle:
                process = subprocess.Popen(stage_process_command(plan, workdir, stage, need), stdout=handle,
                                           stderr=subprocess.STDOUT, env=environment)  # fmt: skip
            running[stage.key] = (process, taken, path)
            waiting.remove(stage)
            where = f"GPU {','.join(gpus)}" if gpus else "the CPU"
            log(f"start  {stage.key} on {where}" + (f" ({need} processes)" if need > 1 else ""))
        if running and not any(process.poll() is not None for process, _, _ in running.values()):
            time.sleep(poll)
        for key, (process, taken, path) in list(running.items()):
            if process.poll() is None:
                continue
            del running[key]
            free.extend(taken)
            if process.returncode == 0 and read_marker(workdir, *key.split("/", 1)) is not None:
                done.add(key)
                ran.append(key)
                log(f"done   {key}")
            else:
                failed.append(key)
                log(f"FAILED {key} (exit {process.returncode}; log {path})")
        if not running and waiting and all(any(f"{o}/{n}" not in done for o, n in s.upstream) for s in waiting):
            failed.extend(s.key for s in waiting)  # upstream never completed (nothing left to run it)
            waiting = []
    if failed:
        raise StageFailed(
            f"{len(failed)} stage(s) did not complete: {', '.join(failed)}; the logs are in {workdir / 'logs'}. Fix "
            "the cause and run the same command again: complete stages are skipped"
        )
    markdown, outputs = write_tables(plan, workdir)
    return RunSummary(tuple(statuses), tuple(ran), markdown, outputs)
