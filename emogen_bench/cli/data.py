"""``emogen-bench data``: derive the EICG subset index from EmoSet, and show an index's summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emogen_bench.cli.common import add_json_flag, add_quiet_flag, print_json
from emogen_bench.errors import ExitCode


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data prepare`` and ``data summary``."""
    data = subparsers.add_parser(
        "data",
        help="derive the EICG subset index from an EmoSet folder",
        description="EmoSet and the EICG subset index (one row per kept image, one attribute each).",
    )
    data.set_defaults(handler=lambda args: _print_help(data))
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    prepare = commands.add_parser(
        "prepare",
        help="read EMOSET_ROOT and write index.csv, summary.json and summary.md to --out",
        description=(
            "Read an EmoSet-118K folder (train.json, val.json, test.json, image/, annotation/) and write the "
            "EICG subset index: images with a scene or object label, one attribute each. Problems in the "
            "folder are listed and the affected images left out; --strict fails on any problem instead."
        ),
    )
    prepare.add_argument("emoset_root", type=Path, metavar="EMOSET_ROOT", help="the unpacked EmoSet folder")
    prepare.add_argument("--out", type=Path, required=True, metavar="DIR", help="new (or empty) folder for the index")
    prepare.add_argument("--overwrite", action="store_true", help="replace an index already in DIR")
    prepare.add_argument("--strict", action="store_true", help="exit 4 and write nothing if there is any problem")
    prepare.add_argument("--no-hash", action="store_true", help="skip the sha256 of every image (faster)")
    add_quiet_flag(prepare)
    add_json_flag(prepare)
    prepare.set_defaults(handler=run_prepare)

    summary = commands.add_parser("summary", help="print the summary of an existing index folder")
    summary.add_argument("index_dir", type=Path, metavar="DIR", help="the --out folder of `data prepare`")
    add_json_flag(summary)
    summary.set_defaults(handler=run_summary)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return int(ExitCode.USAGE)


def _warn_problems(summary: dict[str, Any], where: str) -> None:
    """One WARNING line on stderr when the index was written despite problems."""
    count = len(summary["problems"])
    if count:
        print(
            f"emogen-bench: WARNING: {count} problem(s) in the EmoSet folder; the affected images are not in the "
            f"index (all listed in {where}). Use --strict to fail instead.",
            file=sys.stderr,
        )


def run_prepare(args: argparse.Namespace) -> int:
    """Handler of ``data prepare``."""
    from emogen_bench.data import EmoSetProblemsError, prepare_emoset, render_summary

    try:
        result = prepare_emoset(
            args.emoset_root,
            args.out,
            overwrite=args.overwrite,
            strict=args.strict,
            hash_files=not args.no_hash,
            show_progress=not args.quiet,
        )
    except EmoSetProblemsError as error:
        for problem in error.problems[:20]:
            print(f"  {problem.code}  {problem.path}: {problem.message}", file=sys.stderr)
        raise
    if args.json:
        print_json({**result.summary, "out_dir": str(result.out_dir), "files": [str(p) for p in result.files]})
    else:
        sys.stdout.write(render_summary(result.summary))
        print("Wrote " + ", ".join(str(path) for path in result.files))
    _warn_problems(result.summary, str(result.summary_path))
    return int(ExitCode.OK)


def run_summary(args: argparse.Namespace) -> int:
    """Handler of ``data summary``."""
    from emogen_bench.data import SUMMARY_FILE, read_summary, render_summary
    from emogen_bench.data.summary import check_summary

    summary = check_summary(read_summary(args.index_dir), Path(args.index_dir) / SUMMARY_FILE)
    if args.json:
        print_json({**summary, "out_dir": str(args.index_dir)})
    else:
        sys.stdout.write(render_summary(summary))
    _warn_problems(summary, f"{SUMMARY_FILE} of {args.index_dir}")
    return int(ExitCode.OK)
