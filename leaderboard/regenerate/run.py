"""Running a plan: the dry run, one stage in this process (``tables run-stage``), and the local executor."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError
from emogen_bench.fileio import write_json_atomic
from leaderboard.regenerate.checks import check_workdir, missing_data, missing_weights, prepare_workdir
from leaderboard.regenerate.comparison import write_tables
from leaderboard.regenerate.plan import FORMAT_VERSION, MARKER_FORMAT, SMOKE_BANNER, Plan, select_rows
from leaderboard.regenerate.stages import (
    Stage,
    StageStatus,
    marker_path,
    plan_stages,
    plan_statuses,
    read_marker,
    stage_status,
    started_path,
    utc_now,
)
from leaderboard.regenerate.work import Context, execute_stage


@dataclass(frozen=True)
class RunSummary:
    """What :func:`run_plan` did: the stages run and skipped, the table files and the Markdown."""

    statuses: tuple[StageStatus, ...]
    ran: tuple[str, ...]
    markdown: str
    outputs: Mapping[str, Path]

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(s.stage.key for s in self.statuses if s.action == "skip")


def describe(plan: Plan, statuses: Sequence[StageStatus], missing: Sequence[str] = ()) -> list[str]:
    """The dry run's report: the plan, then each stage with what would happen and its expected GPU hours."""
    size = "TINY (smoke models, CPU)" if plan.tiny else "full size"
    lines = [
        f"plan {plan.name}: {plan.title} ({plan.path})",
        f"protocol {plan.protocol}, {plan.per_emotion} images per emotion, seed {plan.seed}, {size}",
        f"tables: {', '.join(f'{name} ({title})' for name, title in plan.tables.items())}",
    ]
    if plan.tiny:
        lines.append(SMOKE_BANNER)
    width = max(len(status.stage.key) for status in statuses)
    lines.append(f"{'stage':<{width}}  {'action':<6}  {'GPU h':>7}  why")
    for status in statuses:
        lines.append(f"{status.stage.key:<{width}}  {status.action:<6}  {status.stage.cost:>7.2f}  {status.reason}")
    todo = sum(s.stage.cost for s in statuses if s.action != "skip")
    total = sum(s.stage.cost for s in statuses)
    lines.append(f"GPU hours (estimates, docs/tables.md): {todo:.2f} to run, {total:.2f} for the whole plan")
    return lines + [f"missing data (needed before a real run): {item}" for item in missing]


def dry_run_report(plan: Plan, workdir: str | Path, *, rows: Sequence[str] | None = None) -> list[str]:
    """What :func:`run_plan` would do, stage by stage, with the GPU hours each is expected to take; writes nothing."""
    workdir = Path(workdir)
    check_workdir(workdir, plan.tiny)
    selected = select_rows(plan, rows)
    statuses = plan_statuses(plan, selected, workdir)
    absent = missing_weights(plan, selected, workdir)
    return describe(plan, statuses, missing_data(plan, workdir)) + [
        f"missing weight (needed before a real run): {line}" for line in absent
    ]


def run_one_stage(
    plan: Plan, workdir: str | Path, key: str, *, show_progress: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the stage ``key`` (``<row>/<stage>`` or ``_plan/<stage>``) unless it is complete; returns its marker.

    What a cluster job runs (``tables run-stage``): the stages it reads from must be complete (their
    markers are read for their outputs), so a scheduler runs it after them.
    """
    workdir = Path(workdir)
    stages = {stage.key: stage for stage in plan_stages(plan, plan.rows, workdir)}
    if key not in stages:
        raise UsageError(f"{plan.path}: no stage {key!r}; the stages are: {', '.join(stages)}")
    stage = stages[key]
    ctx = Context(plan, workdir, show_progress, log)
    run_ids: dict[str, str | None] = {}
    for owner, name in stage.upstream:
        marker = read_marker(workdir, owner, name)
        if marker is None:
            raise UsageError(f"stage {key} reads {owner}/{name}, which is not complete in {workdir}; run it first")
        run_ids[f"{owner}/{name}"] = marker["run_id"]
        ctx.upstream[f"{owner}/{name}"] = {
            **marker.get("values", {}),
            **{name_: str(workdir / relative) for name_, relative in marker.get("paths", {}).items()},
        }
    status, digest = stage_status(workdir, stage, run_ids)
    marker = read_marker(workdir, stage.owner, stage.name)
    if status.action == "skip" and marker is not None:
        log(f"skip   {stage.key} (complete)")
        return marker
    log(f"{status.action:<6} {stage.key} ({status.reason})")
    return run_stage_here(ctx, stage, digest or "", resume=status.action == "resume")


def stage_process_command(plan: Plan, workdir: Path, stage: Stage) -> list[str]:
    """The command line that runs one stage in its own process (what the executors start)."""
    command = [sys.executable, "-m", "emogen_bench", "tables", "run-stage", str(plan.path.resolve()), "--workdir",
               str(Path(workdir).resolve()), "--stage", stage.key, "--quiet"]  # fmt: skip
    if not plan.tiny:
        command += ["--emoset", plan.emoset, "--index", plan.index, "--reference-stats", plan.reference]
    return command


#: How ``tables regenerate`` runs the stages: in this process, or as Slurm jobs (:mod:`leaderboard.regenerate.slurm`).
EXECUTORS = ("local", "slurm")


def run_plan(
    plan: Plan,
    workdir: str | Path,
    *,
    dry_run: bool = False,
    rows: Sequence[str] | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
    executor: str = "local",
    slots: Sequence[str] | None = None,
) -> RunSummary:
    """Run every stage of the plan's rows that is not complete, then render the tables into ``workdir/tables``.

    Idempotent: a second run with the same plan runs no stage and writes no file. Resumable: a stage
    that crashed is resumed or restarted (module docstring). ``dry_run`` only reports (see :func:`dry_run_report`).
    ``executor="slurm"`` submits each stage as a Slurm job instead (:func:`.slurm.run_on_slurm`).
    Locally, ``slots`` (default: one per visible GPU, a single one without GPUs) run independent stages at
    once as separate processes (:func:`.parallel.run_in_parallel`); one slot runs them here, in turn.
    """
    workdir = Path(workdir)
    selected = select_rows(plan, rows)
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
    if executor == "slurm":
        from leaderboard.regenerate.slurm import run_on_slurm

        return run_on_slurm(plan, workdir, selected, dry_run=dry_run, log=log)
    if dry_run:
        lines = dry_run_report(plan, workdir, rows=rows)
        return RunSummary((), (), "\n".join(lines) + "\n", {})
    from leaderboard.regenerate.parallel import default_slots, run_in_parallel

    slots = list(default_slots() if slots is None else slots)
    if len(slots) > 1:
        return run_in_parallel(plan, workdir, selected, slots, log=log)
    prepare_workdir(plan, workdir, selected)
    ctx = Context(plan, workdir, show_progress, log)
    run_ids: dict[str, str | None] = {}
    statuses, ran = [], []
    for stage in plan_stages(plan, selected, workdir):
        status, digest = stage_status(workdir, stage, run_ids)
        statuses.append(status)
        marker = read_marker(workdir, stage.owner, stage.name)
        if status.action == "skip" and marker is not None:
            log(f"skip   {stage.key} (complete)")
        else:
            log(f"{status.action:<6} {stage.key} ({status.reason})")
            marker = run_stage_here(ctx, stage, digest or "", resume=status.action == "resume")
            ran.append(stage.key)
        run_ids[stage.key] = marker["run_id"]
        ctx.upstream[stage.key] = {
            **marker.get("values", {}),
            **{key: str(workdir / relative) for key, relative in marker.get("paths", {}).items()},
        }
    markdown, outputs = write_tables(plan, workdir)
    return RunSummary(tuple(statuses), tuple(ran), markdown, outputs)


def run_stage_here(ctx: Context, stage: Stage, digest: str, *, resume: bool) -> dict[str, Any]:
    """Run one stage; its marker is written only after it succeeded (the old one is removed before it starts)."""
    marker = marker_path(ctx.workdir, stage.owner, stage.name)
    started = started_path(ctx.workdir, stage.owner, stage.name)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    write_json_atomic(started, {"digest": digest, "started": utc_now()}, overwrite=True)
    began = time.perf_counter()
    outcome = execute_stage(ctx, stage, resume)
    document = {
        "format": MARKER_FORMAT,
        "version": FORMAT_VERSION,
        "stage": stage.name,
        "owner": stage.owner,
        "digest": digest,
        "run_id": uuid.uuid4().hex,
        "inputs": stage.inputs,
        "upstream": [f"{o}/{n}" for o, n in stage.upstream],
        "paths": dict(outcome.paths),
        "values": json.loads(json.dumps(dict(outcome.values), default=str)),
        "finished": utc_now(),
        "seconds": round(time.perf_counter() - began, 3),
    }
    write_json_atomic(marker, json.loads(json.dumps(document, default=str)), overwrite=True)
    started.unlink(missing_ok=True)
    return document
