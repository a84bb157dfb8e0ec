"""Options and output helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json``: print one machine-readable JSON document on stdout instead of a table."""
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON report on stdout")


def add_quiet_flag(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars, no chatter on stderr."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")


def add_weights_override(parser: argparse.ArgumentParser) -> None:
    """``--weights-override FILE``: redirect artifacts to local copies (TOML)."""
    parser.add_argument(
        "--weights-override",
        type=Path,
        metavar="FILE",
        help="TOML file redirecting artifacts to local copies: [artifacts.<id>] path = ..., sha256 = ...",
    )


def print_json(document: Any) -> None:
    """Write ``document`` as indented JSON to stdout."""
    json.dump(document, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
