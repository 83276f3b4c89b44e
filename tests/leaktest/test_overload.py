"""A load generator that cannot keep its schedule proves nothing: its rounds are inconclusive.

This is why comprehensive once reported that every user's first tab (``multi_tab/tab0``,
``context_consistency/ctx0``) missed every event of its run: at the start of the round the
harness opens hundreds of connections at once, its own event loop lags past the heartbeat
timeout, and the first tab of each group, the only one already open, does not answer the
server's ping in time. The server then does what it promises (closes it 1011
``heartbeat_timeout``), and the harness reported the events that tab never got as lost.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from dataclasses import replace
from pathlib import Path

import httpx

from tests.leaktest.support import leakcheck_cli
from wsguard.leaktest.client import Target
from wsguard.leaktest.load import LoadMonitor
from wsguard.leaktest.profiles import PROFILES, Sizes
from wsguard.leaktest.progress import Silent
from wsguard.leaktest.runner import run_scenario, target_of
from wsguard.processes import ServerProcess

FIRST_TAB_ALONE = replace(
    PROFILES["ci"],
    name="first-tab-alone",
    seed=None,
    warmup_rounds=1,
    rounds=5,
    churn_cycles=0,
    first=Sizes(tabs=2, tab_gap_s=1.5),
    repeat=Sizes(tabs=2, tab_gap_s=0.01),
)
"""Two tabs 1.5 s apart: while the generator stalls, only the first one is open."""
STALL_S = 1.0
"""Longer than the heartbeat's interval plus timeout (0.25 + 0.25 s in ci)."""


async def _stall_once_the_first_tab_subscribed(target: Target) -> None:
    """Block the generator's event loop once, as its own overload would, while tab0 is alone."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        token = (await http.post(target.token_url, json={"user_id": "lt-stall-admin", "admin": True})).json()[
            "token"
        ]
        listing = f"{target.base_url}/api/admin/users/lt-multi_tab/connections"
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            rows = (await http.get(listing, headers={"Authorization": f"Bearer {token}"})).json()
            if any(row["subscriptions"] for row in rows):
                time.sleep(STALL_S)  # noqa: ASYNC251 - the whole loop stalls, every tab's reader with it
                return
            await asyncio.sleep(0.01)
    raise AssertionError("tab0 never subscribed")


async def _multi_tab_with_a_stall(target: Target) -> tuple[str, list[str]]:
    stall = asyncio.create_task(_stall_once_the_first_tab_subscribed(target))
    report = await run_scenario("multi_tab", FIRST_TAB_ALONE, target, True, Silent())
    await stall
    return report.verdict, report.reasons


def test_a_generator_stall_that_gets_tab0_reaped_is_inconclusive_not_lost_events() -> None:
    with ServerProcess(*FIRST_TAB_ALONE.server_flags()) as server:
        verdict, reasons = asyncio.run(_multi_tab_with_a_stall(target_of(server)))
        reaped = server.metrics()["wsguard_zombies_reaped_total"]
    text = "\n".join(reasons)
    assert verdict == "inconclusive", text
    assert reaped >= 1, text
    assert "round 0: INCONCLUSIVE: the load generator could not keep its schedule" in text
    assert "generator loop lag max" in text
    assert "unconfirmed: lt-multi_tab/tab0 missed offsets [1, 2, 3, 4, 5, 6, 7, 8] " in text
    assert "(closed 1011 heartbeat_timeout" in text
    assert "tab1 missed" not in text


def test_a_starved_generator_is_inconclusive_with_exit_3_and_its_figures(tmp_path: Path) -> None:
    """Its churn rounds too: workers stopped by the heartbeat leave short rounds, whose block noise
    must not pass for a leak."""
    done = leakcheck_cli(
        "--profile",
        "ci",
        "--scenario",
        "multi_tab",
        "--churn-cycles",
        "200",
        "--starve-generator",
        "0.6",
        "--report-dir",
        str(tmp_path),
        timeout=280,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "INCONCLUSIVE (the load generator could not keep its schedule; nothing found)" in done.stdout
    (scenario,) = json.loads((tmp_path / "leakcheck.json").read_text())["scenarios"]
    assert scenario["verdict"] == "inconclusive"
    assert not scenario["leaks"]
    assert not scenario["failures"]
    assert not scenario["errors"]
    overloaded = [r for r in scenario["rounds"] if r["overload"]]
    assert overloaded, scenario["rounds"]
    for record in overloaded:
        assert record["load"]["generator_lag_max_s"] >= 0.5, record["load"]
        assert "its allowance is 125 ms of loop lag" in record["overload"]


def test_the_generators_collector_waits_while_a_round_runs_and_is_given_back() -> None:
    """A full collection of the harness's heap was the largest source of its loop lag (200 ms in a
    prod churn round); the monitor pauses the collector for the round and restores it."""

    async def round_of_nothing() -> bool:
        monitor = LoadMonitor([], None)
        monitor.start()
        paused = not gc.isenabled()
        await monitor.stop()
        return paused

    assert asyncio.run(round_of_nothing())
    assert gc.isenabled()
    gc.disable()
    try:
        asyncio.run(round_of_nothing())
        assert not gc.isenabled(), "a collector the process had turned off was turned on"
    finally:
        gc.enable()
