"""The public API that reference/, baselines/ and leaderboard/ build on, and the layering rule."""

from __future__ import annotations

import ast
from pathlib import Path

import emogen_bench

PACKAGE = Path(emogen_bench.__file__).parent


def test_every_public_name_resolves() -> None:
    for name in emogen_bench.__all__:
        assert getattr(emogen_bench, name) is not None, name


def test_benchmark_never_imports_the_method_packages() -> None:
    forbidden = {"reference", "baselines", "leaderboard"}
    offenders = []
    for source in PACKAGE.rglob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{source.relative_to(PACKAGE)}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert offenders == []


def _imported_modules(source: Path) -> list[str]:
    """Every absolute module name ``source`` imports (``import a.b`` and ``from a.b import c``), at any depth."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_command_line_modules_are_imported_by_no_library_module() -> None:
    """The CLIs are thin faces: steps live in library modules, so no CLI is imported by another module (issue 14).

    ``reference/smoke.py`` and ``leaderboard/regenerate`` once imported their steps from ``reference/cli.py``,
    which imported the smoke run back: a circle through the command line.
    """
    root = PACKAGE.parent
    clis = {"reference.cli", "baselines.cli", "leaderboard.cli"}
    offenders = []
    for package in ("reference", "baselines", "leaderboard"):
        for source in (root / package).rglob("*.py"):
            module = ".".join(source.relative_to(root).with_suffix("").parts)
            offenders += [f"{module}: {name}" for name in _imported_modules(source) if name in clis - {module}]
    assert offenders == []


def test_the_readme_lists_every_quirk_of_the_compatibility_protocol() -> None:
    from emogen_bench.protocols import PROTOCOLS

    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    quirks = [quirk for protocol in PROTOCOLS.values() for quirk in protocol.quirks]
    assert quirks
    missing = [quirk.markdown() for quirk in quirks if quirk.markdown() not in readme]
    assert missing == []
