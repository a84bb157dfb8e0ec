"""Downloads against a local HTTP server on 127.0.0.1: verification, atomic rename, resume, retry, mirrors."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
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
ENDLESS_CAP = 64 * 1024 * 1024  # where an "endless" body stops, so that the old code failed instead of hanging


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FileServer:
    """Serves ``files`` by path; can fail, truncate or ignore Range on demand, and logs every request."""

    files: dict[str, bytes] = field(default_factory=dict)
    fail_first: dict[str, int] = field(default_factory=dict)  # path -> number of HTTP 500 answers first
    truncate_first: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before dropping, once
    honour_range: bool = True
    endless: set[str] = field(default_factory=set)  # paths answered by zeros without a length, up to ENDLESS_CAP
    trickle_s: dict[str, float] = field(default_factory=dict)  # path -> pause before each byte after the first
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    bytes_sent: int = 0
    base_url: str = ""
    client_hung_up: bool = False  # a streamed body (endless, trickled) was cut off by the client
    stream_done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def hits(self, path: str | None = None) -> int:
        return sum(1 for p, _ in self.requests if path is None or p == path)


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def stream(self, pieces: Iterable[bytes], pause: float) -> None:
            """Send ``pieces`` one by one, ``pause`` seconds apart; note whether the client hung up."""
            try:
                for index, piece in enumerate(pieces):
                    if index and pause and server.stop.wait(pause):
                        break
                    server.bytes_sent += len(piece)
                    self.wfile.write(piece)
            except (BrokenPipeError, ConnectionResetError):
                server.client_hung_up = True
            finally:
                server.stream_done.set()
                self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            server.requests.append((self.path, dict(self.headers)))
            if self.path in server.endless:
                self.send_response(200)
                self.end_headers()
                self.stream((bytes(65536) for _ in range(ENDLESS_CAP // 65536)), 0.0)
                return
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
            if self.path in server.trickle_s:
                self.stream((body[i : i + 1] for i in range(len(body))), server.trickle_s[self.path])
                return
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
    state.stop.set()
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


# ---- hostile servers: endless bodies, lengths that disagree, trickles -----------------------------

EXPECTED = bytes(4096)


def test_an_endless_body_stops_just_past_the_expected_size(file_server: FileServer, tmp_path: Path) -> None:
    file_server.endless.add("/w.bin")
    dest = tmp_path / "w.bin"
    url = file_server.base_url + "/w.bin"
    with pytest.raises(WeightsError) as raised:
        download([url], dest, expected_sha256=sha(EXPECTED), expected_size=4096, policy=NO_WAIT, show_progress=False)
    message = str(raised.value)
    assert f"{url}: the server sent more than the expected 4,096 bytes" in message
    assert not dest.exists() and not part_path(dest).exists()  # bytes past the size are wrong bytes: nothing is kept
    assert file_server.stream_done.wait(30) and file_server.client_hung_up  # the client stopped reading
    assert file_server.hits() == 1


def test_an_endless_body_of_unknown_size_stops_at_the_cap(file_server: FileServer, tmp_path: Path) -> None:
    file_server.endless.add("/w.bin")
    dest = tmp_path / "w.bin"
    url = file_server.base_url + "/w.bin"
    with pytest.raises(WeightsError, match="sent more than the 100,000-byte cap"):
        download([url], dest, expected_sha256=None, size_cap=100_000, policy=NO_WAIT, show_progress=False)
    assert not dest.exists() and not part_path(dest).exists()
    assert file_server.stream_done.wait(30) and file_server.client_hung_up


def test_a_content_length_that_disagrees_with_the_size_is_refused_before_reading(
    file_server: FileServer, tmp_path: Path
) -> None:
    file_server.files["/w.bin"] = PAYLOAD + b"extra"  # the server has another, longer file
    dest = tmp_path / "w.bin"
    part_path(dest).write_bytes(PAYLOAD[:1000])
    url = file_server.base_url + "/w.bin"
    with pytest.raises(WeightsError) as raised:
        download([url], dest, expected_sha256=sha(PAYLOAD), expected_size=len(PAYLOAD), policy=NO_WAIT,
                 show_progress=False)  # fmt: skip
    message = str(raised.value)
    assert f"{url}: the server announces a file of {len(PAYLOAD) + 5:,} bytes (Content-Length" in message
    assert f"not the expected {len(PAYLOAD):,} bytes; refused before reading" in message
    assert part_path(dest).read_bytes() == PAYLOAD[:1000]  # nothing of that file was appended to the part
    assert not dest.exists() and file_server.hits() == 1


def test_a_trickling_server_is_cut_off_and_the_part_resumed_later(file_server: FileServer, tmp_path: Path) -> None:
    body = bytes(range(200))
    file_server.files["/w.bin"] = body
    file_server.trickle_s["/w.bin"] = 0.02  # 4 s for the whole body, each byte well within the socket timeout
    dest = tmp_path / "w.bin"
    url = file_server.base_url + "/w.bin"
    impatient = RetryPolicy(attempts=3, backoff_s=0.0, timeout_s=10.0, min_rate=1_000_000.0, grace_s=0.001)
    with pytest.raises(WeightsError) as raised:
        download([url], dest, expected_sha256=sha(body), expected_size=len(body), policy=impatient, show_progress=False)
    message = str(raised.value)
    assert f"{url}: too slow:" in message and "below the minimum average of 1,000,000 bytes/s" in message
    assert f"The partial download {part_path(dest)} is kept and resumed next time" in message
    kept = part_path(dest).read_bytes()
    assert 0 < len(kept) < len(body) and body.startswith(kept)
    assert file_server.stream_done.wait(30) and file_server.client_hung_up  # cut off, not read to the end
    assert file_server.hits() == 1  # a slow server is not retried in the same run; a mirror would be tried

    del file_server.trickle_s["/w.bin"]
    download([url], dest, expected_sha256=sha(body), expected_size=len(body), policy=NO_WAIT, show_progress=False)
    assert dest.read_bytes() == body
    assert file_server.requests[-1][1].get("Range") == f"bytes={len(kept)}-"


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


def test_fetch_caps_a_file_of_unknown_size_at_twice_its_rough_size(file_server: FileServer, tmp_path: Path) -> None:
    file_server.endless.add("/net.pt")
    registry = _registry(tmp_path, file_server.base_url, UNPINNED + "approx_size = 4096\n")
    home = tmp_path / "home"
    with pytest.raises(WeightsError, match="sent more than the 8,192-byte cap"):
        WeightStore(home, registry=registry, retry=NO_WAIT).fetch(["test-net"], show_progress=False)
    assert not (home / "test-net" / "net.pt").exists() and not part_path(home / "test-net" / "net.pt").exists()
    assert not (home / RECORDS_FILE).exists()  # nothing trusted on first use


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
