"""Verified, resumable, atomic HTTP downloads with the standard library only.

A file is written to ``<name>.part`` beside its destination, hashed, and only
renamed into place (``os.replace``, atomic on one file system) when its sha256
matches.  A partial ``.part`` left by an interrupted run is resumed with an
HTTP Range request; a server that ignores Range (answers 200) restarts it.
Transient failures (timeouts, dropped connections, HTTP 408/429/5xx) are
retried with exponential backoff; permanent ones (404, 403, ...) move on to the
next mirror.

No server can make a download endless (see :class:`RetryPolicy`):

- size: a file whose size the registry records is never allowed more bytes than
  that.  A ``Content-Length`` that disagrees is refused before anything is read
  (the ``.part`` file is left as it was); a body that runs past the size is cut
  off at once, and since those bytes are not the expected ones the ``.part``
  file is removed, as after a hash mismatch.  A file of unknown exact size is
  capped the same way at ``size_cap`` (the store passes twice the registry's
  rough size) or at :attr:`RetryPolicy.max_unknown_size`.
- time: after a grace period a transfer must keep a minimum average rate, so a
  server that trickles bytes (each read within the socket timeout) is cut off
  too.  That is a network failure: the ``.part`` file is kept and the next run
  resumes it, like any interrupted download; the same run moves on to the next
  mirror rather than retrying the slow one.  (The rate is checked after each
  read of the body, so the cut comes at most one socket timeout late; the
  status line and headers are bounded only by the socket timeout per read and
  ``http.client``'s limits on their number and length.)
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from emogen_bench.errors import WeightsError
from emogen_bench.hashing import sha256_file

_CHUNK = 1 << 20
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard and how long to try one URL.

    ``attempts`` tries, sleeping ``backoff_s * 2**k`` before try k+2; ``timeout_s`` bounds each socket
    operation (connecting, one read).  Each request must then average at least ``min_rate`` bytes/s
    once its first ``grace_s`` seconds are over (elapsed <= grace_s + received / min_rate), which
    bounds a file of known size to ``grace_s + size / min_rate`` seconds (50 KB/s and 60 s: about
    34 minutes for a 100 MB file); ``min_rate = 0`` turns the check off.  ``max_unknown_size`` caps
    a file whose exact size is unknown when the caller gives no ``size_cap``.
    """

    attempts: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 60.0
    min_rate: float = 50_000.0
    grace_s: float = 60.0
    max_unknown_size: int = 4 * 1024**3

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        return self.backoff_s * 2 ** (failures - 1)

    def too_slow(self, elapsed_s: float, received: int) -> bool:
        """True when ``received`` bytes in ``elapsed_s`` seconds fall below the minimum average rate."""
        return self.min_rate > 0 and elapsed_s > self.grace_s + received / self.min_rate


@dataclass(frozen=True)
class SizeBound:
    """The most bytes a file may have: its ``exact`` size, or a cap on a file whose size is unknown."""

    limit: int
    exact: bool

    def describe(self) -> str:
        """The bound in words, for error messages."""
        return f"the expected {self.limit:,} bytes" if self.exact else f"the {self.limit:,}-byte cap for this file"


@dataclass(frozen=True)
class DownloadResult:
    """A verified file in place: where it is, its full sha256, which URL served it."""

    path: Path
    sha256: str
    url: str
    size: int


class _Transient(Exception):
    """A failure worth retrying on the same URL."""


class _Permanent(Exception):
    """A failure that retrying the same URL will not fix."""


class _TooSlow(_Permanent):
    """The server sends too slowly; the part is kept for the next run, the next mirror is tried now."""


class _Mismatch(Exception):
    """The downloaded bytes are not the expected ones."""

    def __init__(self, found: str, size: int) -> None:
        super().__init__(found)
        self.found, self.size = found, size


def part_path(dest: Path) -> Path:
    """The temporary name a download of ``dest`` is written to."""
    return dest.with_name(dest.name + ".part")


def digest_matches(found: str, expected: str | None) -> bool:
    """True when hex ``found`` equals ``expected`` or starts with it (a prefix pin); always when None."""
    return expected is None or found.startswith(expected.lower())


def download(
    urls: Sequence[str],
    dest: Path,
    *,
    expected_sha256: str | None,
    expected_size: int | None = None,
    size_cap: int | None = None,
    policy: RetryPolicy = RetryPolicy(),
    show_progress: bool = True,
    desc: str | None = None,
) -> DownloadResult:
    """Download ``dest`` from the first URL that serves the expected bytes.

    ``expected_sha256`` is a full hex digest, a hex prefix, or None (accept and
    report the hash: trust on first use); ``expected_size`` the exact size if
    known, else ``size_cap`` bounds it (default ``policy.max_unknown_size``).
    Raises :class:`WeightsError` naming every URL tried and why it failed.  On a
    hash mismatch or a body longer than the bound nothing is left behind; on a
    network failure (dropped, timed out, too slow) the ``.part`` file is kept so
    the next run resumes it; a disagreeing ``Content-Length`` leaves it untouched.
    """
    if not urls:
        raise WeightsError(f"no URL to download {dest.name} from; give a local copy with --weights-override")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    if expected_size is not None:
        bound = SizeBound(expected_size, exact=True)
    else:
        bound = SizeBound(size_cap if size_cap is not None else policy.max_unknown_size, exact=False)
    failures: list[str] = []
    for url in urls:
        try:
            found, size = _fetch_verified(url, part, expected_sha256, bound, policy, show_progress, desc or dest.name)
        except _Mismatch as mismatch:
            expected = _describe(expected_sha256, expected_size)
            failures.append(f"{url}: sha256 {mismatch.found} ({mismatch.size} bytes), expected {expected}")
            continue
        except (_Transient, _Permanent) as error:
            failures.append(f"{url}: {error}")
            continue
        os.replace(part, dest)
        return DownloadResult(dest, found, url, size)
    kept = f"The partial download {part} is kept and resumed next time." if part.exists() else "Nothing was kept."
    raise WeightsError(
        f"could not download {dest.name} (expected sha256 {_describe(expected_sha256, expected_size)}): "
        + "; ".join(failures)
        + f". {kept} Check the network, or fetch the file by other means and point --weights-override at it."
    )


def _describe(expected_sha256: str | None, expected_size: int | None) -> str:
    text = expected_sha256 if expected_sha256 else "any (unpinned)"
    if expected_sha256 and len(expected_sha256) < 64:
        text += "... (prefix)"
    return text + (f", {expected_size} bytes" if expected_size is not None else "")


def _fetch_verified(
    url: str,
    part: Path,
    expected_sha256: str | None,
    bound: SizeBound,
    policy: RetryPolicy,
    show_progress: bool,
    desc: str,
) -> tuple[str, int]:
    """Transfer ``url`` into ``part`` and check it; a resumed part that fails is retried once from zero.

    The old part may hold bytes of another file or version, so a mismatch after
    a resume is not yet proof that the server's bytes are wrong.
    """
    resumed = part.exists() and part.stat().st_size > 0
    for _ in range(2 if resumed else 1):
        _transfer_with_retries(url, part, bound, policy, show_progress, desc)
        size = part.stat().st_size
        found = sha256_file(part)
        if digest_matches(found, expected_sha256) and (not bound.exact or size == bound.limit):
            return found, size
        part.unlink()
    raise _Mismatch(found, size)


def _transfer_with_retries(
    url: str, part: Path, bound: SizeBound, policy: RetryPolicy, show_progress: bool, desc: str
) -> None:
    last: Exception | None = None
    for attempt in range(1, max(policy.attempts, 1) + 1):
        try:
            _transfer(url, part, bound, policy, show_progress, desc)
            return
        except _Transient as error:
            last = error
            if attempt < policy.attempts:
                time.sleep(policy.delay(attempt))
    raise _Transient(f"{last} (gave up after {policy.attempts} attempts)")


def _transfer(url: str, part: Path, bound: SizeBound, policy: RetryPolicy, show_progress: bool, desc: str) -> None:
    """One HTTP request: append to ``part`` on 206, rewrite it on 200; classify failures.

    Never more than ``bound`` bytes in ``part`` and never slower than ``policy`` allows (see the module).
    """
    started = time.monotonic()
    offset = part.stat().st_size if part.exists() else 0
    if offset > bound.limit:
        part.unlink()  # longer than the file can be: not a prefix of it
        offset = 0
    request = urllib.request.Request(url, headers={"User-Agent": "emogen-bench", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=policy.timeout_s)  # noqa: S310 - URLs come from the registry
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            part.unlink()  # the part is not a prefix of what the server has: start over
            raise _Transient("server refused to resume (HTTP 416); restarting") from None
        if error.code in _TRANSIENT_HTTP:
            raise _Transient(f"HTTP {error.code} {error.reason}") from None
        raise _Permanent(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _Transient(_reason(error)) from None
    except ValueError as error:  # a malformed URL or an unknown scheme
        raise _Permanent(str(error)) from None
    with response:
        resuming = offset > 0 and response.status == 206
        if resuming and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink()
            raise _Transient("server answered a different byte range; restarting")
        start = offset if resuming else 0
        length_header = response.headers.get("Content-Length", "")
        remaining = int(length_header) if length_header.isdigit() else None
        _check_announced(start, remaining, bound)
        try:
            out = open(part, "ab" if resuming else "wb")
        except OSError as error:
            problem = error.strerror or error
            raise WeightsError(f"cannot write {part}: {problem}; check the folder's permissions") from None
        with out, tqdm(
            desc=desc,
            total=None if remaining is None else start + remaining,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not show_progress,
            leave=False,
            dynamic_ncols=True,
        ) as bar:
            received = _copy_body(response, out, part, bound.limit - start, policy, started, bar.update)
        if received is None:
            part.unlink()
            raise _Permanent(f"the server sent more than {bound.describe()}; stopped reading and removed {part.name}")
        if remaining is not None and received < remaining:
            raise _Transient(f"connection closed after {received} of {remaining} bytes")


def _check_announced(start: int, remaining: int | None, bound: SizeBound) -> None:
    """Refuse, before reading, a response whose ``Content-Length`` cannot be the expected file."""
    if remaining is None:
        return
    total = start + remaining
    if total == bound.limit or (total < bound.limit and not bound.exact):
        return
    after = f" after the {start:,} bytes already here" if start else ""
    raise _Permanent(
        f"the server announces a file of {total:,} bytes (Content-Length {remaining:,}{after}), not "
        f"{'' if bound.exact else 'more than '}{bound.describe()}; refused before reading"
    )


def _copy_body(
    response: http.client.HTTPResponse,
    out: BinaryIO,
    part: Path,
    allowed: int,
    policy: RetryPolicy,
    started: float,
    advance: Callable[[int], object],
) -> int | None:
    """Copy the body into ``out``: the bytes received, or None once it runs past ``allowed`` bytes.

    ``read1`` returns what one socket read brings, so a trickling server cannot hold a read for long and
    the rate is checked after each (``_TooSlow``).
    """
    received = 0
    while True:
        try:
            chunk = response.read1(_CHUNK)
        except (OSError, http.client.HTTPException) as error:
            raise _Transient(f"connection lost after {received} bytes: {_reason(error)}") from None
        if not chunk:
            return received
        if received + len(chunk) > allowed:
            return None
        try:
            out.write(chunk)
        except OSError as error:
            raise WeightsError(f"cannot write {part}: {error.strerror or error} (disk full?)") from None
        received += len(chunk)
        advance(len(chunk))
        elapsed = time.monotonic() - started
        if policy.too_slow(elapsed, received):
            raise _TooSlow(
                f"too slow: {received:,} bytes in {elapsed:.1f} s, below the minimum average of "
                f"{policy.min_rate:,.0f} bytes/s after the first {policy.grace_s:g} s (RetryPolicy.min_rate)"
            )


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return f"cannot connect ({error.reason})"
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
