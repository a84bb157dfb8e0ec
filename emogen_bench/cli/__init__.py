"""The ``emogen-bench`` command: a thin face over the Python API.

Each subcommand lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``handler``; a handler takes the parsed
arguments and returns an exit code.  The packages built on the benchmark
(``leaderboard``, ``reference``, ``baselines``) add their subcommands the same
way through the ``emogen_bench.commands`` entry-point group, so this package
never imports them.  User errors (:class:`BenchError`) become a
one-line message and their exit code; anything else is reported as a bug.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from emogen_bench import __version__
from emogen_bench.errors import BenchError, ExitCode
from emogen_bench.task import PROTOCOL

#: Entry-point group through which other packages add ``emogen-bench`` subcommands.
COMMANDS_GROUP = "emogen_bench.commands"
#: Modules of the ``generate`` extra (pyproject.toml): training and generation need them, scoring does not.
GENERATE_EXTRA_MODULES = frozenset({"diffusers", "accelerate", "safetensors"})


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every subcommand registered."""
    from emogen_bench.cli import data, demo, evaluate, reference_stats, validate, weights

    parser = argparse.ArgumentParser(
        prog="emogen-bench",
        description=(
            "Benchmark for Emotional Image Content Generation (EICG): validate and score a folder "
            f"of generated images, one sub-folder per emotion. Protocol {PROTOCOL}."
        ),
    )
    parser.add_argument("--version", action="version", version=f"emogen-bench {__version__} ({PROTOCOL})")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, validate, evaluate, reference_stats, data, weights):
        module.register(subparsers)
    for register in plugin_commands():
        register(subparsers)
    return parser


def plugin_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """The ``register`` functions of the ``emogen_bench.commands`` entry points, sorted by name.

    A plugin that cannot be imported is skipped with a warning on stderr: the
    benchmark's own commands must keep working whatever else is installed.
    """
    registers = []
    for entry in sorted(metadata.entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            registers.append(entry.load())
        except Exception as error:  # noqa: BLE001 - a broken plugin must not take the CLI down
            print(f"emogen-bench: warning: command {entry.name!r} ({entry.value}) not loaded: {error}", file=sys.stderr)
    return registers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return int(ExitCode.USAGE)
    try:
        return int(handler(args))
    except BenchError as error:
        print(f"emogen-bench: error: {error}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        print("emogen-bench: interrupted; nothing was left half-written.", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the last line of defence, reported as a bug
        if isinstance(error, ModuleNotFoundError) and error.name in GENERATE_EXTRA_MODULES:
            print(
                f"emogen-bench: error: this command needs {error.name!r}, part of the 'generate' extra; install it "
                "with `pip install -e \".[generate]\"` (or `pip install \"emogen-bench[generate]\"`) and run it again",
                file=sys.stderr,
            )
            return int(ExitCode.USAGE)
        print(
            f"emogen-bench: internal error ({type(error).__name__}: {error}). This is a bug; please "
            "report it with the command you ran. Set EMOGEN_BENCH_DEBUG=1 for the traceback.",
            file=sys.stderr,
        )
        import os

        if os.environ.get("EMOGEN_BENCH_DEBUG"):
            raise
        return int(ExitCode.INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
