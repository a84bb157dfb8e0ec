"""Throughput of the feature pass on one device: images/s per stage and end to end, peak memory.

Prepared for the day a GPU machine is lent (one command, a few minutes), and run on
the CPU in CI as a smoke test of the same code::

    python -m benchmarks.gpu_throughput --device cuda --images 1000 8000 --json gpu.json
    python -m benchmarks.gpu_throughput --device cpu --images 16 --json smoke.json     # CI smoke

For each N it writes N distinct synthetic 512x512 PNGs (in parallel), builds the
five metric extractors around the real architectures with seeded random weights
(``benchmarks/models.py``: speed does not depend on the values) and measures:

- ``decode``, ``preprocess.<extractor>``: CPU work per image in one process (what a
  data-loader worker does), as images/s of one core;
- ``forward.<extractor>``: the bare model on one fixed batch of 16 already on the
  device, repeated, synchronised: the ceiling of each model;
- ``end_to_end``: :func:`emogen_bench.pipeline.extract` on all N images with the
  feature cache off and the default worker count, under the protocol's precision
  policy (TF32 off), its own stage timings, and the peak device memory and peak RSS.

``--compile`` compiles the models (each compiles in its warm-up call, outside the
forward timings; the end-to-end pass compiles its own copies, so its time includes that).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

#: Repetitions of one model batch in the bare-forward stage (``--repeats``).
FORWARD_REPEATS = 4
#: Images timed for the CPU stages (decode, preprocess): enough for a stable rate, few enough for the smoke.
CPU_STAGE_IMAGES = 32


def _write_one(job: tuple[Path, int, int, int]) -> tuple[str, str, str]:
    """Write one synthetic PNG; returns (path, relative path, sha256)."""
    from PIL import Image

    from emogen_bench.submission.example import example_image, example_seed
    from emogen_bench.task import EMOTIONS

    root, emotion_index, index, per_emotion = job
    emotion = EMOTIONS[emotion_index]
    pixels = example_image(emotion.id, example_seed(0, emotion.id, index, per_emotion), 512)
    relpath = f"{emotion.name}/{index:05d}.png"
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")
    return str(path), relpath, hashlib.sha256(path.read_bytes()).hexdigest()


def write_images(root: Path, n: int, processes: int) -> list[Any]:
    """N distinct images, N/8 per emotion, as pipeline items in canonical order."""
    from emogen_bench.pipeline import ImageItem, canonical_key
    from emogen_bench.task import EMOTIONS

    per_emotion = max(1, n // len(EMOTIONS))
    jobs = [(root, e, i, per_emotion) for e in range(len(EMOTIONS)) for i in range(per_emotion)]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        written = list(pool.map(_write_one, jobs, chunksize=16))
    items = [ImageItem(Path(p), rel, sha, rel.split("/", 1)[0], "submission") for p, rel, sha in written]
    return sorted(items, key=canonical_key)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mib() -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def measure(
    items: list[Any],
    extractors: dict[str, Any],
    device: Any,
    workers: int | None,
    compile: bool = False,
    repeats: int = FORWARD_REPEATS,
) -> dict[str, Any]:
    """Every stage on ``items``; images/s and seconds (compiled models compile in their warm-up call)."""
    import torch

    from emogen_bench.cache import FeatureCache
    from emogen_bench.pipeline import extract, read_image
    from emogen_bench.runtime import Runtime, precision_policy
    from emogen_bench.task import METRICS

    out: dict[str, Any] = {"images": len(items), "stages": {}}
    sample = items[:CPU_STAGE_IMAGES]
    started = time.perf_counter()
    decoded = [read_image(item.path, item.sha256, item.source) for item in sample]
    out["stages"]["decode"] = len(sample) / (time.perf_counter() - started)
    inputs = {}
    for name, extractor in extractors.items():
        started = time.perf_counter()
        rows = [extractor.preprocess(image) for image in decoded]
        out["stages"][f"preprocess.{name}"] = len(sample) / (time.perf_counter() - started)
        batch = torch.stack((rows * METRICS.model_batch)[: METRICS.model_batch])
        inputs[name] = batch
        out.setdefault("input_bytes_per_image", {})[name] = rows[0].numel() * rows[0].element_size()
    runtime = Runtime.for_device(device, compile=compile)
    with precision_policy(device), torch.no_grad():
        for name, extractor in extractors.items():
            extractor = extractor.to(device).for_runtime(runtime)
            batch = inputs[name].to(device)
            extractor.forward(batch)  # warm-up (cuDNN plans, allocator)
            _sync(device)
            started = time.perf_counter()
            for _ in range(repeats):
                extractor.forward(batch)
            _sync(device)
            seconds = time.perf_counter() - started
            out["stages"][f"forward.{name}"] = repeats * METRICS.model_batch / seconds
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    kwargs = {} if workers is None else {"num_workers": workers}
    result = extract(items, extractors, cache=FeatureCache(enabled=False), device=device, show_progress=False,
                     compile=compile, **kwargs)  # fmt: skip
    _sync(device)
    seconds = time.perf_counter() - started
    out["end_to_end"] = {
        "seconds": seconds,
        "images_per_s": len(items) / seconds,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "peak_device_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "peak_rss_mib": _peak_rss_mib(),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 8000], help="set sizes (default 1000 8000)")
    parser.add_argument("--workers", type=int, default=None, help="data-loader workers (default: the pass's default)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models first")
    parser.add_argument("--repeats", type=int, default=FORWARD_REPEATS, help="model batches per bare forward")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/emogen-bench-throughput"))
    parser.add_argument("--json", type=Path, default=None, help="write the measurements here")
    args = parser.parse_args(argv)

    os.environ.setdefault("EMOGEN_BENCH_HOME", str(args.workdir / "home"))
    import torch

    from benchmarks.models import random_extractors
    from emogen_bench.pipeline import resolve_device
    from emogen_bench.runtime import Runtime

    device = resolve_device(args.device)
    started = time.perf_counter()
    extractors = random_extractors(seed=0)
    report: dict[str, Any] = {"build_models_s": time.perf_counter() - started, "runs": []}
    report["runtime"] = Runtime.for_device(device, compile=args.compile).to_dict()
    report["machine"] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    for n in args.images:
        root = args.workdir / f"images-{n}"
        started = time.perf_counter()
        items = write_images(root, n, processes=max(1, len(os.sched_getaffinity(0))))
        written = time.perf_counter() - started
        run = measure(items, extractors, device, args.workers, args.compile, args.repeats)
        run["write_images_s"] = written
        report["runs"].append(run)
        print(json.dumps({"images": n, "end_to_end_images_per_s": round(run["end_to_end"]["images_per_s"], 2),
                          "stages": {k: round(v, 1) for k, v in run["stages"].items()}}), flush=True)  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
