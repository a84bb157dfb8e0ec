"""The verified-hash memo of the weight store (``verified.json``, issue 16): a file is hashed once while it is
unchanged, and again as soon as its bytes may have changed, even when its size and mtime are what they were.

What was hashed is read from the memo's own record (``_HashCache.hashed``, the real paths it read), on real files.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from test_weights_store import one_file_registry

from emogen_bench.weights.store import HASH_CACHE_FILE, STAT_FIELDS, WeightStore, _HashCache

#: File timestamps come from the kernel's coarse clock (one tick, up to 10 ms on Linux): waiting this long before
#: rewriting a file makes its ctime differ, as it does for any rewrite that happens in another tick.
CLOCK_TICK_S = 0.03


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "net.pt"
    path.write_bytes(b"weights")
    return path


def test_an_unchanged_file_is_hashed_once_and_the_saved_entry_is_reused(tmp_path: Path, weights: Path) -> None:
    memo = _HashCache(tmp_path / HASH_CACHE_FILE)
    assert memo.sha256(weights) == memo.sha256(weights) == sha(b"weights")
    assert memo.hashed == [os.path.realpath(weights)]
    memo.save()
    saved = json.loads((tmp_path / HASH_CACHE_FILE).read_text())
    entry = saved["files"][os.path.realpath(weights)]
    stat = os.stat(weights)
    assert entry == {**{name: getattr(stat, f"st_{name}") for name in STAT_FIELDS}, "sha256": sha(b"weights")}
    again = _HashCache.load(tmp_path / HASH_CACHE_FILE)
    assert again.sha256(weights) == sha(b"weights")
    assert again.hashed == []  # served from the file's entry


def test_same_size_rewrite_with_the_mtime_set_back_is_hashed_again(tmp_path: Path, weights: Path) -> None:
    memo = _HashCache(tmp_path / HASH_CACHE_FILE)
    assert memo.sha256(weights) == sha(b"weights")
    before = os.stat(weights)
    time.sleep(CLOCK_TICK_S)
    with open(weights, "r+b") as handle:  # the same inode, other bytes of the same size
        handle.write(b"weightz")
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(weights)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    assert after.st_ctime_ns != before.st_ctime_ns  # what tells the memo: nobody can set ctime back
    assert memo.sha256(weights) == sha(b"weightz")
    assert memo.hashed == [os.path.realpath(weights)] * 2


def test_a_file_replaced_by_another_with_the_same_size_and_mtime_is_hashed_again(
    tmp_path: Path, weights: Path
) -> None:
    memo = _HashCache(tmp_path / HASH_CACHE_FILE)
    assert memo.sha256(weights) == sha(b"weights")
    before = os.stat(weights)
    replacement = tmp_path / "new.pt"
    replacement.write_bytes(b"weightz")
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))  # as cp -p or rsync -t leave it
    os.replace(replacement, weights)
    assert os.stat(weights).st_ino != before.st_ino
    assert memo.sha256(weights) == sha(b"weightz")
    assert memo.hashed == [os.path.realpath(weights)] * 2


def test_an_old_memo_entry_without_the_new_fields_is_a_miss_not_an_error(tmp_path: Path, weights: Path) -> None:
    """A version-1 entry (size and mtime only) is dropped: even one whose digest is wrong is never trusted."""
    stat = os.stat(weights)
    old = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha(b"something else")}
    memo_path = tmp_path / HASH_CACHE_FILE
    memo_path.write_text(json.dumps({"version": 1, "files": {os.path.realpath(weights): old}}))
    memo = _HashCache.load(memo_path)
    assert memo.entries == {}
    assert memo.sha256(weights) == sha(b"weights")
    assert memo.hashed == [os.path.realpath(weights)]


def test_the_store_rehashes_a_file_its_old_memo_describes(tmp_path: Path) -> None:
    """Through ``WeightStore``: the old memo's (wrong) digest would have failed the check; it is hashed instead."""
    home = tmp_path / "home"
    (home / "test-net").mkdir(parents=True)
    target = home / "test-net" / "net.pt"
    target.write_bytes(b"weights")
    stat = os.stat(target)
    old = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha(b"weightz")}
    (home / HASH_CACHE_FILE).write_text(json.dumps({"version": 1, "files": {os.path.realpath(target): old}}))
    registry = one_file_registry(tmp_path, f'pin = "sha256"\nsha256 = "{sha(b"weights")}"')
    resolved = WeightStore(home, registry=registry).resolve("test-net")
    assert resolved.official and resolved.files[0].sha256 == sha(b"weights")
    saved = json.loads((home / HASH_CACHE_FILE).read_text())
    assert saved["version"] == 2
    assert saved["files"][os.path.realpath(target)]["ino"] == stat.st_ino
