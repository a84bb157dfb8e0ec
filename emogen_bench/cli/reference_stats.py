"""``emogen-bench reference-stats build|show|publish-entry``: a thin face over :mod:`emogen_bench.reference_stats`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emogen_bench.cli.common import add_json_flag, add_quiet_flag, add_weights_override, print_json
from emogen_bench.config import EvalConfig, check_device, check_seed, parse_num_workers
from emogen_bench.errors import ExitCode
from emogen_bench.fileio import check_output_file
from emogen_bench.protocols import PAPER_CODE, PROTOCOLS
from emogen_bench.task import DATA, DEFAULT_SEED, METRICS

#: Loader settings share the evaluation's defaults; they never change a result.
DEFAULTS = EvalConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reference-stats build`` and ``reference-stats show``."""
    parser = subparsers.add_parser(
        "reference-stats",
        help="build or show the Inception statistics of the EmoSet reference images (for FID and KID)",
        description=(
            "Reference statistics: float64 Inception mean and covariance per emotion and pooled, plus a seeded "
            f"sample of up to {METRICS.kid_reference_per_emotion} features per emotion for KID, in one versioned "
            "file cited by its sha256."
        ),
    )
    actions = parser.add_subparsers(dest="reference_command", metavar="ACTION", required=True)

    build = actions.add_parser(
        "build",
        help="compute reference statistics from an EmoSet index (data prepare) and the EmoSet images",
        description=(
            "Read every indexed image of --split once (each checked against its sha256 in the index), run the "
            "pinned Inception on it (features cached, so an interrupted build resumes) and write the statistics "
            "to --out atomically. About 430 MB for the 2048-d Inception."
        ),
    )
    build.add_argument("--index", type=Path, required=True, metavar="DIR", help="the --out folder of `data prepare`")
    build.add_argument("--emoset-root", type=Path, required=True, metavar="ROOT",
                       help="the EmoSet folder the index was prepared from")
    build.add_argument("--out", type=Path, required=True, metavar="FILE", help="the statistics file to write (.npz)")
    build.add_argument("--split", choices=("all", *DATA.splits), default="all",
                       help="which reference images: the whole EICG subset (all, default) or one split")
    build.add_argument("--protocol", choices=tuple(PROTOCOLS), default=DEFAULTS.protocol,
                       help=f"the protocol the statistics are for (default {DEFAULTS.protocol}); {PAPER_CODE}: "
                            "the released code's Inception preprocessing over every image of each emotion "
                            "(split all), no KID sample")
    build.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    build.add_argument("--device", default=DEFAULTS.device,
                       help=f"auto, cpu, cuda, cuda:1, ... (default {DEFAULTS.device})")
    build.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                       help=f"images decoded per batch (default {DEFAULTS.batch_size}); never changes a result")
    build.add_argument("--workers", "--num-workers", type=parse_num_workers, default=DEFAULTS.num_workers,
                       help=f"data-loader worker processes, or auto (default {DEFAULTS.num_workers}: the cores "
                            "but one on CUDA, 2 on the CPU)")
    build.add_argument("--seed", type=int, default=DEFAULT_SEED,
                       help=f"seed of the KID reference sample (default {DEFAULT_SEED})")
    build.add_argument("--no-cache", action="store_true", help="compute every feature again and cache nothing")
    build.add_argument("--print-registry-entry", action="store_true",
                       help="maintainers: then print the registry.toml entry that publishes the file as the "
                            "protocol's official statistics (see publish-entry)")
    add_weights_override(build)
    add_quiet_flag(build)
    add_json_flag(build)
    build.set_defaults(handler=run_build)

    show = actions.add_parser("show", help="print what a reference-statistics file holds and how it was made")
    show.add_argument("file", type=Path, metavar="FILE", help="a file written by `reference-stats build`")
    add_json_flag(show)
    show.set_defaults(handler=run_show)

    publish = actions.add_parser(
        "publish-entry",
        help="maintainers: print the registry.toml entry that publishes a statistics file as ref-stats-<protocol>",
        description="Check the file, then print its registry entry (full sha256, size, and how it was made: "
        "protocol, split, EmoSet index digest, extractor weights, software versions), ready to paste into "
        "emogen_bench/weights/registry.toml in place of the unpublished one.",
    )
    publish.add_argument("file", type=Path, metavar="FILE", help="a file written by `reference-stats build`")
    publish.add_argument("--url", action="append", default=[], metavar="URL",
                         help="where the file is published (repeat for mirrors); without it the entry has urls = []")
    publish.set_defaults(handler=run_publish_entry)


def describe(provenance: dict[str, Any]) -> str:
    """A readable summary of :meth:`ReferenceStats.provenance`."""
    extractor = provenance["extractor"]
    lines = [
        f"reference statistics  {provenance['path']}",
        f"sha256                {provenance['sha256']}",
        f"format                {provenance['format']} v{provenance['format_version']}, protocol "
        f"{provenance['protocol']}, emogen-bench {provenance['benchmark_version']}",
        f"index                 {provenance['index_digest']} (split {provenance['split']})",
        f"extractor             {extractor['name']} {extractor['cache_key']}"
        + ("  SMOKE: tiny in-code model, numbers mean nothing" if provenance["smoke"] else ""),
    ]
    lines += [f"  {artifact:<20}{digest}" for artifact, digest in extractor["artifacts"].items()]
    lines += [f"seed                  {provenance['seed']}", f"created               {provenance['created']}", ""]
    lines.append(f"{'emotion':<14}{'images':>9}{'KID sample':>12}")
    for emotion, count in provenance["counts"].items():
        lines.append(f"{emotion:<14}{count:>9}{provenance['kid_sample_counts'][emotion]:>12}")
    total_kid = sum(provenance["kid_sample_counts"].values())
    lines.append(f"{'total':<14}{sum(provenance['counts'].values()):>9}{total_kid:>12}")
    return "\n".join(lines) + "\n"


def run_build(args: argparse.Namespace) -> int:
    """Handler of ``reference-stats build``: weights first (a missing one fails before any image is read)."""
    from emogen_bench.cache import FeatureCache
    from emogen_bench.distributed import barrier, process_group, world_from_env
    from emogen_bench.features import build_extractors
    from emogen_bench.reference_stats import build_reference_stats, check_split, fill_reference_cache_for_rank
    from emogen_bench.weights import open_store

    check_split(args.split, args.protocol)
    check_device(args.device)
    check_seed(args.seed)
    world = world_from_env()
    # before any work: not a folder, device or link, not inside the data it reads, not replaced unless asked
    args.out = check_output_file(args.out, overwrite=args.overwrite,
                                 inputs={"the EmoSet folder": args.emoset_root})  # fmt: skip
    store = open_store(args.weights_override)
    extractor = build_extractors(["inception"], store, protocol=args.protocol)["inception"]
    if world.size > 1:  # each rank its share of the features into the shared cache; then rank 0 builds
        with process_group(world):
            fill_reference_cache_for_rank(
                args.index, args.emoset_root, extractor=extractor, world=world, split=args.split,
                cache=FeatureCache(enabled=not args.no_cache), batch_size=args.batch_size, num_workers=args.workers,
                device=args.device, show_progress=not args.quiet,
            )  # fmt: skip
            barrier(world)
        if not world.is_main:
            return int(ExitCode.OK)
    stats = build_reference_stats(
        args.index,
        args.emoset_root,
        args.out,
        extractor=extractor,
        split=args.split,
        cache=FeatureCache(enabled=not args.no_cache),
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=world.device(args.device),
        seed=args.seed,
        show_progress=not args.quiet,
        overwrite=args.overwrite,
        protocol=args.protocol,
    )
    entry = None
    if args.print_registry_entry:
        from emogen_bench.reference_stats import registry_entry

        entry = registry_entry(args.out)
    if args.json:
        print_json({**stats.provenance(), **({"registry_entry": entry} if entry is not None else {})})
    else:
        sys.stdout.write(describe(stats.provenance()) + ("" if entry is None else "\n" + entry))
    return int(ExitCode.OK)


def run_show(args: argparse.Namespace) -> int:
    """Handler of ``reference-stats show``."""
    from emogen_bench.reference_stats import load_reference_stats

    provenance = load_reference_stats(args.file).provenance()
    if args.json:
        print_json(provenance)
    else:
        sys.stdout.write(describe(provenance))
    return int(ExitCode.OK)


def run_publish_entry(args: argparse.Namespace) -> int:
    """Handler of ``reference-stats publish-entry``: the TOML entry on stdout."""
    from emogen_bench.reference_stats import registry_entry

    sys.stdout.write(registry_entry(args.file, urls=args.url))
    return int(ExitCode.OK)
