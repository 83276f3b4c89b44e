"""The browser client over Server-Sent Events, in real Chromium: behind a proxy that refuses
WebSocket upgrades, ``transport: "auto"`` ends up on ``GET /sse``, tabs share the stream,
``client.send`` works from every tab, and a dropped stream resumes from its ``last_event_id``
with each missed event delivered exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.browser.conftest import Tabs
from tests.browser.helpers import Publisher, assert_exact, metric
from tests.browser.proxy import CuttableProxy
from wsguard.processes import StartServer, eventually

USER = "alice"


def _streams(proxy: CuttableProxy) -> list[dict[str, list[str]]]:
    """The query of every ``GET /sse`` that went through the proxy, in order."""
    found = []
    for line in proxy.requests:
        method, target, _ = line.split(" ", 2)
        url = urlsplit(target)
        if method == "GET" and url.path == "/sse":
            found.append(parse_qs(url.query))
    return found


def test_auto_falls_back_to_sse_behind_a_proxy_that_refuses_upgrades_and_resumes_exactly(
    start_server: StartServer, open_tabs: Callable[[str], Tabs], tmp_path_factory: Any
) -> None:
    server = start_server()
    with CuttableProxy(server.port, refuse_upgrades=True) as proxy:
        tabs = open_tabs(proxy.base_url)
        for _ in range(2):
            tabs.open(user=USER, threads=["chat-1"], transport="auto", backoff={"maxDelay": 1000})
        tabs.wait_ready()
        leader = tabs.leader()
        follower = next(page for page in tabs.live if page is not leader)

        # Two refused upgrades, then one stream for both tabs.
        assert proxy.upgrades_refused == 2
        assert [tab["transport"] for tab in tabs.snapshots()] == ["sse", "sse"]
        assert leader.evaluate("() => wsg.transports") == ["sse"]
        assert metric(server, "wsguard_connections_active") == 1
        first = _streams(proxy)
        assert len(first) == 1, first
        assert first[0]["ticket"], first
        assert "last_event_id" not in first[0], first

        publisher = Publisher(server, USER)
        publisher.publish("chat-1", 5)
        assert_exact(publisher, tabs.wait_for(publisher.everything, timeout=10, what="the first 5 events"))

        # Commands by POST, from the leader and from a follower (through the leader).
        for page in (leader, follower):
            answer = page.evaluate("() => sendCommand('ping', {})")
            assert answer["reply"]["type"] == "pong", answer
            assert isinstance(answer["reply"]["ref"], str), answer
        refused = follower.evaluate("() => sendCommand('launch', {rocket: 1})")
        assert refused["error"]["name"] == "CommandError", refused
        assert refused["error"]["code"] == "unknown_type", refused
        posts = [line for line in proxy.requests if line.startswith("POST /sse/commands/")]
        assert len(posts) >= 4, posts  # the subscribe and the three commands

        # The stream drops; events published meanwhile come back once each, from last_event_id.
        posts_before = sum(line.startswith("POST /sse/commands/") for line in proxy.requests)
        proxy.set_cut(True)
        eventually(lambda: metric(server, "wsguard_connections_active"), lambda n: n == 0, timeout=10)
        publisher.publish("chat-1", 5)
        time.sleep(1)
        proxy.set_cut(False)
        snapshots = tabs.wait_for(publisher.everything, timeout=20, what="every tab caught up after the drop")
        publisher.publish("chat-1", 3)
        snapshots = tabs.wait_for(publisher.everything, timeout=10, what="live events after the resume")
        assert_exact(publisher, snapshots)
        for tab in snapshots:
            assert tab["state"] == "open"
            assert tab["transport"] == "sse"
            assert tab["stats"]["replayed"] == 5, tab["stats"]
            assert tab["stats"]["duplicatesDropped"] == 0, tab["stats"]
        resumed = _streams(proxy)[-1]
        assert resumed["last_event_id"][0].startswith("p1."), resumed
        assert resumed["resume"][0].startswith("ses_"), resumed
        assert resumed["ticket"] != first[0]["ticket"]
        posts_after = sum(line.startswith("POST /sse/commands/") for line in proxy.requests)
        assert posts_after == posts_before, "the server resubscribed chat-1 from the id by itself"
        assert proxy.upgrades_refused == 2, "no WebSocket try before retryWebSocketAfter"
        assert metric(server, "wsguard_connections_active") == 1

        shot = Path(tmp_path_factory.getbasetemp()) / "report" / "sse-fallback.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        leader.evaluate("() => render()")
        leader.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 5_000
        assert tabs.errors == []


def test_a_server_close_message_is_its_close_code_4001_stops_and_does_not_reconnect(
    start_server: StartServer, open_tabs: Callable[[str], Tabs]
) -> None:
    server = start_server("--max-connections-per-user", "1")
    tabs = open_tabs(server.base_url)
    first = tabs.open(user=USER, threads=["chat-1"], share=False, transport="sse")
    first.wait_for_function("() => client.state === 'open'", timeout=10000)
    second = tabs.open(user=USER, threads=["chat-1"], share=False, transport="sse")
    first.wait_for_function("() => wsg.stopped.length === 1", timeout=10000)
    detail = first.evaluate("() => wsg.stopped[0]")
    assert detail["code"] == 4001, detail
    assert "superseded" in detail["why"], detail
    second.wait_for_function("() => client.state === 'open'", timeout=10000)
    time.sleep(2)
    assert first.evaluate("() => client.state") == "closed"
    assert metric(server, "wsguard_connections_opened_total") == 2
    assert metric(server, "wsguard_connections_active") == 1
    assert second.evaluate("() => sendCommand('ping', {})")["reply"]["type"] == "pong"
    stopped = first.evaluate("() => sendCommand('ping', {})")
    assert stopped["error"]["code"] == "closed", stopped


def test_a_new_leader_stays_on_sse_and_websocket_is_tried_again_after_retry_websocket_after(
    start_server: StartServer, open_tabs: Callable[[str], Tabs]
) -> None:
    server = start_server()
    with CuttableProxy(server.port, refuse_upgrades=True) as proxy:
        tabs = open_tabs(proxy.base_url)
        options = {"transport": "auto", "backoff": {"maxDelay": 500}, "retryWebSocketAfter": 4000}
        for _ in range(3):
            tabs.open(user=USER, threads=["chat-1"], **options)
        tabs.wait_ready()
        publisher = Publisher(server, USER)
        publisher.publish("chat-1", 3)
        tabs.wait_for(publisher.everything, timeout=10, what="the first events")
        assert proxy.upgrades_refused == 2

        # The leader goes: the next one carries on over SSE without trying WebSocket first.
        tabs.leader().close()
        tabs.leader(timeout=3)
        publisher.publish("chat-1", 3)
        snapshots = tabs.wait_for(publisher.everything, timeout=10, what="events after the leader change")
        assert [tab["transport"] for tab in snapshots] == ["sse", "sse"]
        assert proxy.upgrades_refused == 2

        # Upgrades pass again; after retryWebSocketAfter the next reconnect tries WebSocket, and
        # the events published while no tab was connected come once each, with since.
        proxy.refuse_upgrades = False
        time.sleep(4)
        proxy.set_cut(True)
        eventually(lambda: metric(server, "wsguard_connections_active"), lambda n: n == 0, timeout=10)
        publisher.publish("chat-1", 4)
        proxy.set_cut(False)
        snapshots = tabs.wait_for(
            lambda seen: publisher.everything(seen) and all(tab["transport"] == "websocket" for tab in seen),
            timeout=20,
            what="back on WebSocket with every event",
        )
        publisher.publish("chat-1", 2)
        assert_exact(
            publisher, tabs.wait_for(publisher.everything, timeout=10, what="live events over WebSocket")
        )
        for tab in snapshots:
            assert tab["transports"][-2:] == ["sse", "websocket"], tab["transports"]
        assert metric(server, "wsguard_connections_active") == 1
        assert tabs.errors == []
