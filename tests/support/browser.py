"""Debian's Chromium, headless, driven by selenium through Debian's chromedriver.

Selenium blocks, and the daemon and simulator under test run on the test's event loop, so every
browser call goes through a thread (:class:`Browser`). Nothing is downloaded: the browser and
driver are the system's (``.ci/run`` installs the packages), else the tests are skipped.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
REBOUND_HOST = "rebound.example"
T = TypeVar("T")


def chromium_driver() -> Any:
    """A headless Chromium session; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(Path("/usr/lib/chromium/chromium"))
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-extensions",
        # A foreign name that resolves to this machine, as a DNS-rebinding page's would.
        f"--host-resolver-rules=MAP {REBOUND_HOST} 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    assert CHROMEDRIVER is not None
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def driver_fixture() -> Iterator[Any]:
    """One browser for the module's tests (skipped without the Debian packages)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(MISSING)
    driver = chromium_driver()
    try:
        yield driver
    finally:
        driver.quit()


class Browser:
    """The driver's calls as coroutines, each in a thread, and waits for what a test means."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        driver.delete_all_cookies()

    async def call(self, work: Callable[..., T], *args: Any) -> T:
        """Run one blocking driver call off the event loop."""
        return await asyncio.to_thread(work, *args)

    async def get(self, url: str) -> None:
        """Load ``url`` and wait until its document is complete."""
        await self.call(self.driver.get, url)

    async def wait_for(self, css: str, *, text: str | None = None, timeout_s: float = 30) -> Any:
        """The first element matching ``css`` (whose text contains ``text``), once it exists."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        def found(driver: Any) -> Any:
            for element in driver.find_elements(By.CSS_SELECTOR, css):
                if text is None or text in element.text:
                    return element
            return False

        # A live page replaces elements as it updates: one found just before is looked up again.
        wait = WebDriverWait(
            self.driver, timeout_s, 0.05, ignored_exceptions=(StaleElementReferenceException,)
        )
        return await self.call(wait.until, found)

    async def find_all(self, css: str) -> list[Any]:
        """Every element matching ``css`` now."""
        from selenium.webdriver.common.by import By

        return await self.call(self.driver.find_elements, By.CSS_SELECTOR, css)

    async def script(self, source: str, *args: Any) -> Any:
        """Run ``source`` in the page (from the driver: the page's CSP does not apply to it)."""
        return await self.call(self.driver.execute_script, source, *args)

    async def screenshot(self, name: str, *, height: int = 900) -> Path:
        """Save the page (``height`` pixels of it) as ``docs/screenshots/<name>.png``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / f"{name}.png"
        await self.call(self.driver.set_window_size, 1280, height)
        try:
            await self.call(self.driver.save_screenshot, str(target))
        finally:
            await self.call(self.driver.set_window_size, 1280, 900)
        return target

    async def console_errors(self) -> list[str]:
        """The browser console's SEVERE entries since the last call (CSP violations among them)."""
        entries = await self.call(self.driver.get_log, "browser")
        return [entry["message"] for entry in entries if entry["level"] == "SEVERE"]
