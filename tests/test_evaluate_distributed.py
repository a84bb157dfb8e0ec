"""Data-parallel ``evaluate`` under a real ``torchrun`` (2 CPU processes, gloo): the same numbers as one process.

Each rank extracts its share of the images (LPIPS: its share of the emotions)
into the shared feature cache; rank 0 then computes every metric from the
cache and writes the one results file.  Compared with the session's one-process
evaluation (``conftest.e2e_evaluation``) metric by metric, bit for bit: the
fixed model batches make an image's features independent of which other images
share its batch, which is what lets the images be dealt out to ranks.  The
thread count is not neutral on a CPU: with 1 thread per rank (torchrun's
default) LPIPS differs from a 2-thread run in the last bit (~1e-16 relative),
so the ranks here get this process's thread count.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import E2E_PER_EMOTION, E2EEvaluation, RealLayoutWeights

from emogen_bench.distributed import World, world_from_env
from emogen_bench.errors import ExitCode, UsageError
from emogen_bench.results import read_results

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def test_the_world_comes_from_the_launchers_environment() -> None:
    assert world_from_env({}) == World(0, 1, 0)
    assert world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    assert World(1, 3).shard(list(range(8))) == [1, 4, 7]
    assert World(0, 2).device("cpu") == "cpu" and World(0, 1).device("auto") == "auto"
    for bad in ({"RANK": "x", "WORLD_SIZE": "2"}, {"RANK": "2", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "0"}):
        with pytest.raises(UsageError):
            world_from_env(bad)


@pytest.mark.slow  # torchrun with two processes: CI runs it (.ci/run), `pytest -m slow` here
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun (part of torch) is not on PATH")
def test_torchrun_two_processes_give_the_one_process_results(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, e2e_reference: Path, real_layout_weights: RealLayoutWeights,
    tmp_path: Path,
) -> None:  # fmt: skip
    out = tmp_path / "results.json"
    home = tmp_path / "home"
    # torchrun gives each process 1 thread unless told otherwise; CPU kernels (oneDNN's AlexNet convolutions in
    # LPIPS) round differently with another thread count, so the ranks get this process's count: only the
    # sharding differs from the one-process run.
    threads = str(torch.get_num_threads())
    environment = {**os.environ, "EMOGEN_BENCH_HOME": str(home), "OMP_NUM_THREADS": threads}
    completed = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "emogen_bench", "evaluate",
         str(e2e_submission), "--per-emotion", str(E2E_PER_EMOTION), "--reference-stats", str(e2e_reference),
         "--weights-override", str(real_layout_weights.override), "--device", "cpu", "--workers", "0",
         "--quiet", "--format", "json", "--out", str(out)],
        capture_output=True, text=True, env=environment, timeout=600, check=False,
    )  # fmt: skip
    assert completed.returncode == ExitCode.OK, completed.stderr[-3000:]
    document = read_results(out)
    assert document["metrics"] == e2e_evaluation.result.to_dict()["metrics"]
    assert document["metrics_cached"] is False
    n = len(document["submission"]["manifest"])
    assert all(c == {"computed": 0, "cached": n} for c in document["features"].values())  # the ranks did the work
    assert len(list((home / "results").glob("*.json"))) == 0 and completed.stdout.count('"schema"') == 1
    cached = list((home / "features").rglob("*.npz"))
    assert len(cached) == n * 4  # inception, clip, semantic, emoset: each image once, by one rank or the other


@pytest.mark.slow  # torchrun with two processes: CI runs it (.ci/run), `pytest -m slow` here
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun (part of torch) is not on PATH")
def test_reference_statistics_built_by_two_processes_equal_one_process(
    real_layout_weights: RealLayoutWeights, tmp_path: Path
) -> None:
    from fake_emoset import make_fake_emoset

    from emogen_bench.data import prepare_emoset
    from emogen_bench.reference_stats import load_reference_stats

    make_fake_emoset(tmp_path / "emoset", per_split={"train": 2, "val": 1, "test": 1}, edge_cases=False, image_size=32)
    prepare_emoset(tmp_path / "emoset", tmp_path / "index", show_progress=False)
    options = ["reference-stats", "build", "--index", str(tmp_path / "index"), "--emoset-root",
               str(tmp_path / "emoset"), "--split", "all", "--weights-override", str(real_layout_weights.override),
               "--device", "cpu", "--workers", "0", "--quiet", "--json"]  # fmt: skip
    built = {}
    launchers = {"one": [sys.executable], "two": [str(TORCHRUN), "--standalone", "--nproc_per_node", "2"]}
    for name, launcher in launchers.items():
        environment = {**os.environ, "EMOGEN_BENCH_HOME": str(tmp_path / f"home-{name}"), "OMP_NUM_THREADS": "1"}
        completed = subprocess.run(
            [*launcher, "-m", "emogen_bench", *options, "--out", str(tmp_path / f"{name}.npz")],
            capture_output=True, text=True, env=environment, timeout=600, check=False,
        )  # fmt: skip
        assert completed.returncode == ExitCode.OK, completed.stderr[-3000:]
        assert completed.stdout.count('"sha256"') >= 1
        built[name] = load_reference_stats(tmp_path / f"{name}.npz")
    one, two = built["one"], built["two"]
    for emotion, stats in one.per_emotion.items():
        assert (stats.mu == two.per_emotion[emotion].mu).all() and (stats.sigma == two.per_emotion[emotion].sigma).all()
        assert (one.kid_sample[emotion] == two.kid_sample[emotion]).all()
    assert (one.pooled.sigma == two.pooled.sigma).all() and one.pooled.n == two.pooled.n == 32
