"""``emogen-bench tables regenerate`` and ``tables run-stage``: a thin face over :mod:`leaderboard.regenerate.run`.

:mod:`leaderboard.regenerate.run` is imported by the handlers and by the deferred builder of the options
(:func:`emogen_bench.cli.defer_arguments`), never at start-up: ``emogen-bench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emogen_bench.cli import defer_arguments
from emogen_bench.errors import ExitCode

PLAN_HELP = (
    "a plan file (e.g. leaderboard/plans/main.toml), or the name of a plan shipped with emogen-bench (main, "
    "supplement, ablations, smoke): by name, leaderboard/plans/NAME.toml in the current folder when it is there, "
    "else the copy installed with the package"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``emogen-bench tables regenerate PLAN --workdir W [--dry-run] [--rows ID,...]``."""
    parser = subparsers.add_parser(
        "tables",
        help="regenerate the paper's tables from experiment plans (train, generate, evaluate, compare)",
        description="Experiment plans (leaderboard/plans/*.toml, also installed with the package) regenerate the "
        "paper's tables; docs/tables.md.",
    )
    parser.set_defaults(handler=lambda args: _help(parser))
    defer_arguments(parser, _add_commands)


def _add_commands(parser: argparse.ArgumentParser) -> None:
    """``regenerate`` and ``run-stage`` with their options (the executors come from :mod:`leaderboard.regenerate.run`,
    which imports numpy and scipy, hence deferred)."""
    from leaderboard.regenerate.run import EXECUTORS
    from leaderboard.resources import plans_source

    commands = parser.add_subparsers(dest="tables_command", metavar="COMMAND")
    regenerate = commands.add_parser(
        "regenerate",
        help="run a plan's rows (train -> generate -> evaluate -> entry), skipping complete stages",
        description=(
            "Run every row of PLAN in --workdir: train, generate, evaluate and make an entry, each stage skipped "
            "when already complete (stages/<row>/<stage>.json records its inputs' digest), then write the "
            "regenerated tables beside the published numbers to WORKDIR/tables/<plan>.md and .csv. Idempotent "
            "and resumable: run it again after a crash. --dry-run prints the stages and their expected GPU "
            "hours and runs nothing. Smoke plan: emogen-bench tables regenerate smoke --workdir W (from a checkout "
            "also leaderboard/plans/smoke.toml)"
        ),
    )
    regenerate.add_argument("plan", type=Path, metavar="PLAN", help=f"{PLAN_HELP} ({plans_source()})")
    regenerate.add_argument(
        "--workdir",
        type=Path,
        required=True,
        metavar="W",
        help="the work folder (new, empty, or an earlier run's: complete stages are skipped)",
    )
    regenerate.add_argument(
        "--dry-run",
        action="store_true",
        help="print the stages that would run or be skipped and their GPU hours; run nothing",
    )
    regenerate.add_argument("--rows", metavar="ID,...", default=None, help="only these rows (comma-separated ids)")
    regenerate.add_argument("--emoset", metavar="DIR", default=None, help="override the plan's emoset path")
    regenerate.add_argument("--index", metavar="DIR", default=None, help="override the plan's index path")
    regenerate.add_argument(
        "--reference-stats", metavar="FILE", default=None, help="override the plan's reference statistics path"
    )
    regenerate.add_argument(
        "--executor", choices=EXECUTORS, default="local",
        help="local (default): on this machine, independent stages side by side on its GPUs (a stage asking for k "
             "GPUs in the plan's [resources] runs on k processes), one after the other with one GPU or none; "
             "slurm: every stage a Slurm job (afterok dependencies, the plan's [resources]), this process waits "
             "and writes the tables",
    )  # fmt: skip
    regenerate.add_argument(
        "--slots", type=int, default=None, metavar="N",
        help="local executor: use N slots, each stage its own process on its own GPU(s) "
             "(default: one per GPU in CUDA_VISIBLE_DEVICES; without GPUs one stage at a time, or N CPU slots)",
    )  # fmt: skip
    regenerate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    regenerate.set_defaults(handler=run_regenerate_command)
    one = commands.add_parser(
        "run-stage",
        help="run one stage of a plan (what a Slurm job of `regenerate --executor slurm` runs)",
        description="Run the stage KEY (<row>/<stage> or _plan/<stage>) of PLAN in --workdir unless it is complete; "
                    "the stages it reads from must be complete.",
    )  # fmt: skip
    one.add_argument("plan", type=Path, metavar="PLAN", help=PLAN_HELP)
    one.add_argument("--workdir", type=Path, required=True, metavar="W")
    one.add_argument("--stage", required=True, metavar="KEY")
    one.add_argument("--emoset", metavar="DIR", default=None)
    one.add_argument("--index", metavar="DIR", default=None)
    one.add_argument("--reference-stats", metavar="FILE", default=None)
    one.add_argument(
        "--processes", type=int, default=1, metavar="N",
        help="run a train, generate or evaluate stage on N processes started here by torchrun, one per GPU "
             "(gloo on a CPU); what the executors pass for a stage whose [resources] ask for N GPUs",
    )  # fmt: skip
    one.add_argument("--rank-attempt", choices=("resume", "fresh"), default=None, help=argparse.SUPPRESS)
    one.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    one.set_defaults(handler=run_stage_command)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return int(ExitCode.USAGE)


def run_stage_command(args: argparse.Namespace) -> int:
    from leaderboard.regenerate.plan import load_plan, with_data_paths
    from leaderboard.regenerate.run import run_one_stage, run_rank

    plan = with_data_paths(load_plan(args.plan), args.emoset, args.index, args.reference_stats)
    if args.rank_attempt is not None:  # one of the ranks `--processes N` started
        run_rank(plan, args.workdir, args.stage, resume=args.rank_attempt == "resume", show_progress=not args.quiet)
        return int(ExitCode.OK)
    run_one_stage(plan, args.workdir, args.stage, processes=args.processes, show_progress=not args.quiet)
    return int(ExitCode.OK)


def run_regenerate_command(args: argparse.Namespace) -> int:
    from leaderboard.regenerate.plan import load_plan, with_data_paths
    from leaderboard.regenerate.run import run_plan

    plan = with_data_paths(load_plan(args.plan), args.emoset, args.index, args.reference_stats)
    rows = [part.strip() for part in args.rows.split(",") if part.strip()] if args.rows else None
    slots = None
    if args.slots is not None:
        from leaderboard.regenerate.parallel import cpu_slots, default_slots

        gpus = default_slots()
        slots = cpu_slots(args.slots) if gpus == ["cpu"] else gpus[: max(args.slots, 1)]
    summary = run_plan(plan, args.workdir, dry_run=args.dry_run, rows=rows, show_progress=not args.quiet,
                       executor=args.executor, slots=slots,
                       log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    sys.stdout.write(summary.markdown)
    if not args.dry_run:
        print(f"tables: {summary.outputs['md']} and {summary.outputs['csv']}", file=sys.stderr)
        print(f"stages run: {len(summary.ran)}, skipped: {len(summary.skipped)}", file=sys.stderr)
    return int(ExitCode.OK)
