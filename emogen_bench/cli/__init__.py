"""The ``emogen-bench`` command: a thin face over the Python API.

Each subcommand lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``handler``; a handler takes the parsed
arguments and returns an exit code.  The packages built on the benchmark
(``leaderboard``, ``reference``, ``baselines``) add their subcommands the same
way through the ``emogen_bench.commands`` entry-point group, so this package
never imports them.  User errors (:class:`BenchError`) become a
one-line message and their exit code; anything else is reported as a bug.

Start-up stays light (``emogen-bench --help`` imports no torch): a ``register``
imports only what its parser needs, and a subcommand whose options come from
heavy modules hands its builder to :func:`defer_arguments`, which runs it only
when that subcommand is parsed or its help is shown.  A closed standard output
(``emogen-bench weights list | head -1``) ends the command quietly with
:attr:`ExitCode.BROKEN_PIPE`, as a process killed by SIGPIPE would.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from emogen_bench import __version__
from emogen_bench.errors import BenchError, ExitCode
from emogen_bench.task import PROTOCOL

#: Entry-point group through which other packages add ``emogen-bench`` subcommands.
COMMANDS_GROUP = "emogen_bench.commands"
#: Modules of the ``generate`` extra (pyproject.toml): training and generation need them, scoring does not.
GENERATE_EXTRA_MODULES = frozenset({"diffusers", "accelerate", "safetensors"})
ArgumentsBuilder = Callable[[argparse.ArgumentParser], None]


class CommandParser(argparse.ArgumentParser):
    """An argument parser that can add some of its arguments when it is first used (parsed, or its help or usage
    shown) rather than when it is built: see :func:`defer_arguments`.  Subparsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deferred: list[ArgumentsBuilder] = []

    def complete(self) -> None:
        """Run the deferred builders, once each, in the order they were given."""
        while self.deferred:
            self.deferred.pop(0)(self)

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.complete()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.complete()
        return super().format_usage()

    def format_help(self) -> str:
        self.complete()
        return super().format_help()


def defer_arguments(parser: argparse.ArgumentParser, build: ArgumentsBuilder) -> None:
    """Have ``build(parser)`` add ``parser``'s arguments when the subcommand is used, not at start-up.

    For a subcommand whose options (defaults, choices) come from modules that import torch: ``emogen-bench
    --help`` and the other subcommands then never import them.  A plain :class:`argparse.ArgumentParser` (a
    test's, another program's) gets its arguments at once.
    """
    if isinstance(parser, CommandParser):
        parser.deferred.append(build)
    else:
        build(parser)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: every subcommand registered, or, when ``argv`` (the arguments it is built to parse)
    names one of the benchmark's own commands, only those.

    The plugins' commands (:func:`plugin_commands`) cannot take part in parsing a built-in command's arguments, so
    their modules (``leaderboard``, ``reference``, ``baselines``) are then not imported.
    """
    from emogen_bench.cli import cache, data, demo, evaluate, reference_stats, report, validate, weights

    parser = CommandParser(
        prog="emogen-bench",
        description=(
            "Benchmark for Emotional Image Content Generation (EICG): validate and score a folder "
            f"of generated images, one sub-folder per emotion. Protocol {PROTOCOL}."
        ),
    )
    parser.add_argument("--version", action="version", version=f"emogen-bench {__version__} ({PROTOCOL})")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, validate, evaluate, report, reference_stats, data, weights, cache):
        module.register(subparsers)
    if _command_name(argv) not in subparsers.choices:
        for register in plugin_commands():
            register(subparsers)
    return parser


def _command_name(argv: Sequence[str] | None) -> str | None:
    """The subcommand ``argv`` names: its first argument that is not an option (the top-level options, ``--help``
    and ``--version``, take no value); None without one, or without ``argv``."""
    return next((argument for argument in argv or () if not argument.startswith("-")), None)


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
    """Entry point of the console script; returns the process exit code.

    Run as the program (``argv`` None: the arguments are the process's own), it first tunes glibc's allocator for
    this process (:mod:`emogen_bench.cli.malloc`); called with an argument list (a test, another program), it
    leaves the host process's allocator alone.
    """
    if argv is None:
        from emogen_bench.cli.malloc import tune_malloc

        tune_malloc()
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        # --help or --version went to stdout; argparse drops a write that fails, so a reader gone by now means the
        # text was lost, and that ends quietly like any closed pipe.  A usage error (stderr) keeps its status.
        if not _flush_stdout() or (stop.code in (0, None) and stdout_reader_gone()):
            return _broken_pipe_exit()
        raise
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise
        return _broken_pipe_exit()
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return int(ExitCode.USAGE) if _flush_stdout() else _broken_pipe_exit()
    try:
        code = int(handler(args))
        sys.stdout.flush()  # a closed pipe shows here, not in Python's own flush at exit
        return code
    except BenchError as error:
        print(f"emogen-bench: error: {error}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        print("emogen-bench: interrupted; nothing was left half-written.", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the last line of defence, reported as a bug
        if isinstance(error, BrokenPipeError) and stdout_reader_gone():
            return _broken_pipe_exit()
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
        if os.environ.get("EMOGEN_BENCH_DEBUG"):
            raise
        return int(ExitCode.INTERNAL)


def stdout_reader_gone() -> bool:
    """Whether standard output is a pipe (or socket) whose reading end is closed: its writing end polls as an error.

    A broken pipe elsewhere (an output file that is a FIFO whose reader left) is not this, and stays an error.
    """
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an in-memory stream, or closed
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _flush_stdout() -> bool:
    """Flush standard output; False when its reader is gone (the flush then failed with a broken pipe)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise
        return False
    except (AttributeError, ValueError):  # no stdout, or a closed one: nothing to flush
        pass
    return True


def _broken_pipe_exit() -> int:
    """Whoever read standard output stopped (``| head -1``, ``| true``): the ordinary end of a pipeline, so no
    message and no traceback.  Standard output is pointed at /dev/null first, because Python flushes it again at
    exit and would fail a second time (Python's documentation on SIGPIPE, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
    return ExitCode.BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
