"""``emogen-bench leaderboard add|build|list``: entries in, tables and the site out.

Registered through the ``emogen_bench.commands`` entry point (pyproject.toml),
so ``emogen_bench`` never imports this package.  ``build`` and ``list`` read
``leaderboard/entries`` in the current folder when it is there (a checkout),
else the entries installed with the package (:mod:`leaderboard.resources`);
``add`` writes to ``leaderboard/entries`` and ``build`` to ``leaderboard/site``,
both relative to the current folder, never into the installed package.  Pass
``--entries`` and ``--out`` to choose.  The entries and tables modules are
imported by the handlers, so registering the command stays light.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emogen_bench.errors import ExitCode, UsageError
from emogen_bench.protocols import PROTOCOLS
from leaderboard.resources import REPOSITORY_ENTRIES, entries_folder, entries_source

#: Where ``add`` writes (relative to the current folder); ``build`` and ``list`` read :func:`entries_folder`.
DEFAULT_ENTRIES = REPOSITORY_ENTRIES
DEFAULT_SITE = Path("leaderboard/site")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``leaderboard`` subcommand and its ``add``, ``build`` and ``list`` subcommands."""
    parser = subparsers.add_parser(
        "leaderboard",
        help="add a results JSON to the leaderboard; render it as Markdown, CSV and a static site",
        description=(
            "Leaderboard entries are JSON files under ENTRIES/<protocol>/<slug>.json (default: build and list read "
            f"{DEFAULT_ENTRIES} in the current folder when it is there, else the entries installed with "
            f"emogen-bench; add writes to {DEFAULT_ENTRIES} in the current folder). Each protocol "
            "gets its own ranking; numbers under different protocols are never compared."
        ),
    )
    parser.set_defaults(handler=lambda args: _help(parser))
    commands = parser.add_subparsers(dest="leaderboard_command", metavar="COMMAND")

    add = commands.add_parser(
        "add",
        help="turn a results JSON of an official run into a leaderboard entry",
        description=(
            "Check the results (schema, known protocol, not a smoke run, every weight official, exactly 1000 "
            "images for each of the 8 emotions, every metric of the protocol; the manifest, image count, counts "
            "and submission digest agree; artifact and reference-statistics hashes checked against the weights "
            "registry, unpinned ones marked in the entry; verified only with every weight and the reference "
            "statistics pinned) and store the entry as ENTRIES/<protocol>/<id>.json. A different existing entry "
            "is never replaced without --replace."
        ),
    )
    add.add_argument("results", type=Path, metavar="RESULTS", help="the results JSON written by emogen-bench evaluate")
    add.add_argument("--method", required=True, metavar="NAME", help="the method's name as the table shows it")
    add.add_argument("--paper", metavar="URL", help="link to the method's paper (an http:// or https:// URL)")
    add.add_argument("--code", metavar="URL", help="link to the method's code (an http:// or https:// URL)")
    add.add_argument(
        "--status",
        choices=("self-reported", "verified"),
        default="self-reported",
        help="verified: the maintainers re-ran evaluate on the submitted images (needs --verified-by); "
        "default self-reported",
    )
    add.add_argument("--verified-by", metavar="NAME", help="who re-ran evaluate (with --status verified)")
    add.add_argument("--id", dest="slug", metavar="SLUG", help="the entry's slug (default: from --method)")
    add.add_argument("--notes", metavar="TEXT", help="a note shown with the entry")
    _entries_option(add, reading=False)
    add.add_argument("--replace", action="store_true", help="replace an existing, different entry with the same id")
    add.set_defaults(handler=run_add)

    build = commands.add_parser(
        "build",
        help="render the entries as leaderboard.md, leaderboard.csv and index.html",
        description="Render every entry into OUT/leaderboard.md, OUT/leaderboard.csv and the static site "
        "OUT/index.html (generated files: they are replaced on every build).",
    )
    _entries_option(build, reading=True)
    build.add_argument(
        "--out", type=Path, default=DEFAULT_SITE, metavar="DIR", help=f"output folder (default {DEFAULT_SITE})"
    )
    build.set_defaults(handler=run_build)

    listing = commands.add_parser("list", help="print the leaderboard tables (Markdown) on stdout")
    _entries_option(listing, reading=True)
    listing.add_argument("--protocol", choices=tuple(PROTOCOLS), help="only this protocol's table")
    listing.set_defaults(handler=run_list)


def _entries_option(parser: argparse.ArgumentParser, *, reading: bool) -> None:
    """``--entries``: read from the checkout's folder or the installed copy; written only relative to the current
    folder."""
    if reading:
        where = (f"{DEFAULT_ENTRIES} in the current folder when it is there, else the entries installed with "
                 f"emogen-bench; {entries_source()}")  # fmt: skip
    else:
        where = f"{DEFAULT_ENTRIES}, relative to the current folder"
    parser.add_argument(
        "--entries",
        type=Path,
        default=None if reading else DEFAULT_ENTRIES,
        metavar="DIR",
        help=f"the entries folder (default {where})",
    )


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return int(ExitCode.USAGE)


def run_add(args: argparse.Namespace) -> int:
    """Check the options, then the results; write the entry; 0 when written or already there."""
    from emogen_bench.results import read_results
    from leaderboard.entries import check_entry_options, entry_from_results, store_entry

    check_entry_options(
        method=args.method, paper=args.paper, code=args.code, verified_by=args.verified_by, slug=args.slug,
        notes=args.notes,
    )  # fmt: skip
    results = read_results(args.results)
    entry = entry_from_results(
        results,
        method=args.method,
        paper=args.paper,
        code=args.code,
        status=args.status,
        verified_by=args.verified_by,
        slug=args.slug,
        notes=args.notes,
        source=args.results,
    )
    outcome = store_entry(entry, args.entries, replace=args.replace)
    if outcome.action == "unchanged":
        print(f"{outcome.path} already holds this entry ({entry.id}); nothing to do")
    else:
        print(f"{outcome.action} {entry.id}: {outcome.path}")
    return int(ExitCode.OK)


def run_build(args: argparse.Namespace) -> int:
    """Write the Markdown, the CSV and the site; print each path."""
    from emogen_bench.fileio import write_atomic
    from leaderboard.entries import load_entries
    from leaderboard.site import render_site
    from leaderboard.tables import render_csv, render_markdown

    entries = load_entries(args.entries if args.entries is not None else entries_folder())
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder for leaderboard.md, leaderboard.csv and index.html")
    out.mkdir(parents=True, exist_ok=True)
    markdown = write_atomic(out / "leaderboard.md", render_markdown(entries))
    table = write_atomic(out / "leaderboard.csv", render_csv(entries))
    site = render_site([entry.document for entry in entries], out)
    for path in (markdown, table, site):
        print(path)
    return int(ExitCode.OK)


def run_list(args: argparse.Namespace) -> int:
    """Print the tables of every protocol, or of ``--protocol``."""
    from leaderboard.entries import load_entries
    from leaderboard.tables import render_markdown

    entries = load_entries(args.entries if args.entries is not None else entries_folder())
    if args.protocol is not None:
        entries = [entry for entry in entries if entry.protocol == args.protocol]
    print(render_markdown(entries), end="")
    return int(ExitCode.OK)
