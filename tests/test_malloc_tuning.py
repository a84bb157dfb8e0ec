"""glibc malloc tuning (issue 16): the command's process keeps large freed blocks in its heap; importing the library
or calling ``main`` with an argument list leaves the allocator alone.

Each case runs in a new interpreter and reads its real ``/proc/self/maps`` and ``getrusage`` while a 256 MB numpy
array is allocated, freed and allocated again: untuned, glibc serves it with an anonymous mmap of its own (and the
second allocation faults its pages in afresh); tuned, it comes from the heap and the second one reuses the pages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emogen_bench.cli.malloc import ENVIRONMENT_VARIABLE, glibc_version, tuning_enabled

pytestmark = pytest.mark.skipif(
    glibc_version() is None or not Path("/proc/self/maps").is_file(), reason="glibc and /proc are needed"
)

BLOCK = 256 << 20

PROBE = f"""
import json, resource, sys
import numpy as np

def big_anonymous_maps():
    found = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if len(fields) == 5 and end - start >= {BLOCK}:  # no path: anonymous, not [heap]
                found.append(end - start)
    return found

mode = sys.argv[1]
if mode == "tune":
    from emogen_bench.cli.malloc import tune_malloc
    applied = tune_malloc()
elif mode == "import":
    import emogen_bench, emogen_bench.cli, emogen_bench.cli.evaluate
    applied = None
else:  # "main" runs the command as the program; "main-argv" calls it with an argument list
    from emogen_bench.cli import main
    sys.argv = ["emogen-bench", "--version"]
    try:
        main(None if mode == "main" else ["--version"])
    except SystemExit:
        pass
    applied = None
first = np.ones({BLOCK}, dtype=np.uint8)
during = big_anonymous_maps()
del first
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
second = np.ones({BLOCK}, dtype=np.uint8)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({{"applied": applied, "maps": during, "faults": faults}}))
"""


def _probe(mode: str, **environ: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key != ENVIRONMENT_VARIABLE} | environ
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True, timeout=120
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tuned_process_serves_a_large_block_from_the_heap_and_reuses_it() -> None:
    untuned = _probe("main", **{ENVIRONMENT_VARIABLE: "0"})
    tuned = _probe("tune")
    assert tuned["applied"] is True
    assert tuned["maps"] == []
    assert [size for size in untuned["maps"] if size >= BLOCK], untuned
    # Page faults are counted, not timed: the untuned second block is new mmapped memory, the tuned one is reused.
    assert tuned["faults"] * 4 < untuned["faults"], (tuned, untuned)


def test_the_command_run_as_a_program_is_tuned() -> None:
    assert _probe("main")["maps"] == []


@pytest.mark.parametrize("mode", ["import", "main-argv"])
def test_importing_or_calling_with_arguments_leaves_the_allocator_alone(mode: str) -> None:
    assert _probe(mode)["maps"], "a 256 MB block should have its own anonymous mmap in an untuned process"


def test_the_environment_variable_switches_it_off() -> None:
    switched_off = _probe("tune", **{ENVIRONMENT_VARIABLE: "0"})
    assert switched_off["applied"] is False
    assert switched_off["maps"], "switched off, the block should have its own anonymous mmap"
    assert tuning_enabled({}) and tuning_enabled({ENVIRONMENT_VARIABLE: "1"})
    assert not any(tuning_enabled({ENVIRONMENT_VARIABLE: word}) for word in ("0", "false", "No", " off "))
