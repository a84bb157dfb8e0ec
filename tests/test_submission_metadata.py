"""``submission.json``: the schema's good and bad cases, reading and atomic writing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from emogen_bench.errors import InvalidInputError, UsageError
from emogen_bench.submission.metadata import (
    KNOWN_KEYS,
    SCHEMA_VERSION,
    SubmissionMetadata,
    check_metadata,
    metadata_to_json,
    parse_metadata,
    parse_metadata_json,
    read_metadata,
    write_metadata,
)

FULL: dict[str, Any] = {
    "schema_version": 1,
    "method": "EmoGen",
    "method_version": "c78a7e4",
    "base_model": "stable-diffusion-v1-5/stable-diffusion-v1-5@451f4fe",
    "seed_policy": "seed = base_seed + index",
    "seeds": {"awe/0001.png": 1, "amusement/0000.png": 0},
    "sampler": "UniPC multistep",
    "steps": 50,
    "guidance": 7.5,
    "resolution": [512, 512],
    "notes": "fp16",
}


def test_full_document_round_trips() -> None:
    metadata = SubmissionMetadata.from_dict(FULL)
    assert metadata.method == "EmoGen" and metadata.steps == 50 and metadata.guidance == 7.5
    assert metadata.resolution == (512, 512)
    assert metadata.schema_version == SCHEMA_VERSION == 1
    document = metadata.to_dict()
    assert list(document) == list(KNOWN_KEYS)  # documented key order
    assert list(document["seeds"]) == sorted(FULL["seeds"])
    assert document == {**FULL, "seeds": dict(sorted(FULL["seeds"].items()))}
    assert SubmissionMetadata.from_dict(json.loads(json.dumps(document))) == metadata


def test_only_method_is_required() -> None:
    metadata = SubmissionMetadata.from_dict({"method": "m"})
    assert metadata.to_dict() == {"schema_version": 1, "method": "m"}
    assert metadata.seeds is None and metadata.resolution is None


def test_null_means_absent() -> None:
    assert SubmissionMetadata.from_dict({"method": "m", "steps": None, "notes": None}).to_dict() == {
        "schema_version": 1,
        "method": "m",
    }


def test_integer_guidance_becomes_float() -> None:
    guidance = SubmissionMetadata.from_dict({"method": "m", "guidance": 7}).guidance
    assert isinstance(guidance, float) and guidance == 7.0


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"method": None}, "method"),
        ({"method": ""}, "method"),
        ({"method": "   "}, "method"),
        ({"method": 3}, "method"),
        ({"method_version": 2}, "method_version"),
        ({"base_model": {"id": "x"}}, "base_model"),
        ({"seed_policy": ["a"]}, "seed_policy"),
        ({"sampler": 1.5}, "sampler"),
        ({"notes": False}, "notes"),
        ({"steps": "50"}, "steps"),
        ({"steps": 0}, "steps"),
        ({"steps": 50.0}, "steps"),
        ({"steps": True}, "steps"),
        ({"guidance": "7.5"}, "guidance"),
        ({"guidance": True}, "guidance"),
        ({"guidance": float("inf")}, "guidance"),
        ({"resolution": [512]}, "resolution"),
        ({"resolution": [512, "512"]}, "resolution"),
        ({"resolution": "512x512"}, "resolution"),
        ({"resolution": [0, 512]}, "resolution"),
        ({"seeds": [1, 2]}, "seeds"),
        ({"seeds": {"awe/0000.png": "1"}}, "seeds['awe/0000.png']"),
        ({"seeds": {"awe/0000.png": 1.0}}, "seeds['awe/0000.png']"),
        ({"seeds": {"/abs/0000.png": 1}}, "seeds['/abs/0000.png']"),
        ({"seeds": {"awe/../fear/0000.png": 1}}, "seeds['awe/../fear/0000.png']"),
        ({"seeds": {"awe\\0000.png": 1}}, "seeds['awe\\\\0000.png']"),
        ({"seeds": {"joy/0000.png": 1}}, "seeds['joy/0000.png']"),
        ({"seeds": {"awe/0000.txt": 1}}, "seeds['awe/0000.txt']"),
        ({"schema_version": 2}, "schema_version"),
        ({"schema_version": 0}, "schema_version"),
        ({"schema_version": "1"}, "schema_version"),
    ],
)
def test_wrong_value_is_an_error_naming_the_key(change: dict[str, Any], key: str) -> None:
    document = {**FULL, **change}
    issues = check_metadata(document)
    assert [(issue.key, issue.severity) for issue in issues] == [(key, "error")]
    assert parse_metadata(document) == (None, issues)
    with pytest.raises(InvalidInputError, match=key.split("[")[0]):
        SubmissionMetadata.from_dict(document)


def test_every_bad_key_is_reported_at_once() -> None:
    issues = check_metadata({"steps": "x", "guidance": "y", "resolution": 3})
    assert sorted(issue.key or "" for issue in issues) == ["guidance", "method", "resolution", "steps"]


def test_newer_schema_version_says_to_upgrade() -> None:
    (issue,) = check_metadata({"method": "m", "schema_version": SCHEMA_VERSION + 1})
    assert "upgrade" in issue.message


@pytest.mark.parametrize("document", [[], "EmoGen", 3, None])
def test_document_must_be_an_object(document: object) -> None:
    (issue,) = check_metadata(document)
    assert issue.key is None and issue.severity == "error" and "JSON object" in issue.message


def test_unknown_key_is_a_warning_with_a_hint() -> None:
    metadata, issues = parse_metadata({"method": "m", "guidence": 7.5, "zzz": 1})
    assert [(issue.key, issue.severity) for issue in issues] == [("guidence", "warning"), ("zzz", "warning")]
    assert "'guidance'" in issues[0].message
    assert metadata is not None and metadata.guidance is None
    dropped = SubmissionMetadata.from_dict({"method": "m", "guidence": 7.5}).to_dict()
    assert dropped == {"schema_version": 1, "method": "m"}


def test_constructor_checks_fields() -> None:
    with pytest.raises(InvalidInputError, match="method"):
        SubmissionMetadata(method="")
    with pytest.raises(InvalidInputError, match="steps"):
        SubmissionMetadata(method="m", steps=-1)
    assert SubmissionMetadata(method="m", resolution=[64, 32]).resolution == (64, 32)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'{"method": "m",}', "line 1"),
        (b'{"method": "m",\n "steps": }', "line 2"),
        (b'{"method": "m", "guidance": NaN}', "NaN"),
        (b'{"method": "m", "method": "n"}', "duplicate key"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"", "not valid JSON"),
    ],
)
def test_bytes_that_are_not_valid_json(data: bytes, fragment: str) -> None:
    metadata, issues = parse_metadata_json(data)
    assert metadata is None
    (issue,) = issues
    assert issue.key is None and issue.severity == "error" and fragment in issue.message


def test_utf8_bom_is_accepted() -> None:
    metadata, issues = parse_metadata_json(b"\xef\xbb\xbf" + json.dumps({"method": "m"}).encode())
    assert issues == [] and metadata is not None and metadata.method == "m"


def test_write_then_read(tmp_path: Path) -> None:
    metadata = SubmissionMetadata.from_dict(FULL)
    path = write_metadata(tmp_path, metadata)
    assert path == tmp_path / "submission.json"
    assert path.read_bytes() == metadata_to_json(metadata)
    assert json.loads(path.read_text(encoding="utf-8")) == metadata.to_dict()
    assert read_metadata(path) == metadata
    assert [p.name for p in tmp_path.iterdir()] == ["submission.json"]  # no temporary file left


def test_write_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "submission.json").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        write_metadata(tmp_path, SubmissionMetadata(method="m"))
    assert (tmp_path / "submission.json").read_text() == "mine"
    write_metadata(tmp_path, SubmissionMetadata(method="m"), overwrite=True)
    assert read_metadata(tmp_path / "submission.json").method == "m"
    assert [p.name for p in tmp_path.iterdir()] == ["submission.json"]


def test_write_needs_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a directory"):
        write_metadata(tmp_path / "absent", SubmissionMetadata(method="m"))


def test_write_leaves_nothing_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("emogen_bench.fileio.os.replace", failing_replace)
    with pytest.raises(OSError):
        write_metadata(tmp_path, SubmissionMetadata(method="m"))
    assert list(tmp_path.iterdir()) == []


def test_read_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "submission.json"
    path.write_text('{"method": "m", "steps": "fifty"}')
    with pytest.raises(InvalidInputError, match=r"submission\.json.*steps"):
        read_metadata(path)
    with pytest.raises(UsageError, match=r"absent\.json: no such submission metadata file"):
        read_metadata(tmp_path / "absent.json")


HOSTILE_JSON: dict[str, tuple[bytes, str]] = {
    "nested 100 deep": (b'{"method": "m", "notes": ' + b"[" * 100 + b"]" * 100 + b"}", "nested more than 64 levels"),
    "nested 100000 deep": (b'{"method": "m", "notes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    "a 31-digit integer": (b'{"method": "m", "steps": 1' + b"0" * 30 + b"}", "integer too large (31 digits)"),
    "a 401-digit guidance": (b'{"method": "m", "guidance": 1' + b"0" * 400 + b"}", "integer too large (401 digits)"),
    "a 5000-digit seed": (b'{"method": "m", "seeds": {"awe/0.png": ' + b"7" * 5000 + b"}}", "not valid JSON"),
    "a lone surrogate in the method": (b'{"method": "\\ud800"}', "lone surrogate"),
    "a lone surrogate in a seed path": (b'{"method": "m", "seeds": {"awe/\\udc00.png": 1}}', "lone surrogate"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_JSON))
def test_hostile_json_is_one_error_issue_not_a_crash(name: str) -> None:
    data, fragment = HOSTILE_JSON[name]
    metadata, issues = parse_metadata_json(data)
    assert metadata is None
    (issue,) = issues
    assert issue.key is None and issue.severity == "error" and fragment in issue.message
    assert issue.message.startswith("the file ")  # the caller puts the file's own name in front


def test_many_repeated_keys_are_one_short_error() -> None:
    seeds = ", ".join(f'"awe/{index:05d}.png": {index}' for index in range(5000))
    metadata, issues = parse_metadata_json(f'{{"method": "m", "seeds": {{{seeds}, {seeds}}}}}'.encode())
    assert metadata is None
    (issue,) = issues
    assert "duplicate key(s) 'awe/00000.png'" in issue.message and "each key may appear once" in issue.message
    assert len(issue.message) < 300  # names a few of the keys, not all 5000


def test_read_refuses_special_files_by_type_without_opening_them(tmp_path: Path) -> None:
    fifo = tmp_path / "submission.json"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=r"submission\.json: the submission metadata file is a FIFO \(named pipe\)"):
        read_metadata(fifo)
    with pytest.raises(UsageError, match="/dev/null: the submission metadata file is a character device"):
        read_metadata("/dev/null")
