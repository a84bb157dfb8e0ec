"""The one JSON/TOML reader: every hostile file becomes the caller's error naming the file, never a hang or exit 70."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from emogen_bench.errors import DataError, UsageError
from emogen_bench.safe_read import ReadLimits, check_regular_file, loads_json, loads_toml, read_json, read_toml


def test_a_fifo_a_device_and_a_folder_are_refused_by_type_without_opening_them(tmp_path: Path) -> None:
    fifo = tmp_path / "entry.json"
    os.mkfifo(fifo)  # opening it for reading would block: the type check comes first
    with pytest.raises(UsageError, match=r"entry\.json: the JSON file is a FIFO"):
        read_json(fifo)
    with pytest.raises(DataError, match="/dev/null: the annotation is a character device"):
        read_json("/dev/null", "annotation", DataError)
    with pytest.raises(UsageError, match="is a folder"):
        read_toml(tmp_path)
    with pytest.raises(UsageError, match="no such plan"):
        check_regular_file(tmp_path / "absent.toml", "plan")
    link = tmp_path / "link.json"
    link.symlink_to(fifo)
    with pytest.raises(UsageError, match="FIFO"):
        read_json(link)


def test_size_encoding_and_surrogates(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"x": "a" * 2000}))
    with pytest.raises(UsageError, match="larger than 1,000 bytes"):
        read_json(big, limits=ReadLimits(max_bytes=1000))
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"method": "caf\xe9"}')
    with pytest.raises(UsageError, match=r"latin\.json: the JSON file is not UTF-8 text \(invalid .* at byte 15\)"):
        read_json(latin)
    with pytest.raises(UsageError, match="lone surrogate"):
        loads_json('{"method": "\\ud800"}', "x.json")
    with pytest.raises(UsageError, match="lone surrogate"):
        loads_json('{"\\udfff": 1}', "x.json")  # in a key too
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert read_json(bom) == {"a": 1}


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deep_nesting_is_an_error_not_a_recursion_error(depth: int) -> None:
    with pytest.raises(UsageError, match="nested"):
        loads_json("[" * depth + "]" * depth, "deep.json")
    with pytest.raises(UsageError, match="nested"):
        loads_toml("x = " + "[" * depth + "]" * depth, "deep.toml")


def test_sixty_four_levels_are_read() -> None:
    assert loads_json("[" * 64 + "]" * 64, "ok.json") is not None


def test_integers_constants_and_duplicate_keys() -> None:
    with pytest.raises(UsageError, match="integer too large"):
        loads_json('{"n": ' + "9" * 400 + "}", "n.json")
    with pytest.raises(UsageError, match="not valid JSON"):
        loads_json('{"n": ' + "9" * 5000 + "}", "n.json")  # past Python's own digit limit
    with pytest.raises(UsageError, match="integer too large"):
        loads_toml("n = " + "9" * 30, "n.toml")
    assert loads_json('{"seed": 9223372036854775807}', "ok.json") == {"seed": 2**63 - 1}
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(UsageError, match="finite number"):
            loads_json('{"fid": ' + constant + "}", "c.json")
    with pytest.raises(UsageError, match="duplicate key.*'a'"):
        loads_json('{"a": 1, "b": 2, "a": 3}', "d.json")


def test_the_duplicate_key_check_takes_200k_keys() -> None:
    text = "{" + ",".join(f'"k{i}": {i}' for i in range(200_000)) + ', "k7": 0}'
    with pytest.raises(UsageError, match="'k7'"):  # the quadratic check this replaces would run for hours here
        loads_json(text, "many.json")


def test_invalid_syntax_names_the_file_and_the_place() -> None:
    with pytest.raises(UsageError, match=r"p\.json: the JSON file is not valid JSON: Expecting .* \(line 1, column"):
        loads_json("{", "p.json")
    with pytest.raises(UsageError, match=r"p\.toml: the plan is not valid TOML"):
        loads_toml("= 1", "p.toml", "plan")
