"""Submission validation: every problem code, with its path, and the properties of the report."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import shutil
import socket
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from emogen_bench.errors import UsageError
from emogen_bench.submission import validate as validate_module
from emogen_bench.submission import validate_submission, write_example_submission
from emogen_bench.submission.validate import PROBLEM_CODES, ValidationReport
from emogen_bench.task import EMOTION_NAMES, PROTOCOL, SUBMISSION

PER_EMOTION = 2
SIZE = 256


@functools.cache
def _image_bytes(seed: int, *, mode: str = "RGB", size: tuple[int, int] = (SIZE, SIZE), fmt: str = "PNG") -> bytes:
    """A distinct image per seed, encoded in memory: a flat colour and a noise patch (small and fast)."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((size[1], size[0], 3), dtype=np.uint8)
    pixels[...] = rng.integers(0, 256, 3, dtype=np.uint8)
    pixels[:16, :16] = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def build_submission(root: Path, per_emotion: int = PER_EMOTION) -> Path:
    """A valid reduced submission: ``per_emotion`` distinct 256x256 RGB PNGs per emotion."""
    for emotion_id, emotion in enumerate(EMOTION_NAMES):
        (root / emotion).mkdir(parents=True)
        for index in range(per_emotion):
            (root / emotion / f"{index:04d}.png").write_bytes(_image_bytes(1000 + emotion_id * 100 + index))
    return root


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_submission(tmp_path_factory.mktemp("template") / "submission")


@pytest.fixture
def submission(_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a valid reduced submission, for one test to break."""
    return Path(shutil.copytree(_template, tmp_path / "submission"))


def _validate(root: Path, **kwargs: object) -> ValidationReport:
    kwargs.setdefault("per_emotion", PER_EMOTION)
    kwargs.setdefault("show_progress", False)
    return validate_submission(root, **kwargs)  # type: ignore[arg-type]


def _codes_and_paths(report: ValidationReport) -> list[tuple[str, str]]:
    return sorted((problem.code, problem.path) for problem in report.problems)


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes | str | None]]:
    """Every entry under ``root``: mode, mtime and content (bytes, link target, or None for folders)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if path.is_symlink():
                content: bytes | str | None = os.readlink(path)
            elif path.is_dir():
                content = None
            else:
                content = path.read_bytes()
            state[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, content)
    state["."] = (root.stat().st_mode, root.stat().st_mtime_ns, None)
    return state


# --- a valid submission -----------------------------------------------------------------------


def test_valid_submission(submission: Path) -> None:
    report = _validate(submission)
    assert report.valid, report.problems
    assert report.problems == ()
    assert report.protocol == PROTOCOL
    assert report.run_kind == "reduced" and report.per_emotion == PER_EMOTION
    assert report.counts == {emotion: PER_EMOTION for emotion in EMOTION_NAMES}
    assert [entry.path for entry in report.manifest] == sorted(
        f"{emotion}/{index:04d}.png" for emotion in EMOTION_NAMES for index in range(PER_EMOTION)
    )
    for entry in report.manifest:
        data = (submission / entry.path).read_bytes()
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert (entry.width, entry.height, entry.mode, entry.format) == (SIZE, SIZE, "RGB", "PNG")
    assert report.metadata is None and report.metadata_sha256 is None


def test_digest_equals_independent_recomputation(submission: Path) -> None:
    lines = sorted(
        f"{path.relative_to(submission).as_posix()}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n"
        for path in submission.rglob("*.png")
    )
    expected = "sha256:" + hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
    assert _validate(submission).digest == expected


def test_digest_ignores_metadata_and_changes_with_any_image_byte(submission: Path) -> None:
    before = _validate(submission).digest
    (submission / "submission.json").write_text('{"method": "m"}')
    assert _validate(submission).digest == before
    (submission / "awe" / "0001.png").write_bytes(_image_bytes(424242))
    assert _validate(submission).digest != before


def test_report_independent_of_listing_order(submission: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (submission / "amusement" / "notes.txt").write_text("x")
    (submission / "fear" / "0001.png").write_bytes(b"garbage")
    forward = _validate(submission).to_dict()
    real_scandir = os.scandir

    class ReversedScandir:
        def __init__(self, path: str) -> None:
            with real_scandir(path) as iterator:
                self.entries = list(iterator)[::-1]

        def __enter__(self) -> list[os.DirEntry[str]]:
            return self.entries

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(validate_module.os, "scandir", ReversedScandir)
    assert _validate(submission).to_dict() == forward


def test_results_identical_with_one_and_four_workers(submission: Path) -> None:
    (submission / "amusement" / "0001.png").write_bytes(_image_bytes(1, fmt="JPEG"))
    (submission / "awe" / "0000.png").write_bytes(_image_bytes(1000 + 100 * 2))  # duplicate of contentment/0000.png
    data = (submission / "anger" / "0000.png").read_bytes()
    (submission / "anger" / "0000.png").write_bytes(data[: len(data) // 2])
    (submission / "fear" / "0002.png").write_bytes(_image_bytes(5, mode="RGBA"))
    one = _validate(submission, workers=1).to_dict()
    four = _validate(submission, workers=4).to_dict()
    assert one == four
    assert not one["valid"] and len(one["problems"]) >= 4


def test_never_writes_into_the_submission(submission: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(_image_bytes(7))
    (submission / "amusement" / "link.png").symlink_to(outside)
    (submission / "awe" / "dead.png").symlink_to(submission / "nothing.png")
    (submission / "notes.txt").write_text("hello")
    (submission / "extras").mkdir()
    (submission / "submission.json").write_text("{not json")
    (submission / "fear" / "0001.png").write_bytes(b"")
    before = _snapshot(submission)
    _validate(submission)
    _validate(submission, check_images=False)
    assert _snapshot(submission) == before


def test_official_run_uses_the_policy_count(submission: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    official = _validate(submission, per_emotion=None)
    assert official.run_kind == "official" and official.per_emotion == SUBMISSION.images_per_emotion
    assert _codes_and_paths(official) == sorted(("too-few-images", emotion) for emotion in EMOTION_NAMES)
    assert "not the official protocol" not in official.run_label

    policy = dataclasses.replace(SUBMISSION, images_per_emotion=PER_EMOTION)
    monkeypatch.setattr(validate_module, "SUBMISSION", policy)
    report = _validate(submission, per_emotion=None)
    assert report.valid and report.run_kind == "official"


def test_reduced_run_counts_are_exact(submission: Path) -> None:
    reduced = _validate(submission, per_emotion=PER_EMOTION)
    assert reduced.valid and reduced.run_kind == "reduced"
    assert reduced.run_label == f"reduced run: {PER_EMOTION} images per emotion (not the official protocol)"
    assert reduced.to_dict()["run"] == {"kind": "reduced", "per_emotion": PER_EMOTION, "label": reduced.run_label}
    more = _validate(submission, per_emotion=PER_EMOTION + 1)
    assert {problem.code for problem in more.problems} == {"too-few-images"}
    assert len(more.problems) == len(EMOTION_NAMES)


@pytest.mark.parametrize("per_emotion", [0, 1, SUBMISSION.images_per_emotion + 1, True, "2", 2.0])
def test_bad_per_emotion_is_a_usage_error(submission: Path, per_emotion: object) -> None:
    with pytest.raises(UsageError, match="per-emotion"):
        _validate(submission, per_emotion=per_emotion)


def test_path_must_be_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        _validate(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        _validate(tmp_path / "file")


def test_refuses_to_run_when_truncated_images_are_tolerated(submission: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(UsageError, match="LOAD_TRUNCATED_IMAGES"):
        _validate(submission)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # left as found


def test_pil_global_state_unchanged(submission: Path) -> None:
    before = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
    _validate(submission)
    assert (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS) == before


# --- one breakage at a time -------------------------------------------------------------------

Breakage = Callable[[Path, Path], None]


def _write(rel: str, data: bytes, *, replaces: str | None = None) -> Breakage:
    """A breakage that writes ``data`` at ``rel``, removing ``replaces`` first."""

    def apply(root: Path, outside: Path) -> None:
        if replaces:
            (root / replaces).unlink()
        (root / rel).write_bytes(data)

    return apply


def _put(rel: str, data: bytes, code: str, *, replaces: str | None = None) -> tuple[Breakage, list[tuple[str, str]]]:
    """Write ``data`` at ``rel``; exactly one problem, ``code`` at ``rel``, is expected."""
    return _write(rel, data, replaces=replaces), [(code, rel)]


def _link(rel: str, target: Callable[[Path, Path], Path], *, replace: bool = False) -> Breakage:
    """A breakage that makes ``rel`` a symbolic link to ``target(root, outside)``."""

    def apply(root: Path, outside: Path) -> None:
        if replace:
            (root / rel).unlink()
        (root / rel).symlink_to(target(root, outside))

    return apply


def _truncated(keep: Callable[[int], int], fmt: str = "PNG") -> bytes:
    data = _image_bytes(77, fmt=fmt)
    return data[: keep(len(data))]


def _corrupt_middle() -> bytes:
    data = _image_bytes(5)
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 16]) + data[middle + 16 :]


def png_declaring(width: int, height: int, rows: int) -> bytes:
    """An 8-bit RGB PNG whose header says ``width`` x ``height`` and whose pixel stream holds ``rows`` rows.

    Every chunk checksum is right and IEND is there: only the row count can give it away.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    line = b"\x00" + bytes((7 * i) % 251 for i in range(3 * width))  # filter byte 0, then the samples
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    stream = zlib.compress(line * rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


@functools.cache
def noise_jpeg(seed: int = 0, **options: object) -> bytes:
    """A 256x256 JPEG of noise (most of the file is the coded scan); ``options`` go to Pillow's encoder."""
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def jpeg_cut_with_end_marker(fraction: float = 1 / 3, **options: object) -> bytes:
    """A noise JPEG cut after ``fraction`` of its bytes, an end-of-image marker appended: Pillow decodes it."""
    data = noise_jpeg(**options)
    return data[: int(len(data) * fraction)] + b"\xff\xd9"


def _recompressed_copy(source: str, target: str) -> Breakage:
    """A breakage that saves the pixels of ``source`` again at ``target``: other bytes, the same pixels."""

    def apply(root: Path, outside: Path) -> None:
        with Image.open(root / source) as image:
            image.save(root / target, format="PNG", compress_level=1)
        assert (root / target).read_bytes() != (root / source).read_bytes()

    return apply


def _socket_at(rel: str) -> Breakage:
    def apply(root: Path, outside: Path) -> None:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(root / rel))

    return apply


def _make_file_named_emotion(root: Path, outside: Path) -> None:
    shutil.rmtree(root / "amusement")
    (root / "amusement").write_bytes(b"")


def _animated_png() -> bytes:
    frames = [Image.open(io.BytesIO(_image_bytes(seed))) for seed in (11, 12)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


PNG = "excitement/0000.png"  # the image the per-file breakages below replace
JPG = "excitement/0000.jpg"

BREAKAGES: dict[str, tuple[Breakage, list[tuple[str, str]]]] = {
    "emotion-is-a-file": (_make_file_named_emotion, [("not-a-directory", "amusement")]),
    "missing-emotion": (lambda root, _: shutil.rmtree(root / "awe"), [("missing-emotion", "awe")]),
    "unknown-folder": (lambda root, _: (root / "extras").mkdir(), [("unknown-folder", "extras")]),
    "wrong-case-folder": (
        lambda root, _: (root / "awe").rename(root / "Awe"),
        [("missing-emotion", "awe"), ("unknown-folder", "Awe")],
    ),
    "nested-folder": (lambda root, _: (root / "fear" / "more").mkdir(), [("nested-folder", "fear/more")]),
    "too-few-images": (lambda root, _: (root / "anger" / "0001.png").unlink(), [("too-few-images", "anger")]),
    "too-many-images": (_write("anger/0002.png", _image_bytes(31337)), [("too-many-images", "anger")]),
    "empty-file": _put(PNG, b"", "empty-file"),
    "undecodable": _put(PNG, b"this is not an image at all" * 10, "undecodable"),
    "corrupt-png-data": _put(PNG, _corrupt_middle(), "undecodable"),
    "truncated-png-half": _put(PNG, _truncated(lambda n: n // 2), "truncated"),
    "truncated-png-last-byte": _put(PNG, _truncated(lambda n: n - 1), "truncated"),
    "truncated-png-no-iend": _put(PNG, _truncated(lambda n: n - 12), "truncated"),
    "truncated-jpeg": _put(JPG, _truncated(lambda n: n - 1, "JPEG"), "truncated", replaces=PNG),
    "png-missing-rows": _put(PNG, png_declaring(SIZE, SIZE, rows=3), "truncated"),
    "png-extra-rows": _put(PNG, png_declaring(SIZE, SIZE, rows=SIZE + 1), "undecodable"),
    "jpeg-cut-with-end-marker": _put(JPG, jpeg_cut_with_end_marker(), "truncated", replaces=PNG),
    "too-large": _put(PNG, png_declaring(SUBMISSION.max_side + 1, SIZE, rows=SIZE), "too-large"),
    "unsupported-extension": (
        lambda root, _: (root / PNG).rename(root / "excitement" / "0000.webp"),
        [("too-few-images", "excitement"), ("unsupported-format", "excitement/0000.webp")],
    ),
    "jpeg-named-png": _put(PNG, _image_bytes(3, fmt="JPEG"), "unsupported-format"),
    "webp-named-png": _put(PNG, _image_bytes(3, fmt="WEBP"), "unsupported-format"),
    "animated-png": _put(PNG, _animated_png(), "unsupported-format"),
    "too-small": _put(PNG, _image_bytes(4, size=(SIZE - 1, 400)), "too-small"),
    "mode-rgba": _put(PNG, _image_bytes(4, mode="RGBA"), "unsupported-mode"),
    "mode-la": _put(PNG, _image_bytes(4, mode="LA"), "unsupported-mode"),
    "mode-p": _put(PNG, _image_bytes(4, mode="P"), "unsupported-mode"),
    "mode-i16": _put(PNG, _image_bytes(4, mode="I;16"), "unsupported-mode"),
    "mode-1": _put(PNG, _image_bytes(4, mode="1"), "unsupported-mode"),
    "mode-cmyk": _put(JPG, _image_bytes(4, mode="CMYK", fmt="JPEG"), "unsupported-mode", replaces=PNG),
    "duplicate": (
        lambda root, _: shutil.copyfile(root / "amusement" / "0000.png", root / "awe" / "0001.png"),
        [("duplicate", "awe/0001.png")],
    ),
    "same-pixels-other-bytes": (
        _recompressed_copy("amusement/0000.png", "awe/0001.png"),
        [("duplicate", "awe/0001.png")],
    ),
    "symlink-to-image-inside": (
        _link("awe/0001.png", lambda root, _: root / "amusement" / "0000.png", replace=True),
        [("duplicate", "awe/0001.png")],
    ),
    "symlink-outside": (_link("awe/0002.png", lambda _, outside: outside), [("symlink-outside", "awe/0002.png")]),
    "symlinked-folder-outside": (_link("extra", lambda _, outside: outside.parent), [("symlink-outside", "extra")]),
    "broken-symlink": (_link("awe/0002.png", lambda root, _: root / "gone.png"), [("broken-symlink", "awe/0002.png")]),
    "symlink-loop": (
        _link("awe/0002.png", lambda root, _: root / "awe" / "0002.png"),
        [("broken-symlink", "awe/0002.png")],
    ),
    "stray-file-in-emotion": _put("contentment/prompt.txt", b"a prompt", "stray-file"),
    "stray-file-top-level": _put("README.txt", b"hello", "stray-file"),
    "stray-fifo": (lambda root, _: os.mkfifo(root / "fear" / "pipe.png"), [("stray-file", "fear/pipe.png")]),
    "stray-socket": (_socket_at("fear/socket.png"), [("stray-file", "fear/socket.png")]),
    "bad-filename": (
        _write("contentment/bad\nname.png", _image_bytes(99)),
        [("bad-filename", "contentment/bad\\nname.png")],
    ),
    "metadata-not-json": _put("submission.json", b"{method: x}", "bad-metadata"),
    "metadata-wrong-type": _put("submission.json", b'{"method": "m", "steps": "50"}', "bad-metadata"),
    "metadata-seed-for-absent-image": _put(
        "submission.json", json.dumps({"method": "m", "seeds": {"awe/9999.png": 1}}).encode(), "bad-metadata"
    ),
    "metadata-is-a-folder": (lambda root, _: (root / "submission.json").mkdir(), [("bad-metadata", "submission.json")]),
    "metadata-is-a-fifo": (lambda root, _: os.mkfifo(root / "submission.json"), [("bad-metadata", "submission.json")]),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_each_breakage_gives_exactly_its_problem(submission: Path, tmp_path: Path, name: str) -> None:
    breakage, expected = BREAKAGES[name]
    outside = tmp_path / "outside" / "elsewhere.png"
    outside.parent.mkdir()
    outside.write_bytes(_image_bytes(55))
    breakage(submission, outside)
    report = _validate(submission)
    assert _codes_and_paths(report) == sorted(expected)
    assert not report.valid
    for problem in report.problems:
        assert problem.severity == PROBLEM_CODES[problem.code][0] == "error"
        assert problem.message


WARNINGS: dict[str, tuple[Breakage, list[tuple[str, str]]]] = {
    "ds-store": _put("amusement/.DS_Store", b"\0\0\0\1Bud1", "ignored-file"),
    "thumbs-db": _put("Thumbs.db", b"x", "ignored-file"),
    "grayscale": _put("amusement/0001.png", _image_bytes(6, mode="L"), "grayscale"),
    "unknown-metadata-key": _put("submission.json", b'{"method": "m", "guidence": 7.5}', "bad-metadata"),
}


@pytest.mark.parametrize("name", sorted(WARNINGS))
def test_warnings_keep_the_submission_valid(submission: Path, tmp_path: Path, name: str) -> None:
    breakage, expected = WARNINGS[name]
    breakage(submission, tmp_path)
    report = _validate(submission)
    assert report.valid
    assert _codes_and_paths(report) == expected
    assert all(problem.severity == "warning" for problem in report.problems)


def test_every_problem_code_is_exercised_and_documented() -> None:
    cases = [*BREAKAGES.values(), *WARNINGS.values()]
    exercised = {code for _, expected in cases for code, _ in expected} | {"unreadable"}  # test_unreadable_file
    assert exercised == set(PROBLEM_CODES)
    documentation = (Path(__file__).resolve().parents[1] / "docs" / "submission.md").read_text(encoding="utf-8")
    undocumented = [code for code in PROBLEM_CODES if f"| `{code}` | {PROBLEM_CODES[code][0]} |" not in documentation]
    assert undocumented == []


def test_duplicate_names_both_paths(submission: Path) -> None:
    shutil.copyfile(submission / "amusement" / "0000.png", submission / "awe" / "0001.png")
    (problem,) = _validate(submission).problems
    assert problem.path == "awe/0001.png" and "amusement/0000.png" in problem.message


def test_wrong_case_folder_suggests_the_spelling(submission: Path) -> None:
    (submission / "awe").rename(submission / "Awe")
    (problem,) = [p for p in _validate(submission).problems if p.code == "unknown-folder"]
    assert "'awe'" in problem.message


def test_metadata_error_names_the_key(submission: Path) -> None:
    (submission / "submission.json").write_text('{"method": "m", "steps": "50", "resolution": [512]}')
    messages = [p.message for p in _validate(submission).problems]
    assert any(m.startswith("steps:") for m in messages) and any(m.startswith("resolution:") for m in messages)


def test_unreadable_file(submission: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = str(submission / "awe" / "0000.png")

    def refusing_open(file: str, *args: object, **kwargs: object) -> object:
        if os.fspath(file) == target:
            raise PermissionError(13, "Permission denied", file)
        return open(file, *args, **kwargs)  # noqa: SIM115 - hands the handle to the caller

    monkeypatch.setattr(validate_module, "open", refusing_open, raising=False)
    report = _validate(submission)
    assert _codes_and_paths(report) == [("unreadable", "awe/0000.png")]
    assert "Permission denied" in report.problems[0].message
    assert "awe/0000.png" not in {entry.path for entry in report.manifest}


def test_every_problem_is_reported_at_once(submission: Path, tmp_path: Path) -> None:
    cases = [
        BREAKAGES["missing-emotion"],
        BREAKAGES["too-few-images"],
        BREAKAGES["nested-folder"],
        BREAKAGES["stray-file-in-emotion"],
        BREAKAGES["stray-file-top-level"],
        BREAKAGES["metadata-wrong-type"],
        _put("sadness/0000.png", _truncated(lambda n: n // 2), "truncated"),
        _put("sadness/0001.png", b"", "empty-file"),
        _put("contentment/0000.png", _image_bytes(4, size=(SIZE, 100)), "too-small"),
        _put("contentment/0001.png", _image_bytes(3, fmt="JPEG"), "unsupported-format"),
        _put("amusement/0001.png", _image_bytes(6, mode="L"), "grayscale"),
    ]
    for breakage, _ in cases:
        breakage(submission, tmp_path / "unused")
    report = _validate(submission)
    assert _codes_and_paths(report) == sorted(problem for _, expected in cases for problem in expected)
    severities = [problem.severity for problem in report.problems]
    assert severities == ["error"] * (len(cases) - 1) + ["warning"]


def test_no_decode_reads_headers_only(submission: Path) -> None:
    data = (submission / "fear" / "0000.png").read_bytes()
    (submission / "fear" / "0000.png").write_bytes(data[: len(data) // 2])
    (submission / "fear" / "0001.png").write_bytes(_image_bytes(4, mode="RGBA"))
    header_only = _validate(submission, check_images=False)
    assert not header_only.decoded
    assert _codes_and_paths(header_only) == [("unsupported-mode", "fear/0001.png")]
    decoded = _validate(submission)
    assert _codes_and_paths(decoded) == [("truncated", "fear/0000.png"), ("unsupported-mode", "fear/0001.png")]


def test_report_to_dict_is_json(submission: Path) -> None:
    (submission / "amusement" / "0001.png").write_bytes(b"")
    document = json.loads(json.dumps(_validate(submission).to_dict()))
    assert list(document) == [
        "protocol", "tool_version", "path", "valid", "run", "decoded", "counts", "n_errors", "n_warnings",
        "problems", "digest", "metadata_sha256", "metadata", "manifest",
    ]
    assert document["valid"] is False and document["n_errors"] == 1
    (problem,) = document["problems"]
    assert list(problem) == ["code", "severity", "path", "message"]
    assert (problem["code"], problem["severity"], problem["path"]) == ("empty-file", "error", "amusement/0001.png")
    assert len(document["manifest"]) == len(EMOTION_NAMES) * PER_EMOTION


# --- the example submission -------------------------------------------------------------------


def test_example_submission_is_valid_and_deterministic(tmp_path: Path) -> None:
    first = write_example_submission(tmp_path / "a", per_emotion=2, seed=5)
    second = write_example_submission(tmp_path / "b", per_emotion=2, seed=5)
    other = write_example_submission(tmp_path / "c", per_emotion=2, seed=6)
    report = _validate(first)
    assert report.valid and report.problems == ()
    assert report.metadata is not None and report.metadata.method == "synthetic-example"
    assert set(report.metadata.seeds or {}) == {entry.path for entry in report.manifest}
    assert report.digest == _validate(second).digest
    assert report.digest != _validate(other).digest
    assert (first / "submission.json").read_bytes() == (second / "submission.json").read_bytes()
    assert all((entry.width, entry.height, entry.mode) == (256, 256, "RGB") for entry in report.manifest)


def test_example_refuses_a_non_empty_folder_and_leaves_it_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        write_example_submission(out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left behind


def test_example_fills_an_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert write_example_submission(out) == out
    assert sorted(p.name for p in out.iterdir()) == sorted([*EMOTION_NAMES, "submission.json"])
