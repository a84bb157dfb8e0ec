"""Errors a user can act on, each mapped to a distinct process exit code.

The CLI catches :class:`BenchError` and prints its message; anything else is a
bug and is reported as such (exit code 70), never as a bare traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of ``emogen-bench``; stable, documented in the README."""

    OK = 0
    INVALID = 1  # the input (a submission, a results file) failed validation
    USAGE = 2  # wrong arguments, wrong folders, refused to overwrite
    WEIGHTS = 3  # a weight file is missing, corrupt or has the wrong hash
    DATA = 4  # the EmoSet folder is unreadable or has problems (with --strict)
    INTERRUPTED = 130  # Ctrl-C; partial outputs are left under temporary names only
    BROKEN_PIPE = 141  # the reader of the output went away (128 + SIGPIPE); nothing is printed
    INTERNAL = 70  # a bug: please report it


class BenchError(Exception):
    """Base of every error the user can fix; ``exit_code`` says which kind."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(BenchError):
    """Bad arguments, a path that is not what it should be, a refused overwrite."""

    exit_code = ExitCode.USAGE


class InvalidInputError(BenchError):
    """The input exists but does not meet the protocol (see its report)."""

    exit_code = ExitCode.INVALID


class WeightsError(BenchError):
    """A weight artifact is missing, corrupt, or cannot be fetched."""

    exit_code = ExitCode.WEIGHTS


class DataError(BenchError):
    """The EmoSet folder cannot be read as EmoSet."""

    exit_code = ExitCode.DATA
