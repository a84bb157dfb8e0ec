"""`emogen-bench data` (placeholder: being written)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` subcommand."""
    subparsers.add_parser("data", help="(not yet available)")
