"""``emogen-bench evaluate DIR``: score a submission; a thin face over :func:`emogen_bench.evaluate.evaluate`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import datetime, timezone
from pathlib import Path

from emogen_bench.cli.common import add_quiet_flag, add_weights_override
from emogen_bench.config import (
    CPU_WORKERS,
    MAX_AUTO_WORKERS,
    OUTPUT_FORMATS,
    EvalConfig,
    parse_metrics,
    parse_num_workers,
)
from emogen_bench.errors import ExitCode, UsageError
from emogen_bench.fileio import check_output_file
from emogen_bench.paths import bench_home
from emogen_bench.protocols import PAPER_CODE, PROTOCOLS
from emogen_bench.task import METRIC_KEYS

DEFAULTS = EvalConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a submission: FID, KID, LPIPS, Emo-A, Sem-C, Sem-D with confidence intervals",
        description=(
            "Validate the submission (an invalid one is refused with its report), run every metric model once "
            "per image (features cached by content hash), and print the results with 95% confidence intervals. "
            "The results JSON records the protocol, the submission digest, every weight's hash and the seed."
        ),
    )
    parser.add_argument(
        "submission", type=Path, metavar="DIR", help="the submission folder (one sub-folder per emotion)"
    )
    parser.add_argument(
        "--reference-stats",
        type=Path,
        metavar="REF",
        help="reference statistics for FID/KID: a file (emogen-bench reference-stats build) or the name of the "
        "protocol's official ones, e.g. ref-stats-eicg-v3 (fetched and verified like a weight); without them "
        "FID and KID are reported as not computed under --metrics all, and naming either in --metrics is an error",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="where to write the results JSON (default: a new file under $EMOGEN_BENCH_HOME/results/)",
    )
    parser.add_argument(
        "--per-image",
        type=Path,
        metavar="FILE",
        help="also write one row per image (each classifier's predicted emotion and target probability, Sem-C's "
        "two probabilities and winner) to FILE.csv, or FILE.parquet with pandas and pyarrow (docs/report.md)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out (and --per-image) if it exists")
    parser.add_argument(
        "--metrics",
        default="all",
        metavar="LIST",
        help=f"comma-separated metric keys or 'all' (default: every metric of --protocol); keys: "
        f"{', '.join(METRIC_KEYS)}",
    )
    parser.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        default=DEFAULTS.protocol,
        help=f"how the numbers are defined (default {DEFAULTS.protocol}); {PAPER_CODE} reproduces the EmoGen "
        "released scripts, quirks included (docs/paper_code.md), to sit beside the published numbers; its results "
        "are never compared with eicg-v3",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        metavar="N",
        default=DEFAULTS.pairs,
        help=f"random pairs per emotion for the {PAPER_CODE} LPIPS and Sem-D (default {DEFAULTS.pairs}, as released); "
        "ignored by eicg-v3",
    )
    parser.add_argument(
        "--per-emotion",
        type=int,
        metavar="N",
        default=DEFAULTS.per_emotion,
        help="declare a smaller run of N images per emotion (labelled as such everywhere)",
    )
    parser.add_argument(
        "--device", default=DEFAULTS.device, help=f"auto, cpu, cuda, cuda:1, ... (default {DEFAULTS.device})"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        help=f"images decoded per batch (default {DEFAULTS.batch_size}); never changes a result",
    )
    parser.add_argument(
        "--num-workers",
        "--workers",
        dest="workers",
        type=parse_num_workers,
        default=DEFAULTS.num_workers,
        metavar="auto|N",
        help=f"data-loader worker processes (default {DEFAULTS.num_workers}: on CUDA the available cores but one, "
        f"{MAX_AUTO_WORKERS} at most; on the CPU {CPU_WORKERS}); 0 decodes in the main process; fewer images per "
        "loader batch when /dev/shm is too small for them (docs/evaluate.md); never changes a result",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS.seed,
        help=f"seed of KID subsets, bootstrap intervals and {PAPER_CODE} pair sampling (default {DEFAULTS.seed})",
    )
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="table", help="what to print (default table)")
    parser.add_argument("--no-cache", action="store_true", help="compute every feature again and cache nothing")
    parser.add_argument(
        "--compile",
        action="store_true",
        default=DEFAULTS.compile,
        help="torch.compile every model (inductor; seconds of compiling per model, faster forwards); features "
        "differ from eager ones in their last bits, so the results and the cache record it",
    )
    add_weights_override(parser)
    add_quiet_flag(parser)
    parser.set_defaults(handler=run)


def default_out(digest: str) -> Path:
    """A new results file under the cache folder: never replaces an earlier result."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return bench_home() / "results" / f"{digest.removeprefix('sha256:')[:12]}-{stamp}.json"


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the JSON, print the report; 0 on success.

    Under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1) every rank
    extracts its share of the features into the shared cache; then rank 0
    alone computes the metrics, writes the one results file and prints.
    """
    from emogen_bench.distributed import barrier, process_group, world_from_env
    from emogen_bench.evaluate import evaluate, fill_cache_for_rank
    from emogen_bench.report import render

    world = world_from_env()

    if args.out is not None:  # before any work: a folder, a device, a file inside the submission are refused
        args.out = check_output_file(args.out, overwrite=args.overwrite, inputs={"the submission": args.submission})
    if args.per_image is not None:
        from emogen_bench.per_image import check_per_image_file

        args.per_image = check_per_image_file(
            args.per_image, overwrite=args.overwrite, inputs={"the submission": args.submission}
        )
        if args.out is not None and args.per_image.resolve() == args.out.resolve():
            raise UsageError(f"--per-image {args.per_image} is also --out; give two different files")
    config = EvalConfig(
        metrics=parse_metrics(args.metrics, args.protocol),
        per_emotion=args.per_emotion,
        reference_stats=args.reference_stats,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.workers,
        seed=args.seed,
        cache=not args.no_cache,
        weights_override=args.weights_override,
        show_progress=not args.quiet,
        protocol=args.protocol,
        pairs=args.pairs,
        compile=args.compile,
    )
    if config.reference_stats is None and args.metrics.strip() != "all" and {"fid", "kid"} & set(config.metrics):
        from emogen_bench.evaluate import reference_needed

        raise UsageError(reference_needed(config.metrics, config.protocol))  # asked for by name: not skipped
    if world.is_main and config.reference_stats is not None and {"fid", "kid"} & set(config.metrics):
        from emogen_bench.reference_stats import fetch_reference_stats, is_reference_name
        from emogen_bench.weights import open_store

        if is_reference_name(config.reference_stats):  # a registry name: fetched and verified like a weight
            store = open_store(args.weights_override)
            path = fetch_reference_stats(str(config.reference_stats), store)
            config = dataclasses.replace(config, reference_stats=path)
    if world.size > 1:
        with process_group(world):
            fill_cache_for_rank(args.submission, config, world)
            barrier(world)
        if not world.is_main:
            return int(ExitCode.OK)
        config = dataclasses.replace(config, device=world.device(config.device))
    rows = None
    if args.per_image is not None:
        from emogen_bench.per_image import evaluate_per_image

        result, rows = evaluate_per_image(args.submission, config)
    else:
        result = evaluate(args.submission, config)
    out = result.write(args.out or default_out(result.submission["digest"]), overwrite=args.overwrite)
    if rows is not None:
        from emogen_bench.per_image import write_per_image

        write_per_image(rows, args.per_image, overwrite=args.overwrite)
    text = render(result.to_dict(), args.format)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")  # CSV and Markdown end with their own newline
    if args.format in ("table", "markdown") or not args.quiet:
        stream = sys.stderr if args.format in ("json", "csv") else sys.stdout
        print(f"\nresults JSON: {out}", file=stream)
        if rows is not None:
            print(f"per-image results: {args.per_image} ({len(rows)} rows)", file=stream)
    return int(ExitCode.OK)
