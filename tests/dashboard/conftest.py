"""Real Chromium for the dashboard tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Without that browser the tests skip (one line), unless ``WSGUARD_REQUIRE_BROWSER=1`` makes its
absence a failure, as on CI. Screenshots go to ``WSGUARD_ARTIFACTS`` (else the test's tmp dir).
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module."""
    if not CHROMIUM.exists():
        if os.environ.get("WSGUARD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"WSGUARD_REQUIRE_BROWSER=1 but there is no {CHROMIUM}")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where a test saves its screenshots."""
    chosen = os.environ.get("WSGUARD_ARTIFACTS")
    directory = Path(chosen) if chosen else tmp_path / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
