"""What an ``emogen-bench evaluate`` process imports before it needs it (issue 16), read from ``sys.modules`` of a
fresh interpreter.

The plugin packages (``leaderboard``, ``reference``, ``baselines``, registered through the
``emogen_bench.commands`` entry points) only add other subcommands, so parsing a built-in command imports none of
them; ``--help`` and an unknown command still see every command.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from emogen_bench.cli import _command_name

PLUGIN_PACKAGES = ("leaderboard", "reference", "baselines")
#: Modules the evaluate command needs only once it runs, never to import its CLI module or parse its arguments.
HEAVY = ("torch", "torchvision", "transformers", "lpips", "scipy", "pandas", "emogen_bench.models",
         "emogen_bench.features")  # fmt: skip


def _loaded_after(code: str) -> dict[str, bool]:
    """Which of the plugin packages and :data:`HEAVY` modules a fresh interpreter has after running ``code``."""
    probe = f"import json, sys\n{code}\nprint(json.dumps({{m: m in sys.modules for m in {PLUGIN_PACKAGES + HEAVY!r}}}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_evaluate_command_and_parsing_its_arguments_imports_no_plugin_and_nothing_heavy() -> None:
    loaded = _loaded_after(
        "import emogen_bench.cli.evaluate\nfrom emogen_bench.cli import build_parser\n"
        "build_parser(['evaluate', 'DIR']).parse_args(['evaluate', 'DIR'])"
    )
    assert [name for name, present in loaded.items() if present] == []


@pytest.mark.parametrize("argv", [None, [], ["--help"], ["--version"], ["leaderboard", "list"], ["evalute", "DIR"]])
def test_a_parser_for_anything_but_a_built_in_command_has_the_plugins(argv: list[str] | None) -> None:
    loaded = _loaded_after(f"from emogen_bench.cli import build_parser\nbuild_parser({argv!r})")
    assert all(loaded[package] for package in ("leaderboard", "reference", "baselines"))


def test_evaluate_help_is_complete_without_the_plugins() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom emogen_bench.cli import main\nmain(['evaluate', '--help'])\n"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: emogen-bench evaluate") and "--reference-stats" in result.stdout


def test_command_name() -> None:
    assert _command_name(["evaluate", "DIR"]) == "evaluate"
    assert _command_name(["--", "evaluate"]) == "evaluate"
    assert _command_name(["--help"]) is None and _command_name(None) is None and _command_name([]) is None
