"""Fixed images for the CLIP preprocessing fixture, and the script that records transformers 4.x's output on them.

The images are made by integer arithmetic only (no random generator, no
files), so every machine builds the same bytes.  Run this file with
transformers 4.34.0 installed to (re)write ``tests/fixtures/clip_pixels_transformers434.npz``
and its ``.json`` record::

    python3 -m venv /tmp/tf434 && . /tmp/tf434/bin/activate
    pip install transformers==4.34.0 tokenizers==0.14.1 "numpy<2" pillow
    python tests/clip_pixel_fixture.py

It needs only numpy, Pillow and transformers (no torch, no emogen_bench).  For
each image the record keeps the processor's 8-bit stage (PIL resize + centre
crop, obtained with ``do_rescale=False, do_normalize=False``) for the uint8
input (``once``) and for the released Sem-D input, ``ToTensor`` floats in
[0, 1] (``double``, stored as its difference from ``once``); it checks that the
processor's full float output equals rescale + normalise of that stage within
float32 rounding, and records the largest difference and the output's sha256.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "clip_pixels_transformers434"
#: The pinned openai/clip-vit-large-patch14 preprocessor_config.json (revision 32bd642), as published.
PINNED_CONFIG = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}
#: (name, height, width) of the fixed images.
SHAPES: tuple[tuple[str, int, int], ...] = (
    ("landscape_300x700", 300, 700),
    ("portrait_517x389", 517, 389),
    ("square_512", 512, 512),
    ("square_224", 224, 224),
    ("small_180x200", 180, 200),
    ("binary_240x320", 240, 320),
)


def fixture_image(name: str, height: int, width: int) -> np.ndarray:
    """A deterministic ``height x width x 3`` uint8 image: gradients, stripes, a disc, fine rings.

    ``binary_*`` images hold only 0 and 255 (line art), the case where the 4.34
    processor does not scale float input by 255.
    """
    i = np.arange(height, dtype=np.int64)[:, None, None]
    j = np.arange(width, dtype=np.int64)[None, :, None]
    c = np.arange(3, dtype=np.int64)[None, None, :]
    disc = ((i - height // 2) ** 2 + (j - width // 3) ** 2) < (min(height, width) // 4) ** 2
    if name.startswith("binary"):
        checker = ((i // 16 + j // 16) % 2).astype(bool)
        return np.broadcast_to(np.where(checker ^ disc, 255, 0), (height, width, 3)).astype(np.uint8)
    gradient = (i * 255 // max(height - 1, 1) + j * 128 // max(width - 1, 1) + c * 40) % 256
    stripes = ((j + 2 * i) // 7 % 2) * 60
    texture = ((i * i + 3 * j * j) // 97 % 5) * 6  # fine detail at changing frequencies, where the filters differ
    value = gradient // 2 + stripes + np.where(disc, 90 - c * 30, 0) + texture
    return np.clip(value, 0, 255).astype(np.uint8)


def fixture_images() -> dict[str, np.ndarray]:
    """Every fixed image by name."""
    return {name: fixture_image(name, height, width) for name, height, width in SHAPES}


def _record() -> None:
    import PIL
    import transformers
    from transformers import CLIPImageProcessor

    if not transformers.__version__.startswith("4."):
        sys.exit(f"run this with transformers 4.x (found {transformers.__version__})")
    processor = CLIPImageProcessor.from_dict(dict(PINNED_CONFIG))
    arrays: dict[str, np.ndarray] = {}
    record: dict[str, object] = {
        "transformers": transformers.__version__, "pillow": PIL.__version__, "numpy": np.__version__,
        "python": sys.version.split()[0], "config": PINNED_CONFIG, "images": {},
    }  # fmt: skip
    mean = np.asarray(PINNED_CONFIG["image_mean"], dtype=np.float64)
    std = np.asarray(PINNED_CONFIG["image_std"], dtype=np.float64)
    for name, image in fixture_images().items():
        entry: dict[str, object] = {"shape": list(image.shape), "sha256": hashlib.sha256(image.tobytes()).hexdigest()}
        floats = image.astype(np.float32) / np.float32(255)  # ToTensor, channels last
        for kind, data in (("once", image), ("double", floats)):
            full = processor(images=data, return_tensors="np", input_data_format="channels_last")["pixel_values"][0]
            stage = processor(
                images=data, return_tensors="np", do_rescale=False, do_normalize=False,
                input_data_format="channels_last",
            )["pixel_values"][0]  # fmt: skip
            stage = np.asarray(stage).transpose(1, 2, 0)  # channels first -> last
            if np.issubdtype(stage.dtype, np.floating):  # float input: the resized bytes came back scaled by 1/255
                bytes_ = np.rint(stage.astype(np.float64) * 255).astype(np.uint8)
                divisions = 2
            else:
                bytes_ = stage.astype(np.uint8)
                divisions = 1
            expected = ((bytes_.astype(np.float64) / 255**divisions).transpose(2, 0, 1) - mean[:, None, None]) / std[
                :, None, None
            ]
            arrays[f"{name}/{kind}"] = bytes_
            entry[kind] = {
                "divisions_by_255": divisions,
                "max_abs_diff_to_float64_formula": float(np.abs(full.astype(np.float64) - expected).max()),
                "output_sha256": hashlib.sha256(np.ascontiguousarray(full, dtype=np.float32).tobytes()).hexdigest(),
            }
        record["images"][name] = entry  # type: ignore[index]
    stored = {}
    for name, _, _ in SHAPES:
        stored[f"{name}/once"] = arrays[f"{name}/once"]
        stored[f"{name}/double_minus_once"] = arrays[f"{name}/double"].astype(np.int16) - arrays[f"{name}/once"]
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURE.with_suffix(".npz"), **stored)
    FIXTURE.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {FIXTURE.with_suffix('.npz')} and {FIXTURE.with_suffix('.json')}")


if __name__ == "__main__":
    _record()
