"""The browser client in real Chromium: the "What must hold" list of the browser client's design.

Tabs are pages of one browser context on the server's origin (or on a proxy's, to cut the
network under them); events are published over HTTP, and every tab's sequence of offsets must
equal the server's publish sequence exactly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.browser.conftest import Tabs
from tests.browser.helpers import Publisher, assert_exact, metric
from tests.browser.proxy import CuttableProxy
from wsguard.processes import ServerProcess, StartServer, eventually

USER = "alice"


def _publish_in_background(publisher: Publisher, thread: str, count: int, gap: float) -> threading.Thread:
    def run() -> None:
        for _ in range(count):
            publisher.publish(thread)
            time.sleep(gap)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker


def test_eight_tabs_hold_one_connection_and_each_gets_every_event_once_in_order(
    start_server: StartServer, open_tabs: Callable[[str], Tabs]
) -> None:
    server = start_server()
    tabs = open_tabs(server.base_url)
    for _ in range(8):
        tabs.open(user=USER, threads=["chat-1"])
    tabs.wait_ready()
    publisher = Publisher(server, USER)
    publisher.publish("chat-1", 30)
    snapshots = tabs.wait_for(publisher.everything, timeout=15, what="every tab has the whole run")
    assert_exact(publisher, snapshots)
    assert sorted(tab["role"] for tab in snapshots) == ["follower"] * 7 + ["leader"]
    assert metric(server, "wsguard_connections_active") == 1
    assert metric(server, "wsguard_connections_opened_total") == 1
    assert tabs.errors == []


def test_send_over_websocket_resolves_to_the_reply_with_its_ref_in_the_leader_and_a_follower(
    start_server: StartServer, open_tabs: Callable[[str], Tabs]
) -> None:
    server = start_server()
    tabs = open_tabs(server.base_url)
    for _ in range(2):
        tabs.open(user=USER, threads=["chat-1"], transport="websocket")
    tabs.wait_ready()
    leader = tabs.leader()
    follower = next(page for page in tabs.live if page is not leader)
    assert [tab["transport"] for tab in tabs.snapshots()] == ["websocket", "websocket"]

    # Each tab's refs are its own (<tab id>.<n>); a follower's command goes through the leader's
    # socket, and its reply comes back to it alone.
    for page in (leader, follower):
        tab = page.evaluate("() => client.tabId")
        for n in (1, 2):
            answer = page.evaluate("() => sendCommand('ping', {})")
            assert answer == {"reply": {"type": "pong", "ref": f"{tab}.{n}"}}, answer
    refused = follower.evaluate("() => sendCommand('launch', {rocket: 1})")
    assert refused["error"]["name"] == "CommandError", refused
    assert refused["error"]["code"] == "unknown_type", refused
    metrics = server.metrics()
    assert metrics['wsguard_transport_connections{transport="websocket"}'] == 1
    assert metrics['wsguard_transport_connections{transport="sse"}'] == 0
    assert tabs.errors == []


def test_leader_closed_mid_run_another_tab_leads_within_2s_and_no_tab_loses_or_repeats(
    start_server: StartServer, open_tabs: Callable[[str], Tabs]
) -> None:
    server = start_server()
    tabs = open_tabs(server.base_url)
    for _ in range(4):
        tabs.open(user=USER, threads=["chat-1", "chat-2"])
    tabs.wait_ready()
    publisher = Publisher(server, USER)
    worker = _publish_in_background(publisher, "chat-1", 60, 0.02)
    publisher.publish("chat-2", 3)
    eventually(lambda: len(publisher.offsets.get("chat-1", [])), lambda n: n >= 20, timeout=10)
    old = tabs.leader()
    old.close()
    closed_at = time.monotonic()
    tabs.leader(timeout=2.0)
    assert time.monotonic() - closed_at < 2.0
    publisher.publish("chat-2", 3)
    worker.join(30)
    snapshots = tabs.wait_for(publisher.everything, timeout=15, what="every remaining tab has both threads")
    assert_exact(publisher, snapshots)
    assert len(snapshots) == 3
    eventually(lambda: metric(server, "wsguard_connections_active"), lambda n: n == 1, timeout=5)


def test_network_cut_for_3s_mid_run_every_tab_ends_exact_and_since_was_used(
    start_server: StartServer, open_tabs: Callable[[str], Tabs]
) -> None:
    server = start_server()
    with CuttableProxy(server.port) as proxy:
        tabs = open_tabs(proxy.base_url)
        for _ in range(3):
            tabs.open(user=USER, threads=["chat-1"], backoff={"maxDelay": 1000})
        tabs.wait_ready()
        publisher = Publisher(server, USER)
        publisher.publish("chat-1", 10)
        tabs.wait_for(publisher.everything, timeout=10, what="the first 10 events everywhere")
        proxy.set_cut(True)
        cut_at = time.monotonic()
        eventually(lambda: metric(server, "wsguard_connections_active"), lambda n: n == 0, timeout=10)
        publisher.publish("chat-1", 10)  # while no tab can be connected: only a replay brings these
        time.sleep(max(0.0, 3 - (time.monotonic() - cut_at)))
        proxy.set_cut(False)
        worker = _publish_in_background(publisher, "chat-1", 20, 0.05)
        worker.join(30)
        publisher.publish("chat-1", 5)
        snapshots = tabs.wait_for(publisher.everything, timeout=20, what="every tab caught up after the cut")
        assert_exact(publisher, snapshots)
        for tab in snapshots:
            assert tab["stats"]["replayed"] > 0, f"no replay with since in {tab['role']}: {tab['stats']}"
            assert tab["state"] == "open"


def test_share_false_22_tabs_limit_20_the_2_oldest_stop_with_4001_and_no_storm(
    start_server: StartServer, open_tabs: Callable[[str], Tabs]
) -> None:
    server = start_server("--max-connections-per-user", "20")
    tabs = open_tabs(server.base_url)
    pages = []
    for _ in range(22):
        pages.append(tabs.open(user=USER, threads=["chat-1"], share=False))
        pages[-1].wait_for_function("() => client.state !== 'connecting'", timeout=15000)
    for page in pages[:2]:
        page.wait_for_function("() => wsg.stopped.length === 1", timeout=10000)
        detail = page.evaluate("() => wsg.stopped[0]")
        assert detail["code"] == 4001, detail
        assert "superseded" in detail["why"], detail
        assert detail["action"], detail
    assert all(page.evaluate("() => client.role") == "alone" for page in pages)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen = server.metrics()
        assert seen["wsguard_limit_evictions_total"] == 2, seen["wsguard_limit_evictions_total"]
        time.sleep(0.25)
    assert seen["wsguard_connections_active"] == 20
    assert seen["wsguard_connections_opened_total"] == 22
    assert [page.evaluate("() => client.state") for page in pages[2:]] == ["open"] * 20


def test_server_restart_fires_recoveryfailed_once_per_thread_in_every_tab(
    start_server: StartServer, open_tabs: Callable[[str], Tabs]
) -> None:
    first = start_server()
    with CuttableProxy(first.port) as proxy:
        tabs = open_tabs(proxy.base_url)
        for _ in range(2):
            tabs.open(user=USER, threads=["chat-1", "chat-2"])
        tabs.wait_ready()
        before = Publisher(first, USER)
        before.publish("chat-1", 3)
        before.publish("chat-2", 2)
        tabs.wait_for(before.everything, timeout=10, what="events before the restart")
        second = start_server()
        proxy.upstream_port = second.port
        first.stop()
        snapshots = tabs.wait_for(
            lambda seen: all(len(tab["failures"]) >= 2 for tab in seen), timeout=20, what="recoveryfailed"
        )
        after = Publisher(second, USER)
        after.publish("chat-1", 2)
        snapshots = tabs.wait_for(after.everything, timeout=10, what="events after the restart")
        for tab in snapshots:
            assert sorted(failure["threadId"] for failure in tab["failures"]) == ["chat-1", "chat-2"]
            assert tab["log"]["chat-1"] == [1, 2, 3, 1, 2]
            assert tab["log"]["chat-2"] == [1, 2]


def test_token_expiring_during_the_session_is_refreshed_and_the_connection_survives(
    start_server: StartServer, open_tabs: Callable[[str], Tabs]
) -> None:
    server = start_server("--jwt-leeway", "0")
    tabs = open_tabs(server.base_url)
    page = tabs.open(user=USER, threads=["chat-1"], ttl=3)
    tabs.wait_ready()
    publisher = Publisher(server, USER)
    publisher.publish("chat-1", 2)
    time.sleep(7)  # more than two lifetimes of the token: without refresh the server closes with 4401
    publisher.publish("chat-1", 2)
    snapshots = tabs.wait_for(publisher.everything, timeout=10, what="events after the first token expired")
    assert_exact(publisher, snapshots)
    assert page.evaluate("() => wsg.tokenCalls") >= 3
    assert metric(server, "wsguard_connections_opened_total") == 1
    assert server.metrics().get('wsguard_connections_closed_total{reason="token_expired"}', 0) == 0


def test_failing_token_provider_stops_with_the_reason_and_does_not_loop(
    start_server: StartServer, open_tabs: Callable[[str], Tabs]
) -> None:
    server = start_server()
    tabs = open_tabs(server.base_url)
    page = tabs.open(user=USER, threads=["chat-1"], failToken=True)
    page.wait_for_function("() => wsg.stopped.length > 0", timeout=10000)
    time.sleep(2)
    seen = page.evaluate("() => snapshot()")
    assert len(seen["stopped"]) == 1
    assert "the identity provider is down" in seen["stopped"][0]["why"]
    assert seen["tokenCalls"] == 1
    assert seen["state"] == "closed"
    assert metric(server, "wsguard_connections_opened_total") == 0


def test_demo_page_signs_in_runs_and_shows_the_events_in_two_tabs_under_a_strict_csp(
    start_server: StartServer, browser: Any, tmp_path_factory: Any
) -> None:
    server = start_server("--demo-step-delay", "0.01")
    context = browser.new_context(viewport={"width": 1000, "height": 720})
    try:
        errors: list[str] = []
        pages = []
        for _ in range(2):
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: _console_error(message, errors))
            response = page.goto(f"{server.base_url}/demo?user=alice&thread=chat-1")
            assert response is not None
            assert "script-src 'self'" in response.headers["content-security-policy"]
            pages.append(page)
        for page in pages:
            page.wait_for_function("() => document.getElementById('state').textContent === 'open'")
        pages[0].click("#run button")
        for page in pages:
            page.wait_for_function(
                "() => document.body.textContent.includes('agent_completed')", timeout=15000
            )
        rows = [
            page.eval_on_selector_all("#events tr", "rows => rows.map(r => r.cells[1].textContent)")
            for page in pages
        ]
        assert rows[0] == rows[1]
        assert rows[0][0] == "agent_started"
        assert rows[0][-1] == "agent_completed"
        assert metric(server, "wsguard_connections_active") == 1
        shot = Path(tmp_path_factory.getbasetemp()) / "report" / "demo.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        pages[1].screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert errors == []
    finally:
        context.close()


def _console_error(message: Any, errors: list[str]) -> None:
    """Errors the page logs (a CSP violation, a failed module), except the browser's favicon probe."""
    if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
        errors.append(message.text)


def test_client_files_are_served_cacheable_with_the_javascript_type(start_server: StartServer) -> None:
    server: ServerProcess = start_server(dev=False, env={"WSGUARD_JWT_SECRET": "s" * 32})
    for name in ("wsguard.js", "engine.js", "history.js", "policy.js", "tracker.js"):
        response = server.http.get(f"/client/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        etag = response.headers["etag"]
        assert "no-cache" in response.headers["cache-control"]
        again = server.http.get(f"/client/{name}", headers={"If-None-Match": etag})
        assert again.status_code == 304
    assert server.http.get("/client/nothing.js").status_code == 404
    assert server.http.get("/demo").status_code == 404
