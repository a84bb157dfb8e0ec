"""`emogen-bench weights list|fetch|verify|path`: the pinned weights on this machine."""

from __future__ import annotations

import argparse

from emogen_bench.cli.common import add_json_flag, add_quiet_flag, add_weights_override, print_json
from emogen_bench.errors import ExitCode, UsageError
from emogen_bench.weights.override import load_overrides
from emogen_bench.weights.registry import ArtifactSpec, load_registry
from emogen_bench.weights.store import WeightStore


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `weights` subcommand and its four actions."""
    parser = subparsers.add_parser(
        "weights",
        help="list, fetch, verify and locate the pinned model weights",
        description="The pinned weight artifacts: where they come from, whether they are here and intact.",
    )
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="every artifact: used by, loader, pin, size, whether it is here")
    add_json_flag(listing)
    add_weights_override(listing)
    listing.set_defaults(handler=run_list)

    fetch = actions.add_parser("fetch", help="download missing artifacts and verify their hashes")
    fetch.add_argument("ids", nargs="*", metavar="ID", help="artifact ids (see `weights list`)")
    fetch.add_argument("--all", action="store_true", help="every artifact (several GB: includes SD-1.5)")
    fetch.add_argument("--offline", action="store_true", help="never touch the network (also: EMOGEN_BENCH_OFFLINE=1)")
    fetch.add_argument("--force", action="store_true", help="move a corrupt cached file aside and download it again")
    add_quiet_flag(fetch)
    add_weights_override(fetch)
    fetch.set_defaults(handler=run_fetch)

    verify = actions.add_parser("verify", help="check local artifacts' hashes (exit 3 if any is missing or corrupt)")
    verify.add_argument("ids", nargs="*", metavar="ID", help="artifact ids (default: all)")
    add_json_flag(verify)
    add_weights_override(verify)
    verify.set_defaults(handler=run_verify)

    path = actions.add_parser("path", help="print the local path of a verified artifact")
    path.add_argument("id", metavar="ID")
    add_weights_override(path)
    path.set_defaults(handler=run_path)


def _store(args: argparse.Namespace, *, offline: bool | None = None) -> WeightStore:
    registry = load_registry()
    overrides = load_overrides(args.weights_override, registry)
    return WeightStore(offline=offline, overrides=overrides, registry=registry)


def format_size(size: int | None, *, approximate: bool = False) -> str:
    """Bytes as a short human figure (binary units); ``~`` marks a rough registry figure."""
    if size is None:
        return "?"
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    text = f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
    return ("~" if approximate else "") + text


def _size_text(spec: ArtifactSpec) -> str:
    return format_size(spec.size) if spec.size is not None else format_size(spec.approx_size, approximate=True)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def run_list(args: argparse.Namespace) -> int:
    """Print the registry with a cheap presence check (no hashing)."""
    store = _store(args)
    entries = []
    for spec in store.registry.artifacts:
        here = store.is_present(spec.id)
        overridden = store.overrides.get(spec.id) is not None
        entries.append((spec, here, "override" if overridden else ("yes" if here else "no")))
    if args.json:
        print_json(
            {
                "weights_dir": str(store.home),
                "artifacts": [
                    {
                        "id": spec.id,
                        "description": spec.description,
                        "used_by": list(spec.used_by),
                        "loader": spec.loader,
                        "pin": spec.pin,
                        "source": spec.source,
                        "size": spec.size,
                        "approx_size": spec.approx_size,
                        "license": spec.license,
                        "present": here,
                        "overridden": cached == "override",
                    }
                    for spec, here, cached in entries
                ],
            }
        )
        return int(ExitCode.OK)
    rows = [["ID", "USED BY", "LOADER", "PIN", "SIZE", "HERE"]]
    rows += [[s.id, ",".join(s.used_by), s.loader, s.pin, _size_text(s), cached] for s, _, cached in entries]
    print(_table(rows))
    print(f"\nweights folder: {store.home}  (`emogen-bench weights verify` checks the hashes)")
    return int(ExitCode.OK)


def run_fetch(args: argparse.Namespace) -> int:
    """Download and verify the named artifacts (or all)."""
    if args.all and args.ids:
        raise UsageError("give artifact ids or --all, not both")
    store = _store(args, offline=True if args.offline else None)
    ids = list(store.registry.ids) if args.all else args.ids
    if not ids:
        raise UsageError(f"name the artifacts to fetch, or --all; valid ids: {', '.join(store.registry.ids)}")
    for artifact in store.fetch(ids, show_progress=not args.quiet, force=args.force):
        label = "official" if artifact.official else "NOT official"
        if artifact.overridden:
            label += ", overridden"
        print(f"{artifact.id}: {artifact.path} ({label})")
    return int(ExitCode.OK)


def run_verify(args: argparse.Namespace) -> int:
    """Report the state of each artifact; exit 3 when any requested one is missing or corrupt."""
    store = _store(args)
    statuses = store.verify(args.ids or None)
    failed = any(status.failed for status in statuses)
    if args.json:
        print_json({"weights_dir": str(store.home), "ok": not failed, "artifacts": [s.to_dict() for s in statuses]})
    else:
        rows = [["ID", "STATE", "OFFICIAL"]]
        rows += [[s.id, s.state, "yes" if s.official else "no"] for s in statuses]
        print(_table(rows))
        for status in statuses:
            if status.state != "ok":
                print(f"\n{status.id} ({status.state}): {status.detail}")
    return int(ExitCode.WEIGHTS if failed else ExitCode.OK)


def run_path(args: argparse.Namespace) -> int:
    """Print the local path of a verified artifact (exit 3 with the reason when it is not usable)."""
    print(_store(args).path(args.id))
    return int(ExitCode.OK)
