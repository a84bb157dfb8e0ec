"""Where the leaderboard's entries and plans are: the repository's folders, else the copies installed with the package.

Run from a checkout, ``leaderboard/entries`` and ``leaderboard/plans`` (relative to the current folder) are used, so
edits there count at once. Anywhere else, e.g. after ``pip install emogen-bench``, the copies shipped inside the
``leaderboard`` package (package data, found through :mod:`importlib.resources`) are used. Nothing is ever
written to the installed copies: ``leaderboard add`` and ``leaderboard build`` write relative to the current folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from emogen_bench.errors import UsageError

#: The entries folder of a checkout, relative to the current folder.
REPOSITORY_ENTRIES = Path("leaderboard/entries")
#: The plans folder of a checkout, relative to the current folder.
REPOSITORY_PLANS = Path("leaderboard/plans")
PLAN_SUFFIX = ".toml"


def packaged_folder(name: str) -> Path:
    """The folder ``name`` (``entries`` or ``plans``) installed inside the ``leaderboard`` package.

    pip unpacks wheels, so the package lies on disk; a zipped install cannot hand out a folder path and is a
    :class:`UsageError` that says what to pass instead.
    """
    folder = resources.files("leaderboard") / name
    if not isinstance(folder, Path):
        raise UsageError(
            f"the leaderboard's {name} are installed inside an archive ({folder}); pass the folder explicitly "
            f"(e.g. --entries DIR, or a plan file's path)"
        )
    return folder


def entries_folder() -> Path:
    """The entries to read by default: ``leaderboard/entries`` in the current folder if it is there, else the
    installed copy."""
    return REPOSITORY_ENTRIES if REPOSITORY_ENTRIES.exists() else packaged_folder("entries")


def entries_source() -> str:
    """Which entries folder :func:`entries_folder` picks now, in words (for ``--help``)."""
    if REPOSITORY_ENTRIES.exists():
        return f"now {REPOSITORY_ENTRIES} in the current folder"
    return f"now the installed copy, {resources.files('leaderboard') / 'entries'}"


def plan_folders() -> list[Path]:
    """The folders searched for a plan given by name, in order: the current folder's ``leaderboard/plans``, then
    the installed copy."""
    folders = [REPOSITORY_PLANS] if REPOSITORY_PLANS.is_dir() else []
    return [*folders, packaged_folder("plans")]


def plans_source() -> str:
    """Where :func:`find_plan` looks a plan name up first, in words (for ``--help``)."""
    if REPOSITORY_PLANS.is_dir():
        return f"now {REPOSITORY_PLANS} in the current folder"
    return f"now the installed copy, {resources.files('leaderboard') / 'plans'}"


def plan_names() -> list[str]:
    """The names of the plans :func:`find_plan` accepts (``main``, ``smoke``, ...), sorted, without repeats."""
    return sorted({path.stem for folder in plan_folders() for path in folder.glob(f"*{PLAN_SUFFIX}")})


def find_plan(value: str | Path) -> Path:
    """The plan file that ``value`` names: a path when there is something at that path, else a plan name
    (``smoke`` or ``smoke.toml``) looked up in :func:`plan_folders`. An unknown name returns the path as given,
    so the caller's "does not exist" message names what the user typed."""
    path = Path(value)
    if path.exists() or path.is_symlink() or len(path.parts) != 1:
        return path
    name = path.name[: -len(PLAN_SUFFIX)] if path.name.endswith(PLAN_SUFFIX) else path.name
    for folder in plan_folders():
        candidate = folder / f"{name}{PLAN_SUFFIX}"
        if candidate.is_file():
            return candidate
    return path
