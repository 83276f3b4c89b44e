"""Real Chromium for the dashboard tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Without that browser the tests are not collected (one line at the end of the run), unless
``WSGUARD_REQUIRE_BROWSER=1`` makes its absence a failure, as on CI. Screenshots go to
``WSGUARD_ARTIFACTS`` (else the test's tmp dir).
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import NOT_COLLECTED, launch

collect_ignore_glob = NOT_COLLECTED


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module."""
    with launch() as chromium:
        yield chromium


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where a test saves its screenshots."""
    chosen = os.environ.get("WSGUARD_ARTIFACTS")
    directory = Path(chosen) if chosen else tmp_path / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
