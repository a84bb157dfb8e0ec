"""Stage 1 (the emotion encoder) in one process of a ``torchrun`` launch (tests/test_reference_train_distributed.py).

``python tests/stage1_worker.py INDEX EMOSET OUT EPOCHS [--resume]``: trains the tiny trunk on CPU and reports
its view of the result (torchrun_launch.report).
"""

from __future__ import annotations

import sys
from pathlib import Path

from torchrun_launch import report

from reference.encoder import Stage1Config, train_stage1


def main() -> None:
    index, root, out, epochs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    config = Stage1Config(epochs=epochs, batch_size=4, trunk="tiny", pretrained=False, resize=32, crop=32,
                          device="cpu", num_workers=0, eval_batch_size=8, show_progress=False)  # fmt: skip
    result = train_stage1(config, index, root, out, resume="--resume" in sys.argv[5:])
    report({"best": str(result.best_checkpoint), "epochs": len(result.history), "val": result.best_val_accuracy})


if __name__ == "__main__":
    main()
