"""Whole-process ``emogen-bench evaluate`` against the naive pipeline and against the sum of bare forwards.

One command, paired and repeated rounds on one image set::

    python -m benchmarks.whole_process --images 24 --rounds 3 --workdir /tmp/wp --json wp24.json
    python -m benchmarks.whole_process --images 64 --rounds 2 --no-naive --workdir /tmp/wp --json wp64.json

Each round runs, in this order, in fresh processes where it says so:

1. **fused**: ``python -m emogen_bench evaluate SUB --weights-override ... --reference-stats ... --no-cache
   --device cpu`` (a fresh process: imports, weights check, model loading, validation, the pass, the metric
   maths, the results file), wall time and the child's user/sys CPU seconds and peak RSS;
2. **naive** (unless ``--no-naive``): ``python -m benchmarks.naive_process`` (a fresh process: the same weights
   loaded the same way, then one decode + pass per metric, CLIP twice, LPIPS on 10 random pairs per emotion);
3. **bare forwards**, in a fresh process with the command's allocator settings (``emogen_bench.cli.malloc``):
   every extractor's ``__call__`` (the model in fixed batches of 16, as the pass runs it) on the set's already
   decoded and preprocessed inputs; their sum is what no pipeline can beat on this machine.

The weights are the real architectures with random values (``benchmarks/real_weights.py``), written once into
``--workdir``; the reference statistics are synthetic 2048-d ones keyed to that Inception.  The weights-check
memo is filled before the first round, so every round checks the weights as a user's second run does.
Ratios are per round (paired), then the median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EXTRACTORS = ("inception", "clip", "semantic", "emoset", "lpips")


def _run(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``command``; wall seconds, the child's user/sys seconds and peak RSS (MiB), its stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-3000:]}")
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "max_rss_mib": usage.ru_maxrss / 1024,
            "major_faults": usage.ru_majflt, "minor_faults": usage.ru_minflt, "stdout": stdout}  # fmt: skip


def _setup(workdir: Path, images: int) -> tuple[Path, Path, Path]:
    """Weights (once), the submission of ``images`` 512x512 PNGs, synthetic reference statistics."""
    from benchmarks.real_weights import write_real_weights
    from benchmarks.synthetic import reference_stats
    from emogen_bench.features import build_extractors
    from emogen_bench.reference_stats import write_reference_stats
    from emogen_bench.submission.example import write_example_submission
    from emogen_bench.weights import open_store

    override = write_real_weights(workdir / "weights")
    submission = workdir / f"submission-{images}"
    if not submission.is_dir():
        write_example_submission(submission, per_emotion=images // 8, size=512, seed=0)
    reference = workdir / "reference.npz"
    if not reference.is_file():
        inception = build_extractors(["inception"], open_store(override))["inception"]
        write_reference_stats(reference_stats(extractor_info=inception.info), reference)
    return override, submission, reference


def bare_forwards(submission: Path, override: Path) -> dict[str, float]:
    """Seconds of each extractor's bare forward (fixed batches of 16) on the set's preprocessed inputs."""
    import torch

    from emogen_bench.features import build_extractors
    from emogen_bench.pipeline import items_from_report, read_image
    from emogen_bench.submission import validate_submission
    from emogen_bench.weights import open_store

    items = items_from_report(validate_submission(submission, show_progress=False))
    extractors = build_extractors(list(EXTRACTORS), open_store(override))
    decoded = [read_image(item.path, item.sha256, item.source) for item in items]
    seconds = {}
    for name, extractor in extractors.items():
        inputs = torch.stack([extractor.preprocess(image) for image in decoded])
        started = time.perf_counter()
        extractor(inputs)
        seconds[name] = time.perf_counter() - started
    return seconds


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--bare-forwards"]:  # the child process of step 3
        from emogen_bench.cli.malloc import tune_malloc

        tune_malloc()
        print(json.dumps(bare_forwards(Path(sys.argv[2]), Path(sys.argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="images in the set (a multiple of 8; default 24)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, required=True, help="weights (2.8 GB), images and caches go here")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive process (e.g. at 64+ images)")
    parser.add_argument("--workers", type=int, default=None, help="evaluate --workers (default: its own default)")
    parser.add_argument("--json", type=Path, default=None, help="write every measurement here")
    args = parser.parse_args(argv)
    if args.images % 8 or args.images < 16:
        parser.error("--images must be a multiple of 8, at least 16")

    args.workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EMOGEN_BENCH_HOME": str(args.workdir / "home"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    os.environ.update({k: env[k] for k in ("EMOGEN_BENCH_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")})
    override, submission, reference = _setup(args.workdir, args.images)
    subprocess.run([sys.executable, "-m", "emogen_bench", "weights", "verify", "--weights-override", str(override)],
                   env=env, check=False, capture_output=True)  # fills the weights-check memo  # fmt: skip

    evaluate = [sys.executable, "-m", "emogen_bench", "evaluate", str(submission), "--weights-override",
                str(override), "--reference-stats", str(reference), "--no-cache", "--device", "cpu", "--quiet",
                "--format", "json", "--overwrite", "--out", str(args.workdir / "results.json"),
                "--per-emotion", str(args.images // 8)]  # fmt: skip
    if args.workers is not None:
        evaluate += ["--workers", str(args.workers)]
    naive = [sys.executable, "-m", "benchmarks.naive_process", str(submission), "--weights-override", str(override)]
    bare = [sys.executable, "-m", "benchmarks.whole_process", "--bare-forwards", str(submission), str(override)]
    rounds = []
    for index in range(args.rounds):
        record: dict[str, Any] = {"round": index}
        fused = _run(evaluate, env)
        results = json.loads((args.workdir / "results.json").read_text())
        record["fused"] = {k: v for k, v in fused.items() if k != "stdout"} | {"timings": results["timings"]}
        if not args.no_naive:
            ran = _run(naive, env)
            record["naive"] = {k: v for k, v in ran.items() if k != "stdout"} | json.loads(ran["stdout"])
        record["bare"] = json.loads(_run(bare, env)["stdout"])
        record["bare_sum"] = sum(record["bare"].values())
        record["fused_over_bare"] = record["fused"]["wall"] / record["bare_sum"]
        if "naive" in record:
            record["naive_over_fused"] = record["naive"]["wall"] / record["fused"]["wall"]
        rounds.append(record)
        print(json.dumps({k: v for k, v in record.items() if k in ("round", "bare_sum", "fused_over_bare",
                                                                  "naive_over_fused")}
                         | {"fused_wall": fused["wall"], "naive_wall": record.get("naive", {}).get("wall")}),
              flush=True)  # fmt: skip
    summary = {
        "images": args.images,
        "machine": machine(),
        "median_fused_wall": statistics.median(r["fused"]["wall"] for r in rounds),
        "median_bare_sum": statistics.median(r["bare_sum"] for r in rounds),
        "median_fused_over_bare": statistics.median(r["fused_over_bare"] for r in rounds),
    }
    if not args.no_naive:
        summary["median_naive_wall"] = statistics.median(r["naive"]["wall"] for r in rounds)
        summary["median_naive_over_fused"] = statistics.median(r["naive_over_fused"] for r in rounds)
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
