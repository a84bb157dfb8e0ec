"""Peak resident memory of one cold ``extract`` over N synthetic 512x512 images, all five real architectures.

Run as a separate process and read its peak RSS from ``VmHWM`` in
``/proc/self/status`` (Linux), the high-water mark of this process's own
address space.  ``getrusage``'s ``ru_maxrss`` is not used: Linux carries it
over from the parent across fork + exec, so a child of a 4 GB pytest process
would report 4 GB before doing anything.  Usage:
``python -m benchmarks.peak_memory --per-emotion 16 --workdir DIR``; prints one
JSON line with the peak RSS after building the models, after the pass, the
pass's timings and the number of images.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (``VmHWM``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory is only measured on Linux")


def measure(per_emotion: int, workdir: Path, seed: int = 0) -> dict[str, object]:
    """Write the image set, build the models, run one cold pass (cache disabled); report peak RSS."""
    from benchmarks.models import random_extractors
    from emogen_bench.cache import FeatureCache
    from emogen_bench.pipeline import extract, items_from_report
    from emogen_bench.submission import validate_submission
    from emogen_bench.submission.example import write_example_submission

    root = write_example_submission(workdir / f"set-{per_emotion}", per_emotion=per_emotion, size=512, seed=seed)
    items = items_from_report(validate_submission(root, show_progress=False))
    baseline = peak_rss_mib()
    extractors = random_extractors(seed)
    models = peak_rss_mib()
    started = time.perf_counter()
    result = extract(
        items, extractors, cache=FeatureCache(workdir / "cache", enabled=False), device="cpu", show_progress=False
    )
    return {
        "images": len(items),
        "peak_rss_mib_before_models": baseline,
        "peak_rss_mib_models_built": models,
        "peak_rss_mib_after_pass": peak_rss_mib(),
        "seconds": time.perf_counter() - started,
        "timings": result.timings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-emotion", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.per_emotion, args.workdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
