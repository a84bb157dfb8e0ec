"""Headless Chromium for the page tests (leaderboard site, its widths, the report page), set up in one place.

The browser tests open a page through Selenium (Debian packages ``chromium`` and ``chromium-driver``).
Without them a test is skipped, unless ``EMOGEN_BENCH_REQUIRE_BROWSER=1`` (set by CI), which makes that a
failure.  Screenshots go to ``$EMOGEN_BENCH_SCREENSHOT_DIR`` when set, else the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

#: Chromium switches: headless, and nothing that reaches the network or a user profile.
CHROMIUM_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-default-apps", "--disable-sync", "--no-first-run", "--disable-extensions", "--disable-dev-shm-usage",
)  # fmt: skip

#: The first bytes of every PNG file.
PNG = b"\x89PNG\r\n\x1a\n"


def browser_or_skip() -> tuple[str, str]:
    """Paths of chromium and chromedriver; skip without them, or fail when CI requires the browser."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        reason = (
            f"the browser test needs {', '.join(missing)}: install the Debian packages chromium and "
            "chromium-driver (.ci/run does)"
        )
        if os.environ.get("EMOGEN_BENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; EMOGEN_BENCH_REQUIRE_BROWSER=1 makes that a failure")
        pytest.skip(reason)
    assert chromium is not None and driver is not None
    return chromium, driver


def start_chromium(profile: Path, window: tuple[int, int] | None = None) -> Chrome:
    """A headless Chromium driver with its profile in ``profile``, browser logs kept and a 20 s page-load limit.

    ``window`` is the starting window size (width, height); skips or fails as :func:`browser_or_skip` does.
    The caller quits the driver.
    """
    chromium, driver_path = browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    size = () if window is None else (f"--window-size={window[0]},{window[1]}",)
    for argument in (*CHROMIUM_ARGS, *size, f"--user-data-dir={profile}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(20)
    except BaseException:
        driver.quit()
        raise
    return driver


def severe(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The SEVERE entries of a browser log (a script error, or a style or load the page's CSP refuses)."""
    return [entry for entry in logs if entry.get("level") == "SEVERE"]


def screenshot(driver: Chrome, tmp_path: Path, name: str) -> bytes:
    """Save a screenshot as ``name`` in the screenshot folder and return its bytes, checked to be a PNG."""
    folder = Path(os.environ.get("EMOGEN_BENCH_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / name
    assert driver.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == PNG
    return data


def png_width(data: bytes) -> int:
    """The width in pixels of a PNG image, read from its IHDR chunk."""
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    return struct.unpack(">I", data[16:20])[0]
