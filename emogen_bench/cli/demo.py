"""``emogen-bench demo``: the whole benchmark on synthetic data with tiny models, to check an install."""

from __future__ import annotations

import argparse
from pathlib import Path

from emogen_bench.cli.common import add_json_flag, add_quiet_flag, print_json
from emogen_bench.errors import ExitCode


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="install check: the whole benchmark on synthetic images with tiny random models (a smoke run)",
        description=(
            "Write a synthetic submission and a miniature synthetic EmoSet, prepare the index, build reference "
            "statistics and evaluate, all with tiny deterministic models built in code: no weights, no network. "
            "It checks the installation; its numbers mean nothing and are labelled a smoke run everywhere."
        ),
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR",
        help="keep everything the demo writes in DIR (new or empty); default: a temporary folder, removed afterwards",
    )
    parser.add_argument("--per-emotion", type=int, metavar="N", default=None,
                        help="images per emotion in the synthetic submission (default 4)")
    add_json_flag(parser)
    add_quiet_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its report; 0 when everything ran."""
    from emogen_bench.demo import DEMO_LABEL, DEMO_PER_EMOTION, run_demo
    from emogen_bench.report import render_table

    per_emotion = args.per_emotion if args.per_emotion is not None else DEMO_PER_EMOTION
    result = run_demo(args.out, per_emotion=per_emotion, show_progress=not args.quiet)
    if args.json:
        print_json(result.to_dict())
        return int(ExitCode.OK if result.ok else ExitCode.INVALID)
    where = f"kept in {result.workdir}" if result.kept else "written to a temporary folder, removed afterwards"
    print(f"emogen-bench demo: {DEMO_LABEL}")
    print(f"files: {where}")
    print(f"validation: {'VALID' if result.validation.valid else 'INVALID'} ({result.validation.run_label})")
    print()
    print(render_table(result.result.to_dict()))
    return int(ExitCode.OK if result.ok else ExitCode.INVALID)
