"""Real Chromium driven by Playwright: tabs are pages of one browser context on the server's origin.

Without Chromium (or the playwright package) these tests are not collected and the run header
says so in one line; with ``WSGUARD_REQUIRE_BROWSER=1`` (set by ``.ci/run``) that is an error.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("WSGUARD_CHROMIUM", "/usr/bin/chromium")
HARNESS = (Path(__file__).parent / "harness.html").read_text()
HOW_TO_ENABLE = "apt-get install chromium && pip install -e '.[test]'"


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM}"
    return None


MISSING = _missing()
if MISSING and os.environ.get("WSGUARD_REQUIRE_BROWSER"):
    raise pytest.UsageError(f"browser tests required (WSGUARD_REQUIRE_BROWSER) but {MISSING}")
collect_ignore_glob = ["test_*.py"] if MISSING else []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MISSING:
        terminalreporter.write_line(f"browser tests skipped: {MISSING}; to run them: {HOW_TO_ENABLE}")


ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    # The harness page is fulfilled by Playwright, so Chromium cannot tell that it came from
    # loopback and would block its requests to loopback as a public page's.
    "--disable-features=LocalNetworkAccessChecks",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Tabs:
    """Pages of one browser context, each a tab running the harness on ``origin``."""

    def __init__(self, browser: Any, origin: str) -> None:
        self.origin = origin
        self.context = browser.new_context()
        self.context.route(
            "**/harness.html", lambda route: route.fulfill(body=HARNESS, content_type="text/html")
        )
        self.pages: list[Any] = []
        self.errors: list[str] = []

    def open(self, **options: Any) -> Any:
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.goto(f"{self.origin}/harness.html")
        page.wait_for_function("() => typeof startClient === 'function'")
        page.evaluate("(options) => startClient(options)", options)
        self.pages.append(page)
        return page

    @property
    def live(self) -> list[Any]:
        return [page for page in self.pages if not page.is_closed()]

    def snapshots(self) -> list[dict[str, Any]]:
        return [page.evaluate("() => snapshot()") for page in self.live]

    def wait_ready(self, timeout: float = 15.0) -> None:
        for page in self.live:
            page.wait_for_function("() => ready()", timeout=timeout * 1000)

    def leader(self, timeout: float = 5.0) -> Any:
        """The one tab that holds the socket (fails if none, or several, within ``timeout``)."""
        deadline = time.monotonic() + timeout
        roles: list[str] = []
        while time.monotonic() < deadline:
            roles = [page.evaluate("() => client.role") for page in self.live]
            if roles.count("leader") == 1:
                return self.live[roles.index("leader")]
            time.sleep(0.02)
        raise AssertionError(f"no single leader within {timeout}s: roles {roles}")

    def wait_for(
        self, condition: Callable[[list[dict[str, Any]]], bool], *, timeout: float, what: str
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            seen = self.snapshots()
            if condition(seen):
                return seen
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what} did not hold within {timeout}s; tabs: {seen}")
            time.sleep(0.05)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_tabs(browser: Any) -> Iterator[Callable[[str], Tabs]]:
    made: list[Tabs] = []

    def make(origin: str) -> Tabs:
        tabs = Tabs(browser, origin)
        made.append(tabs)
        return tabs

    yield make
    for tabs in made:
        tabs.close()
