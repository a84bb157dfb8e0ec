"""The naive per-metric evaluation as one whole process, the way a user runs the released scripts.

``python -m benchmarks.naive_process SUBMISSION --weights-override FILE [--pairs 10]``
imports, verifies and loads the same weights as ``emogen-bench evaluate`` (through
the same weights store and loaders), then runs :func:`benchmarks.naive.naive_evaluate`:
every metric decodes every image again, CLIP runs twice (Emo-A, Sem-D), LPIPS is
averaged over ``--pairs`` random pairs per emotion (10, the released count), two
AlexNet forwards a pair.  It prints one JSON line of seconds per stage.  The
metric maths is not run here (it is the same on both sides and takes well under a
second at these sizes), which favours the naive side.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submission", type=Path)
    parser.add_argument("--weights-override", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=10, help="LPIPS pairs per emotion (default 10, as released)")
    args = parser.parse_args(argv)

    import torch

    from benchmarks.naive import naive_evaluate
    from emogen_bench.features import build_extractors
    from emogen_bench.pipeline import items_from_report
    from emogen_bench.submission import validate_submission
    from emogen_bench.weights import open_store

    seconds: dict[str, float] = {"imports": time.perf_counter() - started}
    mark = time.perf_counter()
    items = items_from_report(validate_submission(args.submission, show_progress=False))
    seconds["validate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    names = ["inception", "clip", "semantic", "emoset", "lpips"]
    extractors = build_extractors(names, open_store(args.weights_override))
    seconds["load_models"] = time.perf_counter() - mark
    with torch.no_grad():
        seconds.update(naive_evaluate(items, extractors, pairs_per_emotion=args.pairs))
    seconds["total"] = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "images": len(items), "pairs_per_emotion": args.pairs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
