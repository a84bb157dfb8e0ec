"""Test-wide guards: no network but loopback, and every cache inside a temporary folder.

The environment variables are set at import time, before any test imports
torch, transformers or huggingface_hub, so no library can reach a user cache.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

_CACHE_ROOT = Path(tempfile.mkdtemp(prefix="emogen-bench-tests-"))
for _name, _sub in (
    ("HF_HOME", "hf"),
    ("TORCH_HOME", "torch"),
    ("EMOGEN_BENCH_HOME", "emogen-bench"),
    ("XDG_CACHE_HOME", "xdg"),
):
    os.environ[_name] = str(_CACHE_ROOT / _sub)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("EMOGEN_BENCH_OFFLINE", None)

#: The shared folder beside the repository (absent on a user's clone).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OFFICIAL_ARTIFACTS = SHARED / "artifacts" / "emogen-official"


class NetworkBlocked(RuntimeError):
    """Raised when a test tries to reach anything but loopback."""


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self: socket.socket, address, *args, **kwargs):  # type: ignore[no-untyped-def]
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise NetworkBlocked(f"tests may not reach the network: connect to {address!r} blocked")
    return _real_connect(self, address, *args, **kwargs)


def _guarded_connect_ex(self: socket.socket, address, *args, **kwargs):  # type: ignore[no-untyped-def]
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise NetworkBlocked(f"tests may not reach the network: connect to {address!r} blocked")
    return _real_connect_ex(self, address, *args, **kwargs)


def _guarded_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if host is not None and not _is_loopback(host):
        raise NetworkBlocked(f"tests may not reach the network: name lookup of {host!r} blocked")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_CACHE_ROOT, ignore_errors=True)


@pytest.fixture
def official_artifacts() -> Path:
    """The real EmoGen files in ``../shared``; skips where that folder is absent (a user's clone)."""
    if not (OFFICIAL_ARTIFACTS / "SHA256SUMS").is_file():
        pytest.skip(f"the official EmoGen artifacts are not beside the repository ({OFFICIAL_ARTIFACTS})")
    return OFFICIAL_ARTIFACTS


@pytest.fixture
def bench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty benchmark cache folder for one test."""
    home = tmp_path / "bench-home"
    monkeypatch.setenv("EMOGEN_BENCH_HOME", str(home))
    return home
