"""Validation against hostile files: images that lie about their pixels or their size, pixel-identical
duplicates, special files among the images. Every hostile file is built here, in code."""

from __future__ import annotations

import io
import os
import shutil
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_submission_validate import (
    JPG,
    PNG,
    SIZE,
    _codes_and_paths,
    _image_bytes,
    _validate,
    build_submission,
    jpeg_cut_with_end_marker,
    noise_jpeg,
    png_declaring,
)

from emogen_bench.submission import validate as validate_module
from emogen_bench.submission.validate import jpeg_layout, png_pixel_stream_size
from emogen_bench.task import SUBMISSION

#: The seven Adam7 passes: first column, first row, column step, row step.
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_submission(tmp_path_factory.mktemp("template") / "submission")


@pytest.fixture
def submission(_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a valid reduced submission (2 PNGs per emotion), for one test to break."""
    return Path(shutil.copytree(_template, tmp_path / "submission"))


def _only_problem(root: Path) -> tuple[str, str, str]:
    (problem,) = _validate(root).problems
    return problem.code, problem.path, problem.message


def _replace_with_jpeg(root: Path, data: bytes) -> None:
    (root / PNG).unlink()
    (root / JPG).write_bytes(data)


def _ihdr(width: int, height: int, *, interlace: int = 0) -> bytes:
    """The body of an IHDR chunk: 8-bit RGB."""
    return width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, interlace])


def _png(ihdr: bytes, stream: bytes) -> bytes:
    """A PNG of one IDAT chunk holding ``stream``, every checksum right."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def _interlaced_png(pixels: np.ndarray, missing: int = 0) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (Pillow cannot write one) whose stream lacks its last ``missing`` bytes."""
    raw = b"".join(b"".join(b"\x00" + row.tobytes() for row in pixels[y::dy, x::dx]) for x, y, dx, dy in ADAM7)
    height, width = pixels.shape[:2]
    assert len(raw) == png_pixel_stream_size(width, height, 8, 2, True)
    return _png(_ihdr(width, height, interlace=1), zlib.compress(raw[: len(raw) - missing]))


# --- images that lie about their pixels --------------------------------------------------------


def test_a_png_holding_3_of_256_rows_is_truncated(submission: Path) -> None:
    (submission / PNG).write_bytes(png_declaring(SIZE, SIZE, rows=3))
    code, path, message = _only_problem(submission)
    assert (code, path) == ("truncated", PNG)
    assert "3 of 256 rows" in message and "256x256" in message


def test_a_png_holding_every_row_is_valid(submission: Path) -> None:
    (submission / PNG).write_bytes(png_declaring(SIZE, SIZE, rows=SIZE))
    assert _validate(submission).problems == ()


def test_a_png_holding_more_rows_than_declared_is_undecodable(submission: Path) -> None:
    (submission / PNG).write_bytes(png_declaring(SIZE, SIZE, rows=SIZE + 1))
    code, path, message = _only_problem(submission)
    assert (code, path) == ("undecodable", PNG) and "more than" in message


def test_a_png_whose_stream_has_no_end_is_truncated(submission: Path) -> None:
    line = b"\x00" + bytes(3 * SIZE)
    unfinished = zlib.compressobj()
    stream = unfinished.compress(line * SIZE) + unfinished.flush(zlib.Z_SYNC_FLUSH)  # every row, no end
    (submission / PNG).write_bytes(_png(_ihdr(SIZE, SIZE), stream))
    assert _only_problem(submission)[:2] == ("truncated", PNG)


def test_interlaced_pngs_are_checked_pass_by_pass(submission: Path) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE + 3, 3), dtype=np.uint8)
    (submission / PNG).write_bytes(_interlaced_png(pixels))
    assert _validate(submission).problems == ()
    with Image.open(submission / PNG) as image:
        assert np.array_equal(np.asarray(image), pixels)  # the hand-made file is what Pillow reads
    (submission / PNG).write_bytes(_interlaced_png(pixels, missing=5))
    assert _only_problem(submission)[:2] == ("truncated", PNG)


@pytest.mark.parametrize("fraction", [1 / 3, 0.9, 0.999])
@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"quality": 100, "subsampling": 0}])
def test_a_jpeg_cut_short_with_an_end_marker_is_truncated(
    submission: Path, fraction: float, options: dict[str, object]
) -> None:
    _replace_with_jpeg(submission, jpeg_cut_with_end_marker(fraction, **options))
    code, path, message = _only_problem(submission)
    assert (code, path) == ("truncated", JPG)
    assert "ends early" in message or "never coded" in message


def test_a_progressive_jpeg_cut_between_scans_is_truncated(submission: Path) -> None:
    data = noise_jpeg(progressive=True)
    first_scan = jpeg_layout(data).scans[0]
    _replace_with_jpeg(submission, data[: first_scan.data_end] + b"\xff\xd9")
    code, path, message = _only_problem(submission)
    assert (code, path) == ("truncated", JPG) and "never coded" in message


COMPLETE_JPEGS = {
    "baseline": noise_jpeg(),
    "progressive": noise_jpeg(progressive=True),
    "optimized": noise_jpeg(optimize=True),
    "4:4:4 quality 100": noise_jpeg(quality=100, subsampling=0),
    "quality 5": noise_jpeg(quality=5),
    "restart markers": noise_jpeg(restart_marker_blocks=3),
    "bytes after the end marker": noise_jpeg() + b"appended after EOI" * 10,
    "odd size": _image_bytes(9, size=(SIZE + 7, SIZE + 33), fmt="JPEG"),
}


@pytest.mark.parametrize("name", sorted(COMPLETE_JPEGS))
def test_complete_jpegs_are_valid(submission: Path, name: str) -> None:
    _replace_with_jpeg(submission, COMPLETE_JPEGS[name])
    assert _validate(submission).problems == ()


# --- images that lie about their size ----------------------------------------------------------


def test_an_image_above_the_maximum_is_refused_from_its_header(submission: Path) -> None:
    wide = SUBMISSION.max_side + 1
    (submission / PNG).write_bytes(png_declaring(wide, SIZE, rows=1))  # decoding would find it truncated too
    report = _validate(submission)
    (problem,) = report.problems
    assert (problem.code, problem.path) == ("too-large", PNG)
    assert f"{wide}x{SIZE}" in problem.message and str(SUBMISSION.max_side) in problem.message
    (entry,) = [entry for entry in report.manifest if entry.path == PNG]
    assert (entry.width, entry.height) == (wide, SIZE)


def test_an_image_at_the_maximum_is_valid(submission: Path) -> None:
    (submission / PNG).write_bytes(png_declaring(SUBMISSION.max_side, SIZE, rows=SIZE))
    assert _validate(submission).problems == ()


def test_a_decompression_bomb_is_too_large_and_warns_nobody(
    submission: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (submission / PNG).write_bytes(png_declaring(13000, 13000, rows=1))  # 169 million pixels declared
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = _validate(submission)
    assert _codes_and_paths(report) == [("too-large", PNG)]
    assert "13000x13000" in report.problems[0].message
    assert [str(warning.message) for warning in caught] == []
    assert capfd.readouterr().err == ""


def test_a_bomb_beyond_pillows_hard_limit_is_too_large(submission: Path) -> None:
    (submission / PNG).write_bytes(png_declaring(20000, 20000, rows=1))  # Pillow refuses to open it
    code, path, message = _only_problem(submission)
    assert (code, path) == ("too-large", PNG) and str(SUBMISSION.max_side) in message


# --- the same pixels in other bytes ------------------------------------------------------------


def test_a_re_encoded_image_is_a_duplicate_naming_the_first(submission: Path) -> None:
    with Image.open(submission / "amusement" / "0000.png") as image:
        image.save(submission / "sadness" / "0001.png", format="PNG", compress_level=0)
    code, path, message = _only_problem(submission)
    assert (code, path) == ("duplicate", "sadness/0001.png")
    assert "same pixels as amusement/0000.png" in message


def test_grayscale_and_its_rgb_copy_are_duplicates(submission: Path) -> None:
    gray = _image_bytes(8, mode="L")
    (submission / "awe" / "0000.png").write_bytes(gray)
    with Image.open(io.BytesIO(gray)) as image:
        image.convert("RGB").save(submission / "fear" / "0000.png", format="PNG")
    assert _codes_and_paths(_validate(submission)) == [("duplicate", "fear/0000.png"), ("grayscale", "awe/0000.png")]


def test_byte_duplicates_are_reported_once_and_headers_only_sees_no_pixels(submission: Path) -> None:
    original = (submission / "amusement" / "0000.png").read_bytes()
    (submission / "awe" / "0000.png").write_bytes(original)
    with Image.open(io.BytesIO(original)) as image:
        image.save(submission / "awe" / "0001.png", format="PNG", compress_level=0)
    messages = {p.path: p.message for p in _validate(submission).problems}
    assert set(messages) == {"awe/0000.png", "awe/0001.png"}
    assert "same bytes as amusement/0000.png" in messages["awe/0000.png"]
    assert "same pixels as amusement/0000.png" in messages["awe/0001.png"]
    assert _codes_and_paths(_validate(submission, check_images=False)) == [("duplicate", "awe/0000.png")]


# --- special files -----------------------------------------------------------------------------


def test_special_files_are_named_by_kind(submission: Path) -> None:
    os.mkfifo(submission / "fear" / "pipe.png")
    os.mkfifo(submission / "fear" / "target")
    (submission / "fear" / "link.png").symlink_to(submission / "fear" / "target")
    messages = {p.path: p.message for p in _validate(submission).problems}
    assert "is a FIFO (named pipe), not a regular file" in messages["fear/pipe.png"]
    assert "is a FIFO (named pipe), not a regular file" in messages["fear/link.png"]


def test_a_device_among_the_images_is_refused_by_type(submission: Path) -> None:
    null = os.stat("/dev/null")
    try:
        os.mknod(submission / "awe" / "device.png", 0o600 | 0o020000, null.st_rdev)  # a character device
    except PermissionError:
        pytest.skip("creating a device node needs privileges")
    (problem,) = _validate(submission).problems
    assert (problem.code, problem.path) == ("stray-file", "awe/device.png")
    assert "is a character device, not a regular file" in problem.message


def test_an_image_replaced_by_a_fifo_after_listing_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "0000.png"
    os.mkfifo(fifo)
    candidate = validate_module._Candidate("awe/0000.png", str(fifo), ".png")
    found: list[validate_module._Inspection] = []
    reader = threading.Thread(target=lambda: found.append(validate_module._inspect_image(candidate, True)),
                              daemon=True)
    reader.start()
    reader.join(timeout=30)  # a guard against the old behaviour (open blocks forever), not a timing test
    assert found, "reading a FIFO blocked"
    (inspection,) = found
    assert inspection.entry is None
    (problem,) = inspection.problems
    assert (problem.code, problem.path) == ("stray-file", "awe/0000.png") and "a FIFO" in problem.message


def test_submission_json_that_is_a_fifo_is_named_as_such(submission: Path) -> None:
    os.mkfifo(submission / "submission.json")
    code, path, message = _only_problem(submission)
    assert (code, path) == ("bad-metadata", "submission.json") and "is a FIFO (named pipe)" in message
