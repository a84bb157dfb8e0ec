"""The FID Inception-v3: NVlabs' TorchScript export of the TensorFlow 2015-12-05 graph.

This is the network clean-fid and StyleGAN's metrics use; loading the TorchScript
file (instead of rebuilding the network in Python) keeps its exact weights and
its own input handling.  Called as ``model(images, return_features=True)`` it
returns the 2048-d pool features.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from emogen_bench.errors import WeightsError


def load_inception(path: str | Path) -> torch.jit.ScriptModule:
    """Load ``inception-2015-12-05.pt`` on CPU, in eval mode, without gradients."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: FID Inception file not found; fetch it with the `emogen-bench weights` command.")
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.export, but this file only exists as TorchScript.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated", category=FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # TorchScript reports every unreadable file as RuntimeError or ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{path}: not a TorchScript archive, so not the NVlabs inception-2015-12-05.pt ({first}). "
            "Delete it and fetch it again."
        ) from exc
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
