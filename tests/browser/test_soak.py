"""Soak of the browser client (``pytest -m soak tests/browser -s``): 50 leader changes and 50
network cuts, with the events lost and repeated in every tab (both must be 0), the time from a
leader tab's close to the first event in a follower, and the connections 8 tabs hold.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Tabs
from tests.browser.helpers import Publisher, metric
from tests.browser.proxy import CuttableProxy
from wsguard.processes import StartServer, eventually

pytestmark = pytest.mark.soak
USER = "alice"
THREAD = "chat-1"
ARRIVAL = f"(offset) => wsg.times[{THREAD!r}][wsg.log[{THREAD!r}].indexOf(offset)]"
"""When a tab delivered ``offset`` (ms since the epoch), undefined before it did."""


def _lost_and_repeated(log: list[int], published: list[int]) -> tuple[int, int]:
    """Events a tab missed after its first one, and events it got more than once (or out of order)."""
    if not log:
        return 0, 0
    expected = [offset for offset in published if log[0] <= offset <= published[-1]]
    repeated = sum(1 for before, after in itertools.pairwise(log) if after <= before)
    return len(set(expected) - set(log)), repeated


def _arrivals(tabs: Tabs, offset: int) -> list[float | None]:
    return [page.evaluate(ARRIVAL, offset) for page in tabs.live]


def _report(name: str, figures: dict[str, Any], base: Path) -> None:
    path = base / "report" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2))
    print(f"\n{name}: {json.dumps(figures)}")


def test_50_leader_changes_lose_and_repeat_nothing(
    start_server: StartServer, open_tabs: Callable[[str], Tabs], tmp_path_factory: Any
) -> None:
    server = start_server()
    tabs = open_tabs(server.base_url)
    for _ in range(3):
        tabs.open(user=USER, threads=[THREAD])
    tabs.wait_ready()
    publisher = Publisher(server, USER)
    publisher.publish(THREAD, 3)
    latencies: list[float] = []
    lost = repeated = 0
    for _ in range(50):
        tabs.wait_for(publisher.everything, timeout=15, what="every tab up to date")
        leader = tabs.leader()
        seen = leader.evaluate("() => snapshot()")
        missing, twice = _lost_and_repeated(seen["log"][THREAD], publisher.offsets[THREAD])
        lost, repeated = lost + missing, repeated + twice
        closed_at = time.time()
        leader.close()
        publisher.publish(THREAD)
        offset = publisher.offsets[THREAD][-1]
        arrival = eventually(
            partial(_arrivals, tabs, offset),
            lambda times: any(times),
            timeout=10,
            what="the first event after the leader closed",
        )
        latencies.append(min(t for t in arrival if t) / 1000 - closed_at)
        tabs.open(user=USER, threads=[THREAD])
        tabs.wait_ready()
        publisher.publish(THREAD, 2)
    snapshots = tabs.wait_for(publisher.everything, timeout=15, what="every tab up to date at the end")
    for tab in snapshots:
        missing, twice = _lost_and_repeated(tab["log"][THREAD], publisher.offsets[THREAD])
        lost, repeated = lost + missing, repeated + twice
        assert tab["failures"] == []
    figures = {
        "leader_changes": 50,
        "events_published": len(publisher.offsets[THREAD]),
        "lost": lost,
        "repeated": repeated,
        "close_to_first_follower_event_s": {
            "median": round(statistics.median(latencies), 3),
            "p90": round(sorted(latencies)[int(len(latencies) * 0.9)], 3),
            "max": round(max(latencies), 3),
        },
    }
    _report("leader_changes", figures, Path(tmp_path_factory.getbasetemp()))
    assert (lost, repeated) == (0, 0)
    assert metric(server, "wsguard_connections_active") == 1


def test_50_network_cuts_lose_and_repeat_nothing(
    start_server: StartServer, open_tabs: Callable[[str], Tabs], tmp_path_factory: Any
) -> None:
    server = start_server()
    with CuttableProxy(server.port) as proxy:
        tabs = open_tabs(proxy.base_url)
        for _ in range(3):
            tabs.open(user=USER, threads=[THREAD], backoff={"baseDelay": 50, "maxDelay": 400})
        tabs.wait_ready()
        publisher = Publisher(server, USER)
        publisher.publish(THREAD, 2)
        for _ in range(50):
            tabs.wait_for(publisher.everything, timeout=15, what="every tab up to date")
            proxy.set_cut(True)
            publisher.publish(THREAD, 3)
            time.sleep(0.3)
            proxy.set_cut(False)
            publisher.publish(THREAD)
        snapshots = tabs.wait_for(publisher.everything, timeout=15, what="every tab up to date at the end")
    lost = repeated = 0
    for tab in snapshots:
        missing, twice = _lost_and_repeated(tab["log"][THREAD], publisher.offsets[THREAD])
        lost, repeated = lost + missing, repeated + twice
        assert tab["log"][THREAD] == publisher.offsets[THREAD]
    figures = {
        "network_cuts": 50,
        "events_published": len(publisher.offsets[THREAD]),
        "lost": lost,
        "repeated": repeated,
        "replayed_in_leader": max(tab["stats"]["replayed"] for tab in snapshots),
        "proxied_connections": proxy.connections_seen,
    }
    _report("network_cuts", figures, Path(tmp_path_factory.getbasetemp()))
    assert (lost, repeated) == (0, 0)


@pytest.mark.parametrize("share", [True, False])
def test_connections_of_8_tabs(
    share: bool, start_server: StartServer, open_tabs: Callable[[str], Tabs], tmp_path_factory: Any
) -> None:
    server = start_server()
    tabs = open_tabs(server.base_url)
    for _ in range(8):
        tabs.open(user=USER, threads=[THREAD], share=share)
    tabs.wait_ready()
    held = eventually(
        lambda: metric(server, "wsguard_connections_active"), lambda n: n == (1 if share else 8), timeout=10
    )
    _report(
        f"connections_8_tabs_share_{str(share).lower()}",
        {"share": share, "server_connections": held},
        Path(tmp_path_factory.getbasetemp()),
    )
