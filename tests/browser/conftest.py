"""Real Chromium driven by Playwright: tabs are pages of one browser context on the server's origin.

Without Chromium (or the playwright package) these tests are not collected and the run ends
with one line saying how to enable them (tests/chromium.py); with ``WSGUARD_REQUIRE_BROWSER=1``
(set by ``.ci/run``) that is an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import NOT_COLLECTED, launch

HARNESS = (Path(__file__).parent / "harness.html").read_text()
collect_ignore_glob = NOT_COLLECTED


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module."""
    with launch() as chromium:
        yield chromium


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
