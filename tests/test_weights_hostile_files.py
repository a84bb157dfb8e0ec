"""Hostile files the weights package reads: override and registry TOML, ``recorded.json``, ``verified.json``.

Each is read through ``emogen_bench.safe_read``: a FIFO is refused without being opened, non-UTF-8 and
deeply nested documents are errors naming the file, never an internal error (exit 70) or a hang.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest
from hostile_files import fifo
from test_weights_store import one_file_registry

from emogen_bench.cli import main
from emogen_bench.errors import ExitCode, UsageError, WeightsError
from emogen_bench.weights.download import RetryPolicy
from emogen_bench.weights.override import Overrides
from emogen_bench.weights.registry import Registry
from emogen_bench.weights.store import HASH_CACHE_FILE, RECORDS_FILE, WeightStore

NO_SUCH_USER = "~emogen-bench-no-such-user-4711"
DEEP_TOML = b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n"
DEEP_JSON = b'{"artifacts": ' + b"[" * 5000 + b"]" * 5000 + b"}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




def place(path: Path, content: bytes | None, feed: bytes = b"[broken") -> AbstractContextManager[Path]:
    """Write ``content`` at ``path``, or make it a fed FIFO when ``content`` is None."""
    if content is None:
        return fifo(path, feed)
    path.write_bytes(content)
    return nullcontext(path)


def is_fifo(path: Path) -> bool:
    return stat.S_ISFIFO(os.lstat(path).st_mode)


# ---- the override file (--weights-override) ------------------------------------------------------

HOSTILE_TOML = [
    pytest.param(b"\xff\xfe[artifacts]\n", "is not UTF-8 text", id="not-utf8"),
    pytest.param(DEEP_TOML, "nested", id="deeply-nested"),
    pytest.param(None, "is a FIFO (named pipe), not a regular file", id="fifo"),
]


@pytest.mark.parametrize(("content", "needle"), HOSTILE_TOML)
def test_hostile_override_files_are_usage_errors(
    bench_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, needle: str
) -> None:
    path = tmp_path / "override.toml"
    with place(path, content):
        code = main(["weights", "list", "--weights-override", str(path)])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    assert f"{path}: the weights override file " in err and needle in err and "internal error" not in err


def test_an_override_path_with_an_unknown_user_is_a_usage_error(
    bench_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RuntimeError):  # the premise: pathlib cannot expand it
        Path(f"{NO_SUCH_USER}/x.toml").expanduser()
    assert main(["weights", "verify", "--weights-override", f"{NO_SUCH_USER}/x.toml"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"weights override file {NO_SUCH_USER}/x.toml: cannot expand '{NO_SUCH_USER}' (no such user" in err


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        pytest.param(f"{NO_SUCH_USER}/head.pth", f"cannot expand '{NO_SUCH_USER}' (no such user", id="unknown-user"),
        pytest.param("head\\u0000.pth", "without NUL characters", id="nul"),
        pytest.param("head.fifo", "is a FIFO (named pipe); it must be a regular file or a folder", id="fifo"),
    ],
)
def test_hostile_paths_inside_an_override_file_are_usage_errors(tmp_path: Path, value: str, needle: str) -> None:
    os.mkfifo(tmp_path / "head.fifo")
    file = tmp_path / "o.toml"
    file.write_text(f'[artifacts.emo-head-clip]\npath = "{value}"\n')
    with pytest.raises(UsageError) as raised:
        Overrides.from_toml(file)
    assert f"{file}: [artifacts.emo-head-clip].path" in str(raised.value) and needle in str(raised.value)


# ---- a registry file -----------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "needle"), HOSTILE_TOML)
def test_hostile_registry_files_are_usage_errors(tmp_path: Path, content: bytes | None, needle: str) -> None:
    path = tmp_path / "registry.toml"
    with place(path, content), pytest.raises(UsageError) as raised:
        Registry.from_toml(path)
    assert f"{path}: the weight registry " in str(raised.value) and needle in str(raised.value)


# ---- the store's JSON files --------------------------------------------------------------------------


def unpinned_registry(tmp_path: Path, pin: str = 'pin = "unpinned"') -> Registry:
    return one_file_registry(tmp_path, pin)


def records(artifacts: object) -> bytes:
    return json.dumps({"version": 1, "artifacts": artifacts}).encode()


DAMAGED_RECORDS = [
    pytest.param(b"\xff\xfe{}", "is not UTF-8 text", id="not-utf8"),
    pytest.param(b'{"artifacts": {', "is not valid JSON", id="truncated"),
    pytest.param(DEEP_JSON, "nested", id="deeply-nested"),
    pytest.param(b'{"artifacts": {}, "artifacts": {}}', "duplicate key", id="duplicate-key"),
    pytest.param(None, "is a FIFO (named pipe)", id="fifo"),
    pytest.param(records([]), "its 'artifacts' is not an object", id="artifacts-list"),
    pytest.param(records({"test-net": "x"}), "artifacts.test-net is not an object", id="artifact-string"),
    pytest.param(records({"test-net": {"net.pt": {"sha256": "xyz"}}}), "artifacts.test-net.net.pt has no sha256",
                 id="bad-digest"),  # fmt: skip
]


@pytest.mark.parametrize(("content", "needle"), DAMAGED_RECORDS)
def test_a_damaged_record_file_is_a_weights_error_and_is_left_alone(
    tmp_path: Path, content: bytes | None, needle: str
) -> None:
    home = tmp_path / "home"
    (home / "test-net").mkdir(parents=True)
    (home / "test-net" / "net.pt").write_bytes(b"weights")
    path = home / RECORDS_FILE
    with place(path, content, feed=b"{"):
        store = WeightStore(home, registry=unpinned_registry(tmp_path))
        with pytest.raises(WeightsError) as raised:
            store.resolve("test-net")
        with pytest.raises(WeightsError, match="restore it from a backup"):
            store.fetch(["test-net"], show_progress=False)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and needle in message and "restore it from a backup" in message
    assert is_fifo(path) if content is None else path.read_bytes() == content


def test_fetch_never_replaces_a_damaged_record_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / RECORDS_FILE).write_bytes(b'{"artifacts": {"other-net": {"w.pt": {"sha256": "')  # cut off mid-write
    store = WeightStore(home, registry=unpinned_registry(tmp_path), retry=RetryPolicy(attempts=1, backoff_s=0.0))
    with pytest.raises(WeightsError) as raised:
        store.fetch(["test-net"], show_progress=False)  # stops before any download
    assert str(home / RECORDS_FILE) in str(raised.value) and "is not valid JSON" in str(raised.value)
    assert (home / RECORDS_FILE).read_bytes().endswith(b'"sha256": "')
    assert not (home / "test-net").exists()


def test_a_damaged_record_file_fails_the_cli_with_exit_3(bench_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bench_home / "weights").mkdir(parents=True)
    (bench_home / "weights" / RECORDS_FILE).write_bytes(b"{")
    assert main(["weights", "verify", "inception-fid"]) == ExitCode.WEIGHTS
    err = capsys.readouterr().err
    assert f"{bench_home / 'weights' / RECORDS_FILE}: the record of first-fetch hashes is not valid JSON" in err
    assert err.count("\n") == 1


def cache_entry(target: Path, **fields: object) -> bytes:
    """A ``verified.json`` whose one entry, for ``target``, has the true size and mtime and ``fields``."""
    info = target.stat()
    entry = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, **fields}
    return json.dumps({"version": 1, "files": {os.path.realpath(target): entry}}).encode()


DAMAGED_CACHES = [
    pytest.param(lambda target: b"\xff{", id="not-utf8"),
    pytest.param(lambda target: b"{", id="truncated"),
    pytest.param(lambda target: b'{"files": ' + b"[" * 5000 + b"]" * 5000 + b"}", id="deeply-nested"),
    pytest.param(lambda target: b'{"files": []}', id="files-list"),
    pytest.param(lambda target: cache_entry(target), id="entry-without-sha256"),
    pytest.param(lambda target: cache_entry(target, sha256="not a hash"), id="entry-with-bad-sha256"),
    pytest.param(lambda target: cache_entry(target, sha256=sha(b"x"), size=True), id="entry-with-bool-size"),
    pytest.param(None, id="fifo"),
]


@pytest.mark.parametrize("make", DAMAGED_CACHES)
def test_a_damaged_hash_cache_is_recomputed(tmp_path: Path, make: Callable[[Path], bytes] | None) -> None:
    home = tmp_path / "home"
    (home / "test-net").mkdir(parents=True)
    target = home / "test-net" / "net.pt"
    target.write_bytes(b"weights")
    registry = unpinned_registry(tmp_path, f'pin = "sha256"\nsha256 = "{sha(b"weights")}"')
    path = home / HASH_CACHE_FILE
    with place(path, None if make is None else make(target)):
        resolved = WeightStore(home, registry=registry).resolve("test-net")
    assert resolved.official and resolved.files[0].sha256 == sha(b"weights")
    if make is None:
        assert is_fifo(path)  # not replaced: the cache is simply not kept
    else:
        entry = json.loads(path.read_text())["files"][os.path.realpath(target)]
        assert entry["sha256"] == sha(b"weights")  # rewritten whole
