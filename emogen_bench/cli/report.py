"""``emogen-bench report RESULTS.json --out DIR``: a static HTML page of one evaluation (docs/report.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from emogen_bench.errors import ExitCode

#: Images shown per emotion at each end; the same as ``report_page.DEFAULT_COUNT`` (kept here: no import at start).
DEFAULT_COUNT = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="write a static HTML page of one evaluation: confusion matrices, per-emotion bars, image extremes",
        description=(
            "Write DIR/index.html, one self-contained page (inline CSS, SVG charts and thumbnails; no script, "
            "nothing fetched): the provenance of the results, the overall numbers, per-emotion bars with their "
            "95%% intervals, the confusion matrix of each emotion classifier and, with --per-image and "
            "--submission, the images each classifier scored lowest and highest per emotion."
        ),
    )
    parser.add_argument("results", type=Path, metavar="RESULTS.json", help="a results JSON written by evaluate")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", required=True,
        help="folder to write index.html into (a page there is replaced only if this command wrote it)",
    )  # fmt: skip
    parser.add_argument(
        "--per-image", type=Path, metavar="FILE",
        help="the per-image file of the same evaluation (evaluate --per-image); checked against the results",
    )  # fmt: skip
    parser.add_argument(
        "--submission", type=Path, metavar="DIR",
        help="the evaluated submission folder: thumbnails of the images shown (needs --per-image)",
    )  # fmt: skip
    parser.add_argument(
        "--count", type=int, metavar="N", default=DEFAULT_COUNT,
        help=f"images shown per emotion and classifier at each end, lowest and highest (default {DEFAULT_COUNT})",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Build the page and print where it is; 0 on success."""
    from emogen_bench.report_page import build_report

    page = build_report(args.results, args.out, per_image=args.per_image, submission=args.submission,
                        count=args.count)  # fmt: skip
    print(f"report: {page}")
    return int(ExitCode.OK)
