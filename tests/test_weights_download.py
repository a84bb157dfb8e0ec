"""Downloads against a local HTTP server on 127.0.0.1: verification, atomic rename, resume, retry, mirrors."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emogen_bench.errors import WeightsError
from emogen_bench.weights.download import RetryPolicy, download, part_path
from emogen_bench.weights.registry import Registry
from emogen_bench.weights.store import RECORDS_FILE, WeightStore

NO_WAIT = RetryPolicy(attempts=3, backoff_s=0.0, timeout_s=10.0)
PAYLOAD = bytes(range(256)) * 4099  # ~1 MiB, larger than one read chunk, not a multiple of it


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FileServer:
    """Serves ``files`` by path; can fail, truncate or ignore Range on demand, and logs every request."""

    files: dict[str, bytes] = field(default_factory=dict)
    fail_first: dict[str, int] = field(default_factory=dict)  # path -> number of HTTP 500 answers first
    truncate_first: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before dropping, once
    honour_range: bool = True
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    bytes_sent: int = 0
    base_url: str = ""

    def hits(self, path: str | None = None) -> int:
        return sum(1 for p, _ in self.requests if path is None or p == path)


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            server.requests.append((self.path, dict(self.headers)))
            if server.fail_first.get(self.path, 0) > 0:
                server.fail_first[self.path] -= 1
                self.send_error(500, "simulated failure")
                return
            data = server.files.get(self.path)
            if data is None:
                self.send_error(404, "no such file")
                return
            start = 0
            wanted = self.headers.get("Range")
            if wanted and server.honour_range:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_error(416, "range not satisfiable")
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = server.truncate_first.pop(self.path, None)
            sent = body if cut is None else body[:cut]
            server.bytes_sent += len(sent)  # counted before writing: the client may finish first
            self.wfile.write(sent)
            self.close_connection = True

    return Handler


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_download_verifies_and_renames_atomically(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    dest = tmp_path / "w" / "w.bin"
    url = file_server.base_url + "/w.bin"
    result = download([url], dest, expected_sha256=sha(PAYLOAD), policy=NO_WAIT, show_progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert result.sha256 == sha(PAYLOAD) and result.size == len(PAYLOAD)
    assert not part_path(dest).exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["w.bin"]


def test_hash_mismatch_leaves_nothing_in_place(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    wrong = sha(b"something else")
    dest = tmp_path / "w.bin"
    with pytest.raises(WeightsError) as raised:
        download([file_server.base_url + "/w.bin"], dest, expected_sha256=wrong, policy=NO_WAIT, show_progress=False)
    assert wrong in str(raised.value) and sha(PAYLOAD) in str(raised.value)
    assert not dest.exists() and not part_path(dest).exists()


def test_prefix_pin_accepts_matching_bytes(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    url = file_server.base_url + "/w.bin"
    result = download([url], tmp_path / "w.bin", expected_sha256=sha(PAYLOAD)[:8], policy=NO_WAIT, show_progress=False)
    assert result.sha256 == sha(PAYLOAD)


def test_resumes_a_partial_file_with_a_range_request(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    dest = tmp_path / "w.bin"
    done = 300_001
    part_path(dest).write_bytes(PAYLOAD[:done])
    download([file_server.base_url + "/w.bin"], dest, expected_sha256=sha(PAYLOAD), policy=NO_WAIT, show_progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert file_server.requests[0][1].get("Range") == f"bytes={done}-"
    assert file_server.bytes_sent == len(PAYLOAD) - done


def test_restarts_when_the_server_ignores_range(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    file_server.honour_range = False
    dest = tmp_path / "w.bin"
    part_path(dest).write_bytes(PAYLOAD[:1000])
    download([file_server.base_url + "/w.bin"], dest, expected_sha256=sha(PAYLOAD), policy=NO_WAIT, show_progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert "Range" in file_server.requests[0][1] and file_server.bytes_sent == len(PAYLOAD)


def test_stale_partial_file_is_restarted_from_zero(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    dest = tmp_path / "w.bin"
    part_path(dest).write_bytes(b"\xff" * 5000)  # not a prefix of the real file
    download([file_server.base_url + "/w.bin"], dest, expected_sha256=sha(PAYLOAD), policy=NO_WAIT, show_progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [("Range" in headers) for _, headers in file_server.requests] == [True, False]


def test_dropped_connection_is_resumed(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    file_server.truncate_first["/w.bin"] = 123_456
    dest = tmp_path / "w.bin"
    download([file_server.base_url + "/w.bin"], dest, expected_sha256=sha(PAYLOAD), policy=NO_WAIT, show_progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert file_server.requests[1][1].get("Range") == "bytes=123456-"


def test_retries_transient_server_errors(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    file_server.fail_first["/w.bin"] = 2
    dest = tmp_path / "w.bin"
    download([file_server.base_url + "/w.bin"], dest, expected_sha256=sha(PAYLOAD), policy=NO_WAIT, show_progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert file_server.hits("/w.bin") == 3


def test_gives_up_after_the_configured_attempts(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    file_server.fail_first["/w.bin"] = 10
    dest = tmp_path / "w.bin"
    with pytest.raises(WeightsError, match="HTTP 500"):
        download([file_server.base_url + "/w.bin"], dest, expected_sha256=None, policy=NO_WAIT, show_progress=False)
    assert file_server.hits("/w.bin") == NO_WAIT.attempts
    assert not dest.exists()


def test_falls_back_to_a_mirror_after_404(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/mirror/w.bin"] = PAYLOAD
    urls = [file_server.base_url + "/gone/w.bin", file_server.base_url + "/mirror/w.bin"]
    result = download(urls, tmp_path / "w.bin", expected_sha256=sha(PAYLOAD), policy=NO_WAIT, show_progress=False)
    assert result.url == urls[1]
    assert file_server.hits("/gone/w.bin") == 1  # a 404 is not retried
    assert (tmp_path / "w.bin").read_bytes() == PAYLOAD


def _registry(tmp_path: Path, base_url: str, entries: str) -> Registry:
    path = tmp_path / "registry.toml"
    path.write_text(entries.replace("BASE", base_url))
    return Registry.from_toml(path)


UNPINNED = """
[artifacts.test-net]
description = "a test file"
used_by = ["fid"]
license = "none"
loader = "torchscript"

[[artifacts.test-net.files]]
name = "net.pt"
urls = ["BASE/net.pt", ""]
pin = "unpinned"
"""


def test_offline_fetch_never_connects(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/net.pt"] = PAYLOAD
    registry = _registry(tmp_path, file_server.base_url, UNPINNED)
    store = WeightStore(tmp_path / "home", offline=True, registry=registry, retry=NO_WAIT)
    with pytest.raises(WeightsError, match="offline"):
        store.fetch(["test-net"], show_progress=False)
    assert file_server.hits() == 0
    assert not (tmp_path / "home" / "test-net").exists()


def test_unpinned_fetch_records_the_hash_then_holds_to_it(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/net.pt"] = PAYLOAD
    registry = _registry(tmp_path, file_server.base_url, UNPINNED)
    home = tmp_path / "home"
    [fetched] = WeightStore(home, registry=registry, retry=NO_WAIT).fetch(["test-net"], show_progress=False)
    assert fetched.official and fetched.path == home / "test-net" / "net.pt"
    records = json.loads((home / RECORDS_FILE).read_text())
    assert records["artifacts"]["test-net"]["net.pt"]["sha256"] == sha(PAYLOAD)

    # the cached file is later checked against the recorded hash
    (home / "test-net" / "net.pt").write_bytes(PAYLOAD[:-1] + b"\x00")
    with pytest.raises(WeightsError) as raised:
        WeightStore(home, registry=registry).resolve("test-net")
    assert sha(PAYLOAD) in str(raised.value)

    # and a re-download must match it: a server now serving other bytes is refused
    (home / "test-net" / "net.pt").unlink()
    file_server.files["/net.pt"] = b"other bytes"
    with pytest.raises(WeightsError) as raised:
        WeightStore(home, registry=registry, retry=NO_WAIT).fetch(["test-net"], show_progress=False)
    assert sha(PAYLOAD) in str(raised.value) and sha(b"other bytes") in str(raised.value)
    assert not (home / "test-net" / "net.pt").exists()


def test_prefix_pinned_fetch_records_the_full_hash(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/net.pt"] = PAYLOAD
    entries = UNPINNED.replace('pin = "unpinned"', f'pin = "sha256-prefix"\nsha256 = "{sha(PAYLOAD)[:8]}"')
    home = tmp_path / "home"
    store = WeightStore(home, registry=_registry(tmp_path, file_server.base_url, entries), retry=NO_WAIT)
    [fetched] = store.fetch(["test-net"], show_progress=False)
    assert fetched.official and fetched.files[0].sha256 == sha(PAYLOAD)
    assert json.loads((home / RECORDS_FILE).read_text())["artifacts"]["test-net"]["net.pt"]["sha256"] == sha(PAYLOAD)


def test_fetch_skips_present_files_and_force_replaces_corrupt_ones(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/net.pt"] = PAYLOAD
    entries = UNPINNED.replace('pin = "unpinned"', f'pin = "sha256"\nsha256 = "{sha(PAYLOAD)}"')
    registry = _registry(tmp_path, file_server.base_url, entries)
    home = tmp_path / "home"
    store = WeightStore(home, registry=registry, retry=NO_WAIT)
    store.fetch(["test-net"], show_progress=False)
    store.fetch(["test-net"], show_progress=False)
    assert file_server.hits() == 1

    target = home / "test-net" / "net.pt"
    target.write_bytes(b"damaged")
    with pytest.raises(WeightsError, match="--force"):
        store.fetch(["test-net"], show_progress=False)
    assert target.read_bytes() == b"damaged"  # nothing replaced without --force
    store.fetch(["test-net"], show_progress=False, force=True)
    assert target.read_bytes() == PAYLOAD
    aside = home / "test-net" / f"net.pt.corrupt-{sha(b'damaged')[:8]}"
    assert aside.read_bytes() == b"damaged"
