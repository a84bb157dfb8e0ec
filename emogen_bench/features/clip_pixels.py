"""CLIP ViT-L/14 input pixels through PIL, independent of the installed transformers version.

The official emotion head was trained on what ``CLIPImageProcessor`` produced
in transformers 4.x (the released environment is 4.34): PIL bicubic resize of
the 8-bit image (shortest side to 224), centre crop 224, rescale by 1/255,
CLIP mean/std.  transformers 5 resizes with torchvision instead, 1-3 levels of
8 bits away on 0.4-26% of the values, so the benchmark does not call the
processor at all: these functions are that PIL pipeline written out in numpy
and Pillow, with the snapshot's ``preprocessor_config.json`` read as plain JSON
(:func:`load_settings`).  ``tests/fixtures/clip_pixels`` holds the 4.34
processor's output on fixed images and how it was made; the tests compare
with it under any transformers version.

:func:`clip_pixels_double_rescaled` is the released Sem-D's input (used only by
the ``emogen-paper-code`` pair stage): ``ToTensor`` floats in [0, 1] handed to
the 4.34 processor, which converts them back to 8 bits by ``x * 255``
truncated (so values lose a level where float32 rounds below the integer),
resizes with PIL, scales by 1/255, then rescales by 1/255 again.  An image
whose values are all 0 or 255 is the exception the 4.34 processor makes: its
floats look like integers, so they are truncated to 0/1 without the x255 and
rescaled once.  Pure numpy and Pillow; no torch, no transformers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: Bump when the pipeline below changes: it enters the CLIP extractor's cache key.
PIPELINE_VERSION = "clip-pil/2"
#: The settings of the pinned openai/clip-vit-large-patch14 snapshot (its preprocessor_config.json).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
#: PIL's resampling filters by the numbers transformers stores (``resample`` in the config).
PIL_FILTERS: dict[int, str] = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}


@dataclass(frozen=True)
class ClipPixelSettings:
    """What decides the CLIP input pixels: the fields of a ``preprocessor_config.json`` that matter."""

    shortest_edge: int = 224
    crop_height: int = 224
    crop_width: int = 224
    resample: int = 3
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD

    def __post_init__(self) -> None:
        if self.resample not in PIL_FILTERS:
            raise ValueError(f"resample {self.resample!r} is not a PIL filter number ({sorted(PIL_FILTERS)})")
        for name in ("shortest_edge", "crop_height", "crop_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError(f"image_mean/image_std must be 3 values (std > 0), got {self.image_mean}/{self.image_std}")

    @property
    def rescales_once(self) -> bool:
        """Whether 8-bit input is scaled by exactly 1/255 (what the CLIP weights expect)."""
        return self.do_rescale and math.isclose(self.rescale_factor, 1 / 255)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (they enter cache keys and provenance)."""
        document = asdict(self)
        document["image_mean"] = list(self.image_mean)
        document["image_std"] = list(self.image_std)
        return document

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClipPixelSettings:
        """Settings from a ``preprocessor_config.json`` document (legacy ``size: 224`` or ``{"shortest_edge": 224}``).

        Keys it does not hold take transformers' ``CLIPImageProcessor`` defaults,
        as the processor itself does.  A ``size`` given as height and width (a
        square resize) is not the CLIP pipeline and is refused.
        """
        size = config.get("size", {"shortest_edge": 224})
        if isinstance(size, Mapping):
            if "shortest_edge" not in size:
                raise ValueError(f"size {dict(size)} is not a shortest-edge resize; the CLIP pipeline needs one")
            size = size["shortest_edge"]
        crop = config.get("crop_size", {"height": 224, "width": 224})
        crop_height, crop_width = (crop["height"], crop["width"]) if isinstance(crop, Mapping) else (crop, crop)
        defaults = cls()
        return cls(
            shortest_edge=size,
            crop_height=crop_height,
            crop_width=crop_width,
            resample=_filter_number(config.get("resample", defaults.resample)),
            do_resize=bool(config.get("do_resize", True)),
            do_center_crop=bool(config.get("do_center_crop", True)),
            do_rescale=bool(config.get("do_rescale", True)),
            rescale_factor=float(config.get("rescale_factor", defaults.rescale_factor)),
            do_normalize=bool(config.get("do_normalize", True)),
            image_mean=tuple(float(v) for v in config.get("image_mean", CLIP_MEAN)),  # type: ignore[arg-type]
            image_std=tuple(float(v) for v in config.get("image_std", CLIP_STD)),  # type: ignore[arg-type]
        )

    @classmethod
    def from_processor(cls, processor: Any) -> ClipPixelSettings:
        """Settings of a transformers image processor object (any version or backend): its ``to_dict()``."""
        return cls.from_config({k: v for k, v in processor.to_dict().items() if v is not None})


def _filter_number(value: Any) -> int:
    """A resampling filter as PIL's number: an int, a PIL ``Resampling`` or a torchvision ``InterpolationMode``."""
    if isinstance(value, int):
        return int(value)
    name = str(getattr(value, "value", getattr(value, "name", value))).upper()
    for number, filter_name in PIL_FILTERS.items():
        if filter_name == name or (filter_name == "LANCZOS" and name == "ANTIALIAS"):
            return number
    raise ValueError(f"resample {value!r} is not a PIL filter")


def load_settings(snapshot_dir: str | Path) -> ClipPixelSettings:
    """The settings in a snapshot's ``preprocessor_config.json``; OSError/ValueError when absent or not valid."""
    path = Path(snapshot_dir) / "preprocessor_config.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a JSON object")
    return ClipPixelSettings.from_config(document)


def resized_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """``(height, width)`` after a shortest-edge resize: the long side ``int(size * long / short)`` (truncated)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shortest_edge * long / short)
    return (new_long, shortest_edge) if width <= height else (shortest_edge, new_long)


def _pil_resize(image: np.ndarray, settings: ClipPixelSettings) -> np.ndarray:
    """uint8 ``H x W x 3`` resized by PIL with the settings' filter (no reducing gap), still uint8."""
    height, width = resized_size(image.shape[0], image.shape[1], settings.shortest_edge)
    with Image.fromarray(image) as pil:
        return np.asarray(pil.resize((width, height), resample=Image.Resampling(settings.resample), reducing_gap=None))


def _center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centre ``height x width`` window (top-left at ``(H - h) // 2``, ``(W - w) // 2``), zero-padded if smaller."""
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    if top >= 0 and left >= 0:
        return image[top : top + height, left : left + width]
    padded = np.zeros((max(height, image.shape[0]), max(width, image.shape[1]), image.shape[2]), dtype=image.dtype)
    pad_top, pad_left = (padded.shape[0] - image.shape[0]) // 2, (padded.shape[1] - image.shape[1]) // 2
    padded[pad_top : pad_top + image.shape[0], pad_left : pad_left + image.shape[1]] = image
    return _center_crop(padded, height, width)


def _rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """``image * factor`` cast to float32, with numpy's promotion (uint8 -> float64 product; float32 stays float32)."""
    return (image * factor).astype(np.float32)


def _finish(image: np.ndarray, settings: ClipPixelSettings, *, rescale: bool) -> np.ndarray:
    """Rescale (when asked), normalise in float32, channels first."""
    if rescale:
        image = _rescale(image, settings.rescale_factor)
    if settings.do_normalize:
        image = image.astype(np.float32) if not np.issubdtype(image.dtype, np.floating) else image
        mean = np.asarray(settings.image_mean, dtype=image.dtype)
        std = np.asarray(settings.image_std, dtype=image.dtype)
        image = (image - mean) / std
    return np.ascontiguousarray(np.asarray(image, dtype=np.float32).transpose(2, 0, 1))


def _check_rgb(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 RGB array, got {image.dtype} {image.shape}")


def resized_and_cropped(image: np.ndarray, settings: ClipPixelSettings) -> np.ndarray:
    """The 8-bit stage of :func:`clip_pixels`: PIL resize then centre crop, uint8 ``h x w x 3``."""
    _check_rgb(image)
    if settings.do_resize:
        image = _pil_resize(image, settings)
    if settings.do_center_crop:
        image = _center_crop(image, settings.crop_height, settings.crop_width)
    return image


def float_stage(image: np.ndarray, settings: ClipPixelSettings) -> np.ndarray:
    """The float stage of :func:`clip_pixels` alone: uint8 ``h x w x 3`` -> float32 ``3 x h x w``."""
    _check_rgb(image)
    return _finish(image, settings, rescale=settings.do_rescale)


def float_stage_table(settings: ClipPixelSettings) -> np.ndarray:
    """``3 x 256``: :func:`float_stage` of each 8-bit value in each channel (the stage is elementwise)."""
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    return float_stage(ramp, settings).reshape(3, 256)


def clip_pixels(image: np.ndarray, settings: ClipPixelSettings) -> np.ndarray:
    """uint8 ``H x W x 3`` RGB -> float32 ``3 x h x w``: what transformers 4.x's CLIPImageProcessor returns."""
    return float_stage(resized_and_cropped(image, settings), settings)


def released_float_to_pil_bytes(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The 8-bit array the 4.34 processor makes of ``ToTensor`` floats, and whether it scaled them by 255.

    ``ToTensor`` gives ``float32(k / 255)``.  Floats that all equal integers
    (every value 0 or 255) are taken as 0-255 data and truncated as they are;
    otherwise they are multiplied by 255 in float32 and truncated.
    """
    _check_rgb(image)
    floats = image.astype(np.float32) / np.float32(255)
    if np.all((image == 0) | (image == 255)):
        return floats.astype(np.uint8), False
    return (floats * np.float32(255)).astype(np.float32).astype(np.uint8), True


def clip_pixels_double_rescaled(image: np.ndarray, settings: ClipPixelSettings) -> np.ndarray:
    """The released Sem-D's CLIP input (emogen-paper-code only): ``ToTensor`` output given to the 4.34 processor."""
    data, scaled = released_float_to_pil_bytes(image)
    if settings.do_resize:
        data = _pil_resize(data, settings)
        if scaled:
            data = _rescale(data, 1 / 255)  # the processor scales the resized bytes back to [0, 1]
    elif scaled:
        data = image.astype(np.float32) / np.float32(255)
    if settings.do_center_crop:
        data = _center_crop(data, settings.crop_height, settings.crop_width)
    return _finish(data, settings, rescale=settings.do_rescale)
