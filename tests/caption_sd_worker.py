"""Caption-SD training (captioning included) in one process of a ``torchrun`` launch.

``python tests/caption_sd_worker.py INDEX EMOSET OUT CAPTIONS MAX_STEPS``: captions with the tiny BLIP-2 stand-in,
fine-tunes the tiny SD stand-in, reports its result (torchrun_launch.report) (tests/test_baselines_distributed.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from torchrun_launch import report

from baselines.caption_sd import CaptionSD
from reference.sd import tiny_sd_components


def main() -> None:
    index, root, out, captions = (Path(a) for a in sys.argv[1:5])
    settings = {"max_steps": int(sys.argv[5]), "resolution": 32, "learning_rate": 1e-3, "captioner": "tiny-blip2",
                "cpu": True, "captions": str(captions), "show_progress": False, "caption_batch_size": 3}  # fmt: skip
    run = CaptionSD().train(settings, index, root, out, components=tiny_sd_components(0))
    report({"run": str(run)})


if __name__ == "__main__":
    main()
