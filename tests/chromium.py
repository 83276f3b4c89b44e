"""Debian's Chromium driven by Playwright, shared by the browser-client and dashboard tests.

Where it is missing, the modules that need it are not collected and the run ends with one line
saying how to enable them; with ``WSGUARD_REQUIRE_BROWSER=1`` (set by ``.ci/run``) that is an error.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("WSGUARD_CHROMIUM", "/usr/bin/chromium")
HOW_TO_ENABLE = "apt-get install chromium && pip install -e '.[test]'"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    # Pages fulfilled by Playwright cannot show Chromium that they came from loopback, so it
    # would block their requests to loopback as a public page's.
    "--disable-features=LocalNetworkAccessChecks",
]


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM}"
    return None


MISSING = _missing()
if MISSING and os.environ.get("WSGUARD_REQUIRE_BROWSER"):
    raise pytest.UsageError(f"browser tests required (WSGUARD_REQUIRE_BROWSER) but {MISSING}")

NOT_COLLECTED = ["test_*.py"] if MISSING else []
"""A conftest's ``collect_ignore_glob`` where Chromium is missing."""


@contextmanager
def launch() -> Iterator[Any]:
    """One headless Chromium, closed on the way out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
