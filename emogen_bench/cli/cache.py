"""``emogen-bench cache info|prune``: what the feature cache holds, and removing part or all of it."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from emogen_bench.cli.common import add_json_flag, print_json
from emogen_bench.errors import ExitCode, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cache`` subcommand and its actions."""
    parser = subparsers.add_parser(
        "cache",
        help="show or prune the feature cache (per-image model outputs, LPIPS summaries, metric values)",
        description="The feature cache under $EMOGEN_BENCH_HOME/features: one entry per image and extractor, "
        "keyed by the image's sha256 and the model's identity. Removing entries never changes a result; "
        "they are computed again when needed.",
    )
    actions = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)

    info = actions.add_parser("info", help="size, entries per extractor, summaries, partial writes")
    _add_root(info)
    add_json_flag(info)
    info.set_defaults(handler=run_info)

    prune = actions.add_parser(
        "prune",
        help="remove entries by age, by extractor, or all of them",
        description="Remove the cache entries matching every criterion given (--older-than and --extractor "
        "combine), or --all of them. Age is the time since an entry was written.",
    )
    _add_root(prune)
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="entries written more than DAYS days ago")
    prune.add_argument(
        "--extractor", metavar="NAME",
        help="that extractor's feature entries (names as `cache info` lists them: inception, clip, semantic, "
        "emoset; lpips for its per-emotion summaries)",
    )  # fmt: skip
    prune.add_argument("--all", action="store_true", help="every entry (older cache layouts included)")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    add_json_flag(prune)
    prune.set_defaults(handler=run_prune)


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", type=Path, metavar="DIR", help="the cache folder (default: $EMOGEN_BENCH_HOME/features)"
    )


def _root(args: argparse.Namespace) -> Path:
    """The cache folder: ``--root`` or the default; one that exists but is not a folder is a usage error."""
    from emogen_bench.cache import default_cache_root

    root = args.root if args.root is not None else default_cache_root()
    if root.exists() and not root.is_dir():
        raise UsageError(f"--root {root} is not a folder; give the feature cache folder")
    return root


def human_bytes(size: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if size < 1024:
        return f"{size} B"
    exponent = min(int(math.log(size, 1024)), 4)
    return f"{size / 1024**exponent:.1f} {'KMGT'[exponent - 1]}iB"


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in [header, *rows]]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def render_info(document: dict[str, Any]) -> str:
    """The inventory as a readable report: totals, then a table of what is there."""
    from emogen_bench.cache import SUMMARY_KINDS

    lines = [f"feature cache {document['root']} (layout {document['layout']})",
             f"total: {human_bytes(document['bytes'])} in {document['entries']} files"]  # fmt: skip
    rows = []
    for name, tally in document["extractors"].items():
        rows.append([f"features: {name}", str(tally["entries"]), human_bytes(tally["bytes"]), str(tally["models"]),
                     (tally["oldest"] or "-")[:10], (tally["newest"] or "-")[:10]])  # fmt: skip
    for kind, tally in document["summaries"].items():
        rows.append([f"summaries: {SUMMARY_KINDS.get(kind, kind)}", str(tally["entries"]), human_bytes(tally["bytes"]),
                     "-", (tally["oldest"] or "-")[:10], (tally["newest"] or "-")[:10]])  # fmt: skip
    for label, tally in (("partial writes (interrupted)", document["partial"]), ("other files", document["other"]),
                         *((f"old layout {name} (unused)", t) for name, t in document["old_layouts"].items())):
        if tally["entries"]:
            rows.append([label, str(tally["entries"]), human_bytes(tally["bytes"]), "-",
                         (tally["oldest"] or "-")[:10], (tally["newest"] or "-")[:10]])  # fmt: skip
    if not rows:
        return "\n".join([*lines, "the cache is empty"])
    lines += ["", *_grid(["what", "entries", "size", "models", "oldest", "newest"], rows)]
    return "\n".join(lines)


def run_info(args: argparse.Namespace) -> int:
    """Print what the cache holds."""
    from emogen_bench.cache import inventory

    document = inventory(_root(args))
    if args.json:
        print_json(document)
    else:
        print(render_info(document))
    return int(ExitCode.OK)


def _check_extractor(name: str, root: Path) -> None:
    """Refuse an extractor name that is neither in the cache nor one of the benchmark's (a typo removes nothing)."""
    from emogen_bench.cache import inventory

    cached = set(inventory(root)["extractors"])
    if name in cached:
        return
    from emogen_bench.features import ARTIFACTS_BY_EXTRACTOR  # imports torch: only for a name the cache lacks

    known = sorted(cached | set(ARTIFACTS_BY_EXTRACTOR))
    if name not in known:
        raise UsageError(f"--extractor {name!r} is not an extractor; known: {', '.join(known)}")


def run_prune(args: argparse.Namespace) -> int:
    """Remove the entries asked for; 0, or 1 when some file could not be removed."""
    from emogen_bench.cache import prune

    if not args.all and args.older_than is None and args.extractor is None:
        raise UsageError("say what to prune: --older-than DAYS, --extractor NAME (they combine) or --all")
    if args.all and (args.older_than is not None or args.extractor is not None):
        raise UsageError("--all removes every entry; it does not combine with --older-than or --extractor")
    if args.older_than is not None and not (math.isfinite(args.older_than) and args.older_than >= 0):
        raise UsageError(f"--older-than must be a number of days, 0 or more (got {args.older_than})")
    root = _root(args)
    if args.extractor is not None:
        _check_extractor(args.extractor, root)
    report = prune(root, older_than_days=args.older_than, extractor=args.extractor, everything=args.all,
                   dry_run=args.dry_run)  # fmt: skip
    if args.json:
        print_json(report)
    else:
        removed = report["removed"]
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {removed['entries']} files ({human_bytes(removed['bytes'])}) from {report['root']}")
        if report["by_kind"]:
            rows = [[key.replace(":", ": "), str(t["entries"]), human_bytes(t["bytes"])]
                    for key, t in report["by_kind"].items()]  # fmt: skip
            print("\n".join(["", *_grid(["what", "files", "size"], rows)]))
        for problem in report["failed"]:
            print(f"not removed: {problem}")
    return int(ExitCode.INVALID if report["failed"] else ExitCode.OK)
