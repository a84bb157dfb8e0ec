"""Running a plan: the dry run, one stage in this process (``tables run-stage``), and the local executor."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emogen_bench.distributed import process_group, world_from_env
from emogen_bench.errors import BenchError, UsageError
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
    read_json_or_none,
    read_marker,
    stage_status,
    started_path,
    utc_now,
)
from leaderboard.regenerate.work import (
    MULTI_PROCESS_STAGES,
    Context,
    StageOutcome,
    execute_stage,
    prepare_stage,
)


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


class StageFailed(BenchError):
    """A stage's process (or one of its processes) ended without completing the stage."""


def _stage_context(
    plan: Plan, workdir: Path, key: str, show_progress: bool, log: Callable[[str], None]
) -> tuple[Stage, Context, dict[str, str | None]]:
    """The stage ``key``, a context holding the outputs of the stages it reads from, and their run ids."""
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
    return stage, ctx, run_ids


def run_one_stage(
    plan: Plan,
    workdir: str | Path,
    key: str,
    *,
    processes: int = 1,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the stage ``key`` (``<row>/<stage>`` or ``_plan/<stage>``) unless it is complete; returns its marker.

    What an executor's process or a cluster job runs (``tables run-stage``): the stages it reads from
    must be complete (their markers are read for their outputs), so a scheduler runs it after them.
    ``processes`` > 1 runs a ``train``, ``generate`` or ``evaluate`` stage on that many processes
    (:func:`run_stage_launched`); the other stages run in one process whatever it says.
    """
    workdir = Path(workdir)
    if processes < 1:
        raise UsageError(f"--processes {processes}: expected at least 1")
    stage, ctx, run_ids = _stage_context(plan, workdir, key, show_progress, log)
    status, digest = stage_status(workdir, stage, run_ids)
    marker = read_marker(workdir, stage.owner, stage.name)
    if status.action == "skip" and marker is not None:
        log(f"skip   {stage.key} (complete)")
        return marker
    log(f"{status.action:<6} {stage.key} ({status.reason})")
    if processes > 1 and stage.name in MULTI_PROCESS_STAGES:
        return run_stage_launched(ctx, stage, digest or "", resume=status.action == "resume", processes=processes)
    return run_stage_here(ctx, stage, digest or "", resume=status.action == "resume")


def stage_process_command(plan: Plan, workdir: Path, stage: Stage, processes: int = 1) -> list[str]:
    """The command line that runs one stage in its own process (what the executors start)."""
    command = [sys.executable, "-m", "emogen_bench", "tables", "run-stage", str(plan.path.resolve()), "--workdir",
               str(Path(workdir).resolve()), "--stage", stage.key, "--quiet"]  # fmt: skip
    if not plan.tiny:
        command += ["--emoset", plan.emoset, "--index", plan.index, "--reference-stats", plan.reference]
    if processes > 1:
        command += ["--processes", str(processes)]
    return command


def rank_command(plan: Plan, workdir: Path, stage: Stage, processes: int, *, resume: bool) -> list[str]:
    """torchrun starting ``processes`` ranks of one stage on this machine (a free port of its own: stages side by
    side do not meet); each rank runs ``tables run-stage --rank-attempt resume|fresh``."""
    command = stage_process_command(plan, workdir, stage)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [*launcher, *command[1:], "--rank-attempt", "resume" if resume else "fresh"]


def outcome_path(workdir: Path, owner: str, name: str) -> Path:
    """Where rank 0 of a multi-process stage leaves what the stage produced, for the process that started it."""
    return workdir / "stages" / owner / f"{name}.outcome.json"


def run_stage_launched(ctx: Context, stage: Stage, digest: str, *, resume: bool, processes: int) -> dict[str, Any]:
    """Run one stage on ``processes`` processes that torchrun starts here (one per GPU this process sees).

    This process prepares the attempt (markers, folders) before the ranks start, so every rank sees the
    same folders; it writes the marker once every rank has exited 0 and rank 0 has left the outcome.
    """
    _begin(ctx, stage, digest)
    began = time.perf_counter()
    resume = prepare_stage(ctx, stage, resume)
    outcome_file = outcome_path(ctx.workdir, stage.owner, stage.name)
    outcome_file.unlink(missing_ok=True)
    ctx.log(f"launch {stage.key} on {processes} processes")
    completed = subprocess.run(rank_command(ctx.plan, ctx.workdir, stage, processes, resume=resume), check=False)
    document = read_json_or_none(outcome_file)
    if completed.returncode != 0 or document is None:
        raise StageFailed(
            f"stage {stage.key}: its {processes} processes ended with exit code {completed.returncode}"
            f"{' and rank 0 left no outcome' if completed.returncode == 0 else ''}; the output above (or the "
            "stage's log) says why. Run the same command again to resume it"
        )
    outcome_file.unlink()
    outcome = StageOutcome(document.get("paths", {}), document.get("values", {}))
    return _finish(ctx, stage, digest, outcome, began, processes)


def run_rank(
    plan: Plan, workdir: str | Path, key: str, *, resume: bool, show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> None:
    """One rank of :func:`run_stage_launched` (``tables run-stage --rank-attempt``): this rank's share of the stage.

    Training runs data-parallel through accelerate (which sets up its own process group); generation
    and evaluation share a gloo group for their barriers.  Rank 0 leaves the outcome for the launcher.
    """
    world = world_from_env()
    if world.size == 1:
        raise UsageError("--rank-attempt is for the processes that `tables run-stage --processes N` starts")
    workdir = Path(workdir)
    stage, ctx, _ = _stage_context(plan, workdir, key, show_progress and world.is_main, log)
    ctx.world = world
    import torch

    if torch.cuda.is_available():  # "cuda" is then this rank's own GPU, in every model the stage loads
        torch.cuda.set_device(world.local_rank)
    with nullcontext() if stage.name == "train" else process_group(world):
        outcome = execute_stage(ctx, stage, resume)
    if world.is_main:
        if outcome is None:
            raise StageFailed(f"stage {key}: rank 0 produced no outcome")
        document = {"paths": dict(outcome.paths), "values": json.loads(json.dumps(dict(outcome.values), default=str))}
        write_json_atomic(outcome_path(workdir, stage.owner, stage.name), document, overwrite=True)


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


def _begin(ctx: Context, stage: Stage, digest: str) -> None:
    """An attempt starts: the old marker goes, ``<stage>.started.json`` records the digest it runs for."""
    marker = marker_path(ctx.workdir, stage.owner, stage.name)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    write_json_atomic(started_path(ctx.workdir, stage.owner, stage.name), {"digest": digest, "started": utc_now()},
                      overwrite=True)  # fmt: skip


def _finish(
    ctx: Context, stage: Stage, digest: str, outcome: StageOutcome, began: float, processes: int
) -> dict[str, Any]:
    """The attempt succeeded: write the marker (atomically), then drop the started file."""
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
        "processes": processes,
        "finished": utc_now(),
        "seconds": round(time.perf_counter() - began, 3),
    }
    write_json_atomic(marker_path(ctx.workdir, stage.owner, stage.name), json.loads(json.dumps(document, default=str)),
                      overwrite=True)  # fmt: skip
    started_path(ctx.workdir, stage.owner, stage.name).unlink(missing_ok=True)
    return document


def run_stage_here(ctx: Context, stage: Stage, digest: str, *, resume: bool) -> dict[str, Any]:
    """Run one stage in this process; its marker is written only after it succeeded (the old one goes first)."""
    _begin(ctx, stage, digest)
    began = time.perf_counter()
    resume = prepare_stage(ctx, stage, resume)
    outcome = execute_stage(ctx, stage, resume)
    if outcome is None:  # only a rank other than 0 gets none, and this process is rank 0 of 1
        raise StageFailed(f"stage {stage.key} produced no outcome")
    return _finish(ctx, stage, digest, outcome, began, 1)
