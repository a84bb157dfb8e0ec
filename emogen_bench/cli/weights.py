"""`emogen-bench weights list|fetch|verify|path|pin`: the pinned weights on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emogen_bench.cli.common import add_json_flag, add_quiet_flag, add_weights_override, print_json
from emogen_bench.errors import ExitCode, UsageError
from emogen_bench.weights.override import load_overrides
from emogen_bench.weights.registry import PURPOSES, ArtifactSpec, Registry, load_registry, packaged_registry_path
from emogen_bench.weights.store import FetchOutcome, WeightStore, resolved_size

#: What ``weights fetch`` without ids or ``--for`` fetches: the metric models (what ``evaluate`` needs).
DEFAULT_PURPOSE = "evaluate"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `weights` subcommand and its actions."""
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

    fetch = actions.add_parser(
        "fetch",
        help="download missing artifacts and verify their hashes (default: the metric models)",
        description="Fetch and verify each artifact, going on past a failure; a table of every outcome at the end "
        "(exit 3 if any failed).",
    )
    fetch.add_argument("ids", nargs="*", metavar="ID", help="artifact ids (see `weights list`)")
    fetch.add_argument(
        "--for",
        dest="purpose",
        choices=PURPOSES,
        help="what the artifacts are for: evaluate (the metric models, the default without ids), generate, train "
        "(what reference/ and baselines/ need), all (every artifact, several GB with SD-1.5)",
    )
    fetch.add_argument("--all", action="store_true", help="the same as --for all")
    fetch.add_argument("--registry", type=Path, metavar="FILE",
                       help="maintainers: fetch from this registry file instead of the package's (a new mirror, a "
                            "test server); the files go to the same weights folder")
    add_json_flag(fetch)
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

    pin = actions.add_parser(
        "pin",
        help="maintainers: fetch an artifact from every mirror, check they agree, write its sha256 into the registry",
        description="Download each file of the artifact from every URL in the registry, refuse (exit 3, registry "
        "untouched) unless all serve the same bytes, then write pin = \"sha256\", sha256 and size into the registry "
        "file in place (only those lines change).",
    )
    pin.add_argument("id", metavar="ID")
    pin.add_argument("--registry", type=Path, metavar="FILE",
                     help=f"the registry file to edit (default: the package's, {packaged_registry_path()})")
    add_quiet_flag(pin)
    pin.set_defaults(handler=run_pin)


def _store(args: argparse.Namespace, *, offline: bool | None = None) -> WeightStore:
    path = getattr(args, "registry", None)
    registry = load_registry() if path is None else Registry.from_toml(path)
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


def fetch_selection(registry: Registry, ids: list[str], purpose: str | None, every: bool) -> list[str]:
    """The ids to fetch: those named, or a purpose's (``--all`` is ``--for all``; neither: the metric models)."""
    if every:
        if purpose not in (None, "all"):
            raise UsageError(f"--all and --for {purpose} contradict each other; give one")
        purpose = "all"
    if ids and purpose is not None:
        raise UsageError(f"give artifact ids or --for {purpose}, not both")
    for artifact_id in ids:
        registry.get(artifact_id)  # an unknown id is a usage error before anything is downloaded
    return ids or list(registry.for_purpose(purpose or DEFAULT_PURPOSE))


def _outcome_row(outcome: FetchOutcome) -> list[str]:
    resolved = outcome.resolved
    if resolved is None:
        return [outcome.id, outcome.outcome, outcome.reason]
    labels = ["official" if resolved.official else "NOT official"]
    if not resolved.pinned:
        labels.append("unpinned")
    if resolved.overridden:
        labels.append("overridden")
    detail = f"{format_size(resolved_size(resolved))}  {resolved.path} ({', '.join(labels)})"
    return [outcome.id, outcome.outcome, detail]


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch and verify each selected artifact, past failures; a table of every outcome; exit 3 if any failed."""
    store = _store(args, offline=True if args.offline else None)
    ids = fetch_selection(store.registry, args.ids, args.purpose, args.all)
    outcomes = store.fetch_each(ids, show_progress=not args.quiet and not args.json, force=args.force)
    failed = [o for o in outcomes if o.outcome == "failed"]
    if args.json:
        print_json({"weights_dir": str(store.home), "ok": not failed, "artifacts": [o.to_dict() for o in outcomes]})
    else:
        print(_table([["ID", "OUTCOME", "BYTES, PATH OR REASON"], *(_outcome_row(o) for o in outcomes)]))
        counts = {kind: sum(o.outcome == kind for o in outcomes) for kind in ("ok", "failed", "skipped")}
        print(f"\n{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped")
    for outcome in failed:  # the reasons on stderr too, like every other error
        print(f"emogen-bench: error: {outcome.id}: {outcome.reason}", file=sys.stderr)
    return int(ExitCode.WEIGHTS if failed else ExitCode.OK)


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


def run_pin(args: argparse.Namespace) -> int:
    """Pin an artifact from every mirror into the registry file (exit 3, file untouched, when mirrors disagree)."""
    from emogen_bench.weights.pin import fetch_every_mirror, write_pins

    path = args.registry if args.registry is not None else packaged_registry_path()
    spec = Registry.from_toml(path).get(args.id)
    pins = fetch_every_mirror(spec, show_progress=not args.quiet)
    write_pins(path, spec.id, pins)
    for pin in pins:
        urls = ", ".join(copy.url for copy in pin.copies)
        print(f"{spec.id}/{pin.name}: sha256 {pin.sha256}, {pin.size} bytes, identical from {len(pin.copies)} "
              f"URL(s): {urls}")
    print(f"pinned {spec.id} in {path} (pin = \"sha256\"); note the change in CHANGELOG.md")
    return int(ExitCode.OK)


def run_path(args: argparse.Namespace) -> int:
    """Print the local path of a verified artifact (exit 3 with the reason when it is not usable)."""
    print(_store(args).path(args.id))
    return int(ExitCode.OK)
