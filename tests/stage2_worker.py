"""Stage 2 of the reference EmoGen in one process of a ``torchrun`` launch (tests/test_reference_train_distributed.py).

``python tests/stage2_worker.py EMOSET OUT MAX_STEPS [--resume]``: trains the
tiny SD stand-in on the images under EMOSET (written by the test) into OUT and
reports this rank's view of the result (torchrun_launch.report).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_reference_train import TABLE, VOCABULARY, TinySpace, _config, emoset_rows  # noqa: E402
from torchrun_launch import report  # noqa: E402

from reference.sd import tiny_sd_components  # noqa: E402
from reference.train import train_stage2  # noqa: E402


def main() -> None:
    root, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    config = _config(max_steps=steps, resume="--resume" in sys.argv[4:])
    result = train_stage2(
        config, tiny_sd_components(0), TinySpace(), TABLE, VOCABULARY, emoset_rows(root), root, out
    )
    report({"checkpoint": str(result.checkpoint), "steps": result.steps, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
