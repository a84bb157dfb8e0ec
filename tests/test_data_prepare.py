"""The EmoSet -> EICG subset index: counts, attributes, problems, determinism, atomic writes, reading back."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest
from fake_emoset import FakeEmoSet, make_fake_emoset

from emogen_bench import __version__, task
from emogen_bench.data import (
    INDEX_COLUMNS,
    INDEX_FILE,
    INDEX_FORMAT,
    PROBLEM_CODES,
    SUMMARY_FILE,
    SUMMARY_MD_FILE,
    EmoSetProblemsError,
    IndexRow,
    balanced_order,
    choose_attribute,
    index_digest,
    load_index,
    normalise_attribute,
    prepare_emoset,
    read_summary,
)
from emogen_bench.data import prepare as prepare_module
from emogen_bench.data.emoset import AnnotationError
from emogen_bench.errors import DataError, ExitCode, UsageError


@pytest.fixture
def fake(tmp_path: Path) -> FakeEmoSet:
    return make_fake_emoset(tmp_path / "emoset")


def _prepare(fake: FakeEmoSet, out: Path, **options: object):
    return prepare_emoset(fake.root, out, show_progress=False, **options)  # type: ignore[arg-type]


def _table(counter: Counter) -> dict[str, dict[str, int]]:
    """Expected ``{emotion: {split: n, total: n}}`` (plus a total row) from a description counter."""
    table = {}
    for emotion in task.EMOTION_NAMES:
        cells = {split: counter[(emotion, split)] for split in task.DATA.splits}
        table[emotion] = {**cells, "total": sum(cells.values())}
    table["total"] = {c: sum(table[e][c] for e in task.EMOTION_NAMES) for c in (*task.DATA.splits, "total")}
    return table


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- the attribute rule (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ({"scene": "amusement park", "object": ["Wine glass"]}, ("scene", "amusement_park", "amusement park")),
        ({"object": ["Wine glass", "Dog"]}, ("object", "wine_glass", "Wine glass")),
        ({"scene": None, "object": ["Christmas tree"]}, ("object", "christmas_tree", "Christmas tree")),
        ({"scene": "  ", "object": ["Dog"]}, ("object", "dog", "Dog")),
        ({"object": []}, None),
        ({"brightness": 0.3, "facial_expression": "happy"}, None),
    ],
)
def test_choose_attribute_prefers_scene_then_first_object(annotation: dict, expected: tuple | None) -> None:
    chosen = choose_attribute(annotation)
    assert (None if chosen is None else (chosen.kind, chosen.name, chosen.original)) == expected


@pytest.mark.parametrize(
    ("annotation", "fragment"),
    [
        ({"scene": 3}, "'scene'"),
        ({"object": "Dog"}, "'object'"),
        ({"object": ["Dog", 4]}, "'object'"),
        ({"object": [""]}, "'object'"),
        (["scene", "beach"], "not an object"),
    ],
)
def test_choose_attribute_rejects_wrong_types(annotation: object, fragment: str) -> None:
    with pytest.raises(AnnotationError, match=re.escape(fragment)):
        choose_attribute(annotation)


@pytest.mark.parametrize(
    ("label", "name"), [("Wine glass", "wine_glass"), ("amusement park", "amusement_park"), ("Beach", "beach")]
)
def test_normalise_attribute(label: str, name: str) -> None:
    assert normalise_attribute(label) == name


# --- prepare: what is kept, dropped, reported ---------------------------------------------------


def test_counts_and_drops_match_the_fake(fake: FakeEmoSet, tmp_path: Path) -> None:
    result = _prepare(fake, tmp_path / "index")
    assert result.counts == _table(fake.counts())
    assert result.rows == len(fake.kept())
    assert result.dropped["no_scene_or_object"] == _table(fake.dropped("no_scene_or_object"))
    assert result.dropped["problem"] == _table(fake.dropped("problem"))
    assert result.summary["listed"] == _table(fake.listed())
    for emotion in task.EMOTION_NAMES:
        for split in task.DATA.splits:
            parts = [result.counts[emotion][split]] + [table[emotion][split] for table in result.dropped.values()]
            assert sum(parts) == result.summary["listed"][emotion][split]


def test_rows_carry_the_described_attribute_and_image_hash(fake: FakeEmoSet, tmp_path: Path) -> None:
    result = _prepare(fake, tmp_path / "index")
    rows = {row.path: row for row in load_index(result.out_dir)}
    assert set(rows) == {image.image_path for image in fake.kept()}
    for image in fake.kept():
        row = rows[image.image_path]
        assert (row.id, row.emotion, row.emotion_id, row.split) == (
            image.id, image.emotion, task.EMOTION_IDS[image.emotion], image.split
        )
        assert (row.attribute, row.attribute_kind, row.attribute_original) == (
            image.attribute, image.attribute_kind, image.attribute_original
        )
        assert row.sha256 == hashlib.sha256(fake.image_file(image).read_bytes()).hexdigest()


def test_every_problem_is_reported_with_its_path(fake: FakeEmoSet, tmp_path: Path) -> None:
    result = _prepare(fake, tmp_path / "index")
    assert Counter((p.code, p.path) for p in result.problems) == fake.expected_problems()
    assert all(p.code in PROBLEM_CODES and p.message for p in result.problems)
    assert result.summary["problems"] == [p.to_dict() for p in result.problems]
    assert result.summary["problem_counts"] == dict(sorted(Counter(p.code for p in result.problems).items()))
    problem_images = {image.image_path for image in fake.images if image.outcome == "problem"}
    assert problem_images.isdisjoint(row.path for row in load_index(result.out_dir))


def test_summary_records_format_protocol_vocabulary(fake: FakeEmoSet, tmp_path: Path) -> None:
    given = str(fake.root) + os.sep
    result = prepare_emoset(given, tmp_path / "index", show_progress=False)
    summary = json.loads(result.summary_path.read_text(encoding="utf-8"))
    assert summary == result.summary
    assert summary["format"] == INDEX_FORMAT
    assert summary["format_version"] == task.DATA.index_format_version
    assert summary["protocol"] == task.PROTOCOL
    assert summary["benchmark_version"] == __version__
    assert summary["emoset_root"] == given
    assert summary["index"] == {
        "file": INDEX_FILE,
        "sha256": hashlib.sha256(result.index_path.read_bytes()).hexdigest(),
        "rows": len(fake.kept()),
        "images_hashed": True,
    }
    for kind in ("scene", "object"):
        expected = Counter(image.attribute for image in fake.kept() if image.attribute_kind == kind)
        assert summary["attributes"][kind]["counts"] == dict(expected)
        assert summary["attributes"][kind]["vocabulary_size"] == len(expected)
    names = {kind: {i.attribute for i in fake.kept() if i.attribute_kind == kind} for kind in ("scene", "object")}
    assert summary["attributes"]["shared"] == sorted(names["scene"] & names["object"])
    assert summary["attributes"]["vocabulary_size"] == len(names["scene"] | names["object"])


def test_summary_md_shows_the_counts(fake: FakeEmoSet, tmp_path: Path) -> None:
    result = _prepare(fake, tmp_path / "index")
    markdown = result.summary_md_path.read_text(encoding="utf-8")
    for emotion in task.EMOTION_NAMES:
        cells = [result.counts[emotion][c] for c in (*task.DATA.splits, "total")]
        assert f"| {emotion} | " + " | ".join(map(str, cells)) + " |" in markdown
    assert f"Problems ({len(fake.expected_problems())}" in markdown


def test_index_file_layout(fake: FakeEmoSet, tmp_path: Path) -> None:
    result = _prepare(fake, tmp_path / "index")
    with open(result.index_path, encoding="utf-8", newline="") as handle:
        records = list(csv.reader(handle))
    assert tuple(records[0]) == INDEX_COLUMNS
    assert INDEX_COLUMNS == (
        "id", "emotion", "emotion_id", "split", "attribute", "attribute_kind", "attribute_original", "path", "sha256"
    )
    for record in records[1:]:
        path = record[INDEX_COLUMNS.index("path")]
        assert "\\" not in path and not Path(path).is_absolute() and (fake.root / path).is_file()
    assert b"\r\n" not in result.index_path.read_bytes()
    assert sorted(os.listdir(result.out_dir)) == sorted([INDEX_FILE, SUMMARY_FILE, SUMMARY_MD_FILE])


# --- determinism ----------------------------------------------------------------------------------


def test_rows_in_canonical_order_and_runs_identical(fake: FakeEmoSet, tmp_path: Path) -> None:
    first = _prepare(fake, tmp_path / "a")
    for split_file in task.DATA.split_files:  # the order of entries in the split files must not matter
        path = fake.root / split_file
        path.write_text(json.dumps(list(reversed(json.loads(path.read_text())))), encoding="utf-8")
    second = _prepare(fake, tmp_path / "b")
    assert first.index_path.read_bytes() == second.index_path.read_bytes()
    assert first.index_digest == second.index_digest
    rows = load_index(first.out_dir)
    expected = sorted(rows, key=lambda r: (r.emotion_id, task.DATA.splits.index(r.split), r.id))
    assert rows == expected


def test_integer_ids_are_strings_in_numeric_order(tmp_path: Path) -> None:
    fake = make_fake_emoset(tmp_path / "emoset", per_split={"awe": {"train": 12}}, edge_cases=False, int_ids=True)
    rows = load_index(_prepare(fake, tmp_path / "index").out_dir)
    assert [row.id for row in rows] == [str(n) for n in range(12)]
    assert {row.id for row in rows} == {image.id for image in fake.kept()}


# --- out_dir: refusal, overwrite, atomicity --------------------------------------------------------


def test_refuses_to_overwrite_an_index(fake: FakeEmoSet, tmp_path: Path) -> None:
    out = tmp_path / "index"
    _prepare(fake, out)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    with pytest.raises(UsageError, match="already holds an index.*--overwrite"):
        _prepare(fake, out)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    result = _prepare(fake, out, overwrite=True)
    assert result.index_path.read_bytes() == before[INDEX_FILE]
    assert _leftovers(tmp_path) == []


def test_never_deletes_other_files(fake: FakeEmoSet, tmp_path: Path) -> None:
    out = tmp_path / "index"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="notes.txt"):
        _prepare(fake, out, overwrite=True)
    assert os.listdir(out) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        _prepare(fake, tmp_path / "file")


def test_empty_out_dir_is_used(fake: FakeEmoSet, tmp_path: Path) -> None:
    out = tmp_path / "index"
    out.mkdir()
    assert _prepare(fake, out).index_path.is_file()


def test_interrupted_write_leaves_no_index(fake: FakeEmoSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = Path.write_bytes

    def interrupted(self: Path, data: bytes) -> int:
        if self.name == SUMMARY_MD_FILE:
            raise KeyboardInterrupt
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _prepare(fake, tmp_path / "index")
    assert not (tmp_path / "index").exists()
    assert _leftovers(tmp_path) == []


def test_failed_replacement_keeps_the_old_index(
    fake: FakeEmoSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "index"
    _prepare(fake, out)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    real_rename = os.rename

    def failing(source: str | Path, target: str | Path) -> None:
        if Path(source).name.endswith(".partial"):
            raise OSError(28, "No space left on device")
        real_rename(source, target)

    monkeypatch.setattr(prepare_module.os, "rename", failing)
    with pytest.raises(UsageError, match="No space left"):
        _prepare(fake, out, overwrite=True)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert _leftovers(tmp_path) == []


# --- strict mode and unusable folders --------------------------------------------------------------


def test_strict_raises_and_writes_nothing(fake: FakeEmoSet, tmp_path: Path) -> None:
    with pytest.raises(EmoSetProblemsError) as caught:
        _prepare(fake, tmp_path / "index", strict=True)
    assert caught.value.exit_code == ExitCode.DATA
    assert Counter((p.code, p.path) for p in caught.value.problems) == fake.expected_problems()
    assert str(len(caught.value.problems)) in str(caught.value)
    assert not (tmp_path / "index").exists() and _leftovers(tmp_path) == []


def test_strict_passes_a_clean_emoset(tmp_path: Path) -> None:
    fake = make_fake_emoset(tmp_path / "emoset", edge_cases=False)
    result = _prepare(fake, tmp_path / "index", strict=True)
    assert result.problems == () and result.rows == len(fake.images)


def test_not_an_emoset(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    everything = r"train\.json, val\.json, test\.json, image/, annotation/ missing"
    with pytest.raises(DataError, match=f"not an EmoSet folder: {everything}"):
        prepare_emoset(empty, tmp_path / "index", show_progress=False)
    fake = make_fake_emoset(tmp_path / "emoset", edge_cases=False)
    (fake.root / "val.json").unlink()
    with pytest.raises(DataError, match=r"not an EmoSet folder: val\.json missing"):
        _prepare(fake, tmp_path / "index")
    with pytest.raises(UsageError, match="does not exist"):
        prepare_emoset(tmp_path / "nowhere", tmp_path / "index", show_progress=False)
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize(("content", "fragment"), [("[[", "is not valid JSON"), ('{"a": 1}', "expected a list")])
def test_unreadable_split_file(tmp_path: Path, content: str, fragment: str) -> None:
    fake = make_fake_emoset(tmp_path / "emoset", edge_cases=False)
    (fake.root / "test.json").write_text(content)
    with pytest.raises(DataError, match=f"test.json.*{fragment}"):
        _prepare(fake, tmp_path / "index")


def test_duplicates_are_problems(tmp_path: Path) -> None:
    fake = make_fake_emoset(tmp_path / "emoset", per_split={"awe": {"train": 3}}, edge_cases=False)
    path = fake.root / "train.json"
    entries = json.loads(path.read_text())
    entries[1][1] = entries[0][1]  # two images, one id
    entries.append(list(entries[2]))  # one image listed twice in train
    path.write_text(json.dumps(entries))
    result = _prepare(fake, tmp_path / "index")
    assert Counter((p.code, p.path) for p in result.problems) == Counter(
        {("duplicate_id", entries[0][2]): 1, ("duplicate_id", entries[1][2]): 1, ("duplicate_entry", entries[2][2]): 1}
    )
    assert result.rows == 0
    assert result.dropped["problem"]["awe"]["train"] == 4


def test_empty_and_unreadable_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake_emoset(tmp_path / "emoset", per_split={"fear": {"test": 3}}, edge_cases=False)
    empty, unreadable, good = fake.images
    fake.image_file(empty).write_bytes(b"")
    real_hash = prepare_module.sha256_file

    def hash_or_fail(path: str | Path) -> str:
        if Path(path).name == Path(unreadable.image_path).name:
            raise PermissionError(13, "Permission denied")
        return real_hash(path)

    monkeypatch.setattr(prepare_module, "sha256_file", hash_or_fail)
    result = _prepare(fake, tmp_path / "index")
    assert [(p.code, p.path) for p in result.problems] == sorted(
        [("image_empty", empty.image_path), ("image_unreadable", unreadable.image_path)], key=lambda p: p[1]
    )
    assert [row.path for row in load_index(result.out_dir)] == [good.image_path]
    assert result.dropped["problem"]["fear"]["test"] == 2
    with pytest.raises(EmoSetProblemsError):
        _prepare(fake, tmp_path / "strict", strict=True)


def test_no_hash_leaves_sha_empty_and_rows_otherwise_equal(fake: FakeEmoSet, tmp_path: Path) -> None:
    hashed = load_index(_prepare(fake, tmp_path / "a").out_dir)
    result = _prepare(fake, tmp_path / "b", hash_files=False)
    plain = load_index(result.out_dir)
    assert all(row.sha256 == "" for row in plain)
    assert [(r.path, r.attribute) for r in plain] == [(r.path, r.attribute) for r in hashed]
    assert result.summary["index"]["images_hashed"] is False


def test_quiet_run_prints_nothing(fake: FakeEmoSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _prepare(fake, tmp_path / "index")
    assert capsys.readouterr() == ("", "")


# --- reading an index back -----------------------------------------------------------------------


def test_load_index_roundtrip_and_digest(fake: FakeEmoSet, tmp_path: Path) -> None:
    result = _prepare(fake, tmp_path / "index")
    rows = load_index(result.out_dir)
    assert rows == load_index(result.index_path)
    assert all(isinstance(row, IndexRow) and isinstance(row.emotion_id, int) for row in rows)
    expected = "sha256:" + hashlib.sha256(result.index_path.read_bytes()).hexdigest()
    assert result.index_digest == expected
    assert index_digest(result.out_dir) == expected
    assert index_digest(list(reversed(rows))) == expected
    assert index_digest(rows[1:]) != expected


def _rewrite(out: Path, text: str) -> None:
    """Replace index.csv and record its new hash, so only the content checks can object."""
    (out / INDEX_FILE).write_text(text, encoding="utf-8")
    summary = json.loads((out / SUMMARY_FILE).read_text())
    summary["index"]["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (out / SUMMARY_FILE).write_text(json.dumps(summary))


def test_load_index_rejects_damage(tmp_path: Path) -> None:
    fake = make_fake_emoset(tmp_path / "emoset", edge_cases=False, per_split=1)
    out = _prepare(fake, tmp_path / "index").out_dir
    text = (out / INDEX_FILE).read_text(encoding="utf-8")

    (out / INDEX_FILE).write_text(text + text.splitlines()[1] + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="changed after it was written"):
        load_index(out)
    _rewrite(out, text.replace("attribute_kind", "kind", 1))
    with pytest.raises(DataError, match="header"):
        load_index(out)
    _rewrite(out, text.replace(",amusement,0,", ",joy,0,", 1))
    with pytest.raises(DataError, match=r"line 2: unknown emotion 'joy'"):
        load_index(out)
    _rewrite(out, text.replace(",awe,1,", ",awe,2,", 1))
    with pytest.raises(DataError, match="emotion_id '2' does not match"):
        load_index(out)
    _rewrite(out, text)
    assert len(load_index(out)) == len(fake.images)

    summary = json.loads((out / SUMMARY_FILE).read_text())
    (out / SUMMARY_FILE).write_text(json.dumps({**summary, "format_version": 99}))
    with pytest.raises(DataError, match="version 99"):
        read_summary(out)
    (out / SUMMARY_FILE).unlink()
    with pytest.raises(DataError, match="summary.json is missing"):
        load_index(out)
    (out / INDEX_FILE).unlink()
    with pytest.raises(UsageError, match="holds no index"):
        load_index(out)
    with pytest.raises(UsageError, match="does not exist"):
        load_index(tmp_path / "nowhere")


# --- balanced_order ------------------------------------------------------------------------------


def _rows(sizes: dict[int, int], split: str = "train") -> list[IndexRow]:
    return [
        IndexRow(f"{name}_{i}", name, e, split, "beach", "scene", "Beach", f"image/{name}/{name}_{i}.jpg")
        for e, n in sizes.items()
        for name in (task.EMOTION_NAMES[e],)
        for i in range(n)
    ]


def test_balanced_order_pads_every_emotion_to_the_largest() -> None:
    sizes = {0: 7, 1: 2, 3: 3, 6: 1}
    rows = _rows(sizes) + _rows({0: 4, 2: 9}, split="val")
    order = balanced_order(rows, seed=5)
    largest = max(sizes.values())
    assert len(order) == largest * len(sizes)
    assert all(rows[i].split == "train" for i in order)
    per_emotion = Counter(rows[i].emotion_id for i in order)
    assert per_emotion == {e: largest for e in sizes}
    uses = Counter(order)
    for emotion, n in sizes.items():
        counts = [uses[i] for i, row in enumerate(rows) if row.split == "train" and row.emotion_id == emotion]
        assert len(counts) == n and min(counts) >= largest // n and max(counts) - min(counts) <= 1


def test_balanced_order_is_seeded_and_shuffled() -> None:
    rows = _rows({0: 6, 1: 4, 5: 5})
    assert balanced_order(rows, seed=1) == balanced_order(rows, seed=1)
    assert balanced_order(rows) == balanced_order(rows, seed=task.DEFAULT_SEED)
    assert balanced_order(rows, seed=1) != balanced_order(rows, seed=2)
    even = _rows({0: 5, 1: 5, 2: 5})  # nothing to sample: only the shuffle can differ between seeds
    assert sorted(balanced_order(even, seed=1)) == list(range(15))
    assert balanced_order(even, seed=1) != balanced_order(even, seed=2)
    emotions = [even[i].emotion_id for i in balanced_order(even, seed=1)]
    assert sum(a != b for a, b in zip(emotions, emotions[1:])) > 2  # interleaved, not grouped by emotion


def test_balanced_order_split_choice() -> None:
    rows = _rows({0: 2, 1: 1}) + _rows({0: 1, 4: 3}, split="test")
    assert Counter(rows[i].emotion_id for i in balanced_order(rows, split=None)) == {0: 3, 1: 3, 4: 3}
    assert Counter(rows[i].emotion_id for i in balanced_order(rows, split="test")) == {0: 3, 4: 3}
    assert balanced_order(rows, split="val") == []
    with pytest.raises(UsageError, match="unknown split"):
        balanced_order(rows, split="training")


def test_balanced_order_on_a_prepared_index(fake: FakeEmoSet, tmp_path: Path) -> None:
    rows = load_index(_prepare(fake, tmp_path / "index").out_dir)
    train = Counter(image.emotion for image in fake.kept() if image.split == "train")
    order = balanced_order(rows)
    assert Counter(rows[i].emotion for i in order) == {e: max(train.values()) for e in train}


def test_hostile_files_in_emoset_are_problems_never_hangs(tmp_path: Path) -> None:
    fake = make_fake_emoset(tmp_path / "emoset", per_split={"fear": {"test": 4}}, edge_cases=False)
    fifo_annotation, linked, deep, good = fake.images
    annotation = fake.root / fifo_annotation.annotation_path
    annotation.unlink()
    os.mkfifo(annotation)  # reading it would block the scan forever
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(fake.image_file(linked).read_bytes())
    fake.image_file(linked).unlink()
    fake.image_file(linked).symlink_to(outside)
    (fake.root / deep.annotation_path).write_text("[" * 5000 + "]" * 5000)
    result = _prepare(fake, tmp_path / "index")
    assert {(p.code, p.path) for p in result.problems} == {
        ("annotation_unreadable", fifo_annotation.annotation_path),
        ("image_outside", linked.image_path),
        ("annotation_invalid_json", deep.annotation_path),
    }
    assert [row.path for row in load_index(result.out_dir)] == [good.image_path]


def test_the_index_is_never_written_inside_emoset(fake: FakeEmoSet, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="inside the EmoSet folder"):
        _prepare(fake, fake.root / "index")
    assert not (fake.root / "index").exists()


def test_a_split_file_nested_too_deeply_is_a_data_error(fake: FakeEmoSet) -> None:
    (fake.root / "train.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"train\.json: the split file is nested too deeply"):
        _prepare(fake, fake.root.parent / "index")
