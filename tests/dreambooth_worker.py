"""DreamBooth training in one process of a ``torchrun`` launch (tests/test_baselines_distributed.py).

``python tests/dreambooth_worker.py INDEX EMOSET OUT MAX_STEPS [--resume]``: fine-tunes the tiny SD
stand-in, one concept per emotion, and reports its result (torchrun_launch.report).
"""

from __future__ import annotations

import sys
from pathlib import Path

from torchrun_launch import report

from baselines.dreambooth import DreamBooth
from reference.sd import tiny_sd_components

TRAIN = {"resolution": 32, "learning_rate": 1e-3, "show_progress": False, "cpu": True, "checkpoint_every": 1}


def main() -> None:
    index, root, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    run = DreamBooth().train(
        {**TRAIN, "max_steps": steps}, index, root, out, components=tiny_sd_components(0),
        resume="--resume" in sys.argv[5:],
    )  # fmt: skip
    report({"run": str(run)})


if __name__ == "__main__":
    main()
