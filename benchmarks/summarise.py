"""Turn a pytest-benchmark JSON file into the tables and ratios of docs/benchmarks.md.

``python -m benchmarks.summarise bench.json [more.json ...]``: medians over
rounds (and over files, when several runs are given) of each benchmark, the
images/s of every stage, and the issue's four ratios, the extrapolated ones
labelled as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from emogen_bench.task import EMOTION_NAMES

#: The protocol's full size and the released code's LPIPS sampling.
FULL_IMAGES = 8000
RELEASED_PAIRS_PER_EMOTION = 1000
EXTRACTORS = ("inception", "clip", "semantic", "emoset", "lpips")


def load_runs(paths: Sequence[Path]) -> dict[str, dict]:
    """Benchmark name -> {"data": every round's seconds over all files, "extra": the last file's extra_info}."""
    merged: dict[str, dict] = {}
    for path in paths:
        for bench in json.loads(Path(path).read_text())["benchmarks"]:
            entry = merged.setdefault(bench["name"], {"data": [], "extra": {}})
            entry["data"].extend(bench["stats"]["data"])
            entry["extra"] = bench.get("extra_info", {})
    return merged


def median(runs: Mapping[str, dict], name: str) -> float:
    return statistics.median(runs[name]["data"])


def ratios(runs: Mapping[str, dict]) -> dict[str, float]:
    """The derived numbers (seconds, ratios, images/s); names say what is extrapolated."""
    images = runs["test_fused_pass_no_cache"]["extra"]["images"]
    fused = median(runs, "test_fused_pass_no_cache")
    naive = median(runs, "test_naive_per_metric_passes")
    pairs = runs["test_naive_lpips_sampled_pairs"]["extra"]["pairs"]
    per_pair = median(runs, "test_naive_lpips_sampled_pairs") / pairs
    released_pairs = RELEASED_PAIRS_PER_EMOTION * len(EMOTION_NAMES)
    out = {
        "images": images,
        "fused_s": fused,
        "naive_passes_s": naive,
        "naive_pairs_measured": pairs,
        "naive_pair_s": per_pair,
        "naive_measured_s": naive + per_pair * pairs,
        "ratio_measured": (naive + per_pair * pairs) / fused,
        "ratio_no_lpips_pairs": naive / fused,
        "extrapolated_naive_same_images_1000_pairs_s": naive + per_pair * released_pairs,
        "extrapolated_ratio_same_images_1000_pairs": (naive + per_pair * released_pairs) / fused,
        "extrapolated_naive_8000_s": naive / images * FULL_IMAGES + per_pair * released_pairs,
        "extrapolated_fused_8000_s": fused / images * FULL_IMAGES,
    }
    out["extrapolated_ratio_8000"] = out["extrapolated_naive_8000_s"] / out["extrapolated_fused_8000_s"]
    cold = median(runs, "test_cold_pass_cache_written")
    warm = median(runs, "test_warm_pass_all_cached")
    maths = median(runs, "test_metric_maths_benchmark_size")
    out.update(
        cold_s=cold,
        warm_s=warm,
        maths_s=maths,
        ratio_warm_extract=cold / warm,
        ratio_warm_evaluate=(cold + maths) / (warm + maths),
    )
    bare = {name: median(runs, f"test_stage_bare_forward[{name}]") for name in EXTRACTORS}
    out["bare_forwards_s"] = sum(bare.values())
    out["overhead_vs_separate_bare_forwards"] = fused / out["bare_forwards_s"] - 1.0
    for name in ("test_fused_pass_no_cache", "test_cold_pass_cache_written"):
        for index, timings in enumerate(runs[name]["extra"].get("timings", [])):
            models = sum(v for k, v in timings.items() if k.startswith("model."))
            out[f"overhead_in_run_{name[5:]}_{index}"] = timings["total"] / models - 1.0
    for name, seconds in bare.items():
        out[f"forward_{name}_img_s"] = images / seconds
        out[f"preprocess_{name}_img_s"] = images / median(runs, f"test_stage_preprocess[{name}]")
    out["decode_img_s"] = images / median(runs, "test_stage_read_and_decode")
    out["fused_img_s"] = images / fused
    return out


def memory_rows(runs: Mapping[str, dict]) -> list[dict]:
    return [entry["extra"] for name, entry in sorted(runs.items()) if name.startswith("test_peak_memory_cold_pass")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    runs = load_runs(args.files)
    for name, entry in sorted(runs.items()):
        data = entry["data"]
        print(f"{name:50s} median {statistics.median(data):9.3f} s  rounds {len(data)}  {[round(d, 2) for d in data]}")
    print()
    for key, value in ratios(runs).items():
        print(f"{key:50s} {value:12.4f}")
    print()
    for row in memory_rows(runs):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
