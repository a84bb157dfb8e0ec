"""``emogen-bench validate DIR``: check a submission folder and print every problem."""

from __future__ import annotations

import argparse
from itertools import groupby
from pathlib import Path

from emogen_bench.cli.common import add_json_flag, add_quiet_flag, print_json
from emogen_bench.errors import ExitCode
from emogen_bench.submission.validate import ValidationReport, validate_submission
from emogen_bench.task import SUBMISSION


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand."""
    parser = subparsers.add_parser(
        "validate",
        help="check a submission folder against the protocol",
        description=(
            "Check DIR/<emotion>/<images> (and the optional DIR/submission.json) against the protocol and "
            "report every problem with its path. Reads only; never writes into DIR. Exit code 0: valid, "
            "1: invalid, 2: bad arguments. The format is documented in docs/submission.md."
        ),
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="the submission folder (one sub-folder per emotion)")
    parser.add_argument(
        "--per-emotion",
        type=int,
        metavar="N",
        help=(
            f"declare a reduced run of exactly N images per emotion (N >= {SUBMISSION.min_images_per_emotion}); "
            f"labelled as not the official protocol. Default: the official {SUBMISSION.images_per_emotion}"
        ),
    )
    parser.add_argument(
        "--no-decode",
        action="store_true",
        help="read image headers only (format, size, mode): faster, but corrupt pixel data goes unnoticed",
    )
    add_json_flag(parser)
    add_quiet_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate, print the report (text or JSON), return 0 when valid and 1 when not."""
    report = validate_submission(
        args.dir, per_emotion=args.per_emotion, check_images=not args.no_decode, show_progress=not args.quiet
    )
    if args.json:
        print_json(report.to_dict())
    else:
        print(format_report(report))
    return int(ExitCode.OK if report.valid else ExitCode.INVALID)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_report(report: ValidationReport) -> str:
    """The human-readable report: run, counts, problems grouped by code (errors first), digest, verdict."""
    if report.metadata is not None:
        metadata = f"{SUBMISSION.metadata_file} (sha256 {report.metadata_sha256}), method {report.metadata.method!r}"
    elif report.metadata_sha256 is not None:
        metadata = f"{SUBMISSION.metadata_file} present but invalid (see bad-metadata below)"
    else:
        metadata = f"none ({SUBMISSION.metadata_file} is optional; see docs/submission.md)"
    images = "decoded in full" if report.decoded else "headers only (--no-decode): corrupt pixel data is not detected"
    lines = [
        f"submission: {report.path}",
        f"protocol:   {report.protocol}",
        f"run:        {report.run_label}",
        f"images:     {images}",
        f"metadata:   {metadata}",
        "",
        "images per emotion:",
    ]
    width = max(len(name) for name in report.counts)
    for emotion, count in report.counts.items():
        codes = sorted({problem.code for problem in report.errors if problem.path == emotion})
        mark = f"  ({', '.join(codes)})" if codes else ""
        lines.append(f"  {emotion:<{width}}  {count:>5} / {report.per_emotion}{mark}")
    for title, problems in (("errors", report.errors), ("warnings", report.warnings)):
        if not problems:
            continue
        lines += ["", f"{title} ({len(problems)}):"]
        for code, group in groupby(problems, key=lambda problem: problem.code):
            members = list(group)
            lines.append(f"  {code} ({len(members)}):")
            lines.extend(f"    {problem.path}: {problem.message}" for problem in members)
    verdict = "VALID" if report.valid else "INVALID"
    tally = f"{_plural(len(report.errors), 'error')}, {_plural(len(report.warnings), 'warning')}"
    lines += [
        "",
        f"digest:     {report.digest} ({_plural(len(report.manifest), 'image file')})",
        f"{verdict}: {tally}; {report.run_label}",
    ]
    return "\n".join(lines)
