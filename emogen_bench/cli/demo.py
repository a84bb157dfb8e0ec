"""`emogen-bench demo` (placeholder: being written)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` subcommand."""
    subparsers.add_parser("demo", help="(not yet available)")
