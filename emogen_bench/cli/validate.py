"""`emogen-bench validate` (placeholder: being written)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `validate` subcommand."""
    subparsers.add_parser("validate", help="(not yet available)")
