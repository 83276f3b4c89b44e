"""The system tests: Redis, several ``wsguard serve`` instances and nginx, with real clients.

They need nginx, a redis-server and Chromium. Where one is missing the tests are not collected
and the run ends with one line saying how to enable them; with ``WSGUARD_REQUIRE_NGINX=1`` (set
by ``.ci/run``, with the browser's and Redis's own variables) a missing nginx is an error.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.chromium import MISSING as CHROMIUM_MISSING
from tests.system.nginx import NGINX
from wsguard.processes.redis_server import redis_server_binary

REQUIRE_NGINX = "WSGUARD_REQUIRE_NGINX"
HOW_TO_ENABLE = "apt-get install nginx redis-server chromium"


def _missing() -> str | None:
    if NGINX is None:
        return "no nginx on PATH"
    if redis_server_binary() is None:
        return "no redis-server"
    return CHROMIUM_MISSING


MISSING = _missing()
if MISSING and os.environ.get(REQUIRE_NGINX) == "1":
    raise pytest.UsageError(f"system tests required ({REQUIRE_NGINX}=1) but {MISSING}")

collect_ignore_glob = ["test_*.py"] if MISSING else []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MISSING:
        terminalreporter.write_line(f"system tests skipped: {MISSING}; to run them: {HOW_TO_ENABLE}")
