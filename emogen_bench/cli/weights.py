"""`emogen-bench weights` (placeholder: being written)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `weights` subcommand."""
    subparsers.add_parser("weights", help="(not yet available)")
