"""CLIP input pixels: the PIL pipeline of transformers 4.x, whatever transformers is installed.

Three independent references: the pixels transformers 4.34 (the released
EmoGen environment) produced on fixed images, recorded once in
``tests/fixtures/clip_pixels_transformers434.*`` by ``tests/clip_pixel_fixture.py``
(its docstring says how); transformers' own PIL-backend processor in the
installed version (``CLIPImageProcessorPil`` in 5.x, ``CLIPImageProcessor`` in
4.x); and closed forms on uniform images.  CI runs this module under both
transformers majors (``.ci/run``; ``tox -e transformers4``).

Tolerance: the 8-bit stage (resize and crop) is compared exactly.  The float
output is ``(float32(k * (1/255)) - mean) / std`` in float32; against the same
formula in float64 each float32 operation adds at most u = 2**-24 relative, so
the error is at most u * (2|r| + 3|m|) / s + 2u|q| with r <= 1, m <= 0.49,
s >= 0.26, |q| <= 2.2: about 18u = 1.1e-6.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import checkpoints as ckpt
import numpy as np
import pytest
import transformers
from clip_pixel_fixture import FIXTURE, PINNED_CONFIG, fixture_images

from emogen_bench.features.clip_pixels import (
    ClipPixelSettings,
    clip_pixels,
    clip_pixels_double_rescaled,
    load_settings,
    released_float_to_pil_bytes,
    resized_and_cropped,
    resized_size,
)

#: 18 float32 roundings of values of order 1 (module docstring).
FLOAT32_TOL = 18 * 2.0**-24
RECORD = json.loads(FIXTURE.with_suffix(".json").read_text(encoding="utf-8"))
STORED = np.load(FIXTURE.with_suffix(".npz"))
IMAGES = fixture_images()
SETTINGS = ClipPixelSettings.from_config(PINNED_CONFIG)


def _formula(bytes_: np.ndarray, divisions: int) -> np.ndarray:
    """(k / 255**divisions - mean) / std in float64, channels first."""
    mean = np.asarray(PINNED_CONFIG["image_mean"], dtype=np.float64)[:, None, None]
    std = np.asarray(PINNED_CONFIG["image_std"], dtype=np.float64)[:, None, None]
    return (bytes_.astype(np.float64).transpose(2, 0, 1) / 255.0**divisions - mean) / std


def _recorded_bytes(name: str, kind: str) -> np.ndarray:
    once = STORED[f"{name}/once"]
    if kind == "once":
        return once
    return (once.astype(np.int16) + STORED[f"{name}/double_minus_once"]).astype(np.uint8)


def test_the_fixture_was_made_with_transformers_434_on_these_very_images() -> None:
    assert RECORD["transformers"] == "4.34.0"
    assert RECORD["config"] == PINNED_CONFIG
    assert set(RECORD["images"]) == set(IMAGES)
    for name, image in IMAGES.items():
        assert RECORD["images"][name]["sha256"] == hashlib.sha256(image.tobytes()).hexdigest(), name
        for kind in ("once", "double"):  # the recorded floats are the stored bytes through the formula
            assert RECORD["images"][name][kind]["max_abs_diff_to_float64_formula"] <= FLOAT32_TOL


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_the_8_bit_stage_equals_transformers_434_exactly(name: str) -> None:
    assert np.array_equal(resized_and_cropped(IMAGES[name], SETTINGS), _recorded_bytes(name, "once"))


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_pixels_equal_transformers_434(name: str) -> None:
    got = clip_pixels(IMAGES[name], SETTINGS)
    assert got.dtype == np.float32 and got.shape == (3, 224, 224)
    np.testing.assert_allclose(got, _formula(_recorded_bytes(name, "once"), 1), rtol=0, atol=FLOAT32_TOL)
    assert hashlib.sha256(got.tobytes()).hexdigest() == RECORD["images"][name]["once"]["output_sha256"]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_the_released_sem_d_input_equals_transformers_434(name: str) -> None:
    entry = RECORD["images"][name]["double"]
    got = clip_pixels_double_rescaled(IMAGES[name], SETTINGS)
    expected = _formula(_recorded_bytes(name, "double"), entry["divisions_by_255"])
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT32_TOL)
    assert hashlib.sha256(got.tobytes()).hexdigest() == entry["output_sha256"]


def test_only_an_image_of_pure_black_and_white_escapes_the_double_rescale() -> None:
    assert RECORD["images"]["binary_240x320"]["double"]["divisions_by_255"] == 1
    assert all(RECORD["images"][n]["double"]["divisions_by_255"] == 2 for n in IMAGES if not n.startswith("binary"))
    data, scaled = released_float_to_pil_bytes(IMAGES["binary_240x320"])
    assert not scaled and set(np.unique(data)) == {0, 1}
    data, scaled = released_float_to_pil_bytes(IMAGES["square_224"])
    assert scaled and np.array_equal(data, IMAGES["square_224"])  # k/255*255 in float32 never truncates below k


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_the_installed_transformers_pil_processor_agrees(name: str) -> None:
    processor = ckpt.pil_clip_processor(PINNED_CONFIG)
    image = IMAGES[name]
    peer = processor(images=image, return_tensors="np", input_data_format="channels_last")["pixel_values"][0]
    np.testing.assert_allclose(clip_pixels(image, SETTINGS), peer, rtol=0, atol=FLOAT32_TOL)
    floats = image.astype(np.float32) / np.float32(255)  # ToTensor, channels last
    peer = processor(images=floats, return_tensors="np", input_data_format="channels_last")["pixel_values"][0]
    np.testing.assert_allclose(clip_pixels_double_rescaled(image, SETTINGS), peer, rtol=0, atol=FLOAT32_TOL)


@pytest.mark.skipif(not transformers.__version__.startswith("5."), reason="transformers 5 only: its default backend")
def test_transformers_5_default_processor_differs_and_is_not_used() -> None:
    """Why the pipeline exists: 5.x's default CLIPImageProcessor resizes with torchvision."""
    default = transformers.CLIPImageProcessor.from_dict(dict(PINNED_CONFIG))
    image = IMAGES["small_180x200"]
    peer = default(images=image, return_tensors="np", input_data_format="channels_last")["pixel_values"][0]
    levels = np.abs(peer - clip_pixels(image, SETTINGS)) * np.asarray(SETTINGS.image_std)[:, None, None] * 255
    assert levels.max() > 0.5  # at least one value a whole 8-bit level away
    assert ClipPixelSettings.from_processor(default) == SETTINGS  # only its settings are ever read


def test_a_uniform_image_is_rescaled_exactly_once_and_the_released_input_twice() -> None:
    colour = np.array([200, 90, 30], dtype=np.uint8)
    image = np.broadcast_to(colour, (256, 320, 3)).copy()
    mean, std = np.array(SETTINGS.image_mean), np.array(SETTINGS.image_std)
    for got, scale in ((clip_pixels(image, SETTINGS), 255.0), (clip_pixels_double_rescaled(image, SETTINGS), 255.0**2)):
        expected = np.broadcast_to(((colour / scale - mean) / std)[:, None, None], got.shape)
        np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT32_TOL)


@pytest.mark.parametrize(
    ("shape", "expected"), [((300, 700), (224, 522)), ((517, 389), (297, 224)), ((224, 224), (224, 224)),
                            ((180, 200), (224, 248)), ((1000, 224), (1000, 224))],
)  # fmt: skip
def test_the_long_side_is_truncated_as_in_transformers(shape: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resized_size(*shape, 224) == expected


def test_settings_read_every_config_format(tmp_path: Path) -> None:
    modern = {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}, "resample": 3,
              "do_rescale": True, "rescale_factor": 1 / 255, "image_mean": list(SETTINGS.image_mean),
              "image_std": list(SETTINGS.image_std)}  # fmt: skip
    assert ClipPixelSettings.from_config(modern) == SETTINGS
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(PINNED_CONFIG))
    assert load_settings(tmp_path) == SETTINGS
    assert ClipPixelSettings.from_processor(ckpt.pil_clip_processor(PINNED_CONFIG)) == SETTINGS
    with pytest.raises(ValueError, match="shortest-edge"):
        ClipPixelSettings.from_config({"size": {"height": 224, "width": 224}})
    with pytest.raises(ValueError, match="PIL filter"):
        ClipPixelSettings.from_config({"resample": 9})
    assert pickle.loads(pickle.dumps(SETTINGS)) == SETTINGS
