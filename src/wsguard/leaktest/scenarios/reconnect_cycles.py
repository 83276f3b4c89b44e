"""reconnect_cycles: connect, hold, drop, reconnect at once with ``resume`` and ``since``."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wsguard.leaktest.client import Tab, open_tab
from wsguard.leaktest.profiles import Sizes
from wsguard.leaktest.scenarios.base import (
    RoundResult,
    ScenarioContext,
    Watcher,
    churn_in_parallel,
    offsets_of,
    open_churn_tab,
)

THREAD = "reconnect"
MAX_AT_ONCE = 2
REPLACED = 4002


@dataclass
class _Resumable:
    """A churn user's open tab and what it resumes from."""

    tab: Tab
    session_id: str
    since: dict[str, Any]


class ReconnectCycles:
    name = "reconnect_cycles"
    description = (
        "cycles of connect, hold, drop (half clean, half abrupt), reconnect with resume and since: "
        "never more than 2 at once, gap events replayed once"
    )

    async def round(self, ctx: ScenarioContext, sizes: Sizes, user_id: str) -> RoundResult:
        result = RoundResult()
        tabs: list[Tab] = []
        published: list[int] = []
        peak = 0

        async def look() -> None:
            nonlocal peak
            peak = max(peak, await ctx.user_connections_at_once(user_id))

        async def publish(phase: str, cycle: int) -> None:
            offset = await ctx.api.publish(
                user_id, THREAD, "reconnect_probe", {"user": user_id, "phase": phase, "cycle": cycle}
            )
            if offset is None:
                result.failures.append(f"publish to {THREAD} returned no offset")
            else:
                published.append(offset)

        watcher = Watcher("the admin listing of the user's connections", look, 0.01)
        watcher.start()
        try:
            tab = await open_tab(ctx.api, user_id, f"{user_id}/cycle0")
            tabs.append(tab)
            first = await tab.subscribe(THREAD)
            epoch = first["epoch"]
            last_offset = int(first["offset"])
            start_offset = last_offset
            session_id = tab.session_id
            for cycle in range(sizes.reconnect_cycles):
                await publish("live", cycle)
                await asyncio.sleep(sizes.reconnect_hold_s)
                if cycle % 2 == 0:
                    await tab.close()
                else:
                    tab.drop()
                    await tab.wait_closed(1.0)
                await publish("gap", cycle)
                last_offset = max([last_offset, *offsets_of(tab, THREAD)])
                tab = await open_tab(ctx.api, user_id, f"{user_id}/cycle{cycle + 1}", resume=session_id)
                tabs.append(tab)
                result.forbid(
                    tab.session_id != session_id,
                    f"resume of {session_id} gave session {tab.session_id} in cycle {cycle}",
                )
                since: dict[str, Any] = {"epoch": epoch, "offset": last_offset}
                subscribed = await tab.subscribe(THREAD, since=since)
                result.check(
                    subscribed.get("recovered") is True,
                    f"cycle {cycle}: subscribe since {since} was not recovered: {subscribed}",
                )
            await publish("final", sizes.reconnect_cycles)
            await tab.wait_for(lambda f: f.get("type") == "event" and f.get("offset") == published[-1], 5.0)
            open_now = await ctx.user_connection_ids(user_id)
            result.check(
                open_now == [tab.connection_id],
                f"once settled the user holds {open_now}, expected only {tab.connection_id}",
            )
            await tab.close()
        finally:
            await watcher.stop(result)
            for each in tabs:
                if not each.is_closed:
                    each.drop()
            result.tabs.extend(tabs)
        result.connections = len(tabs)
        received = Counter(o for t in tabs for o in offsets_of(t, THREAD) if o > start_offset)
        result.events = sum(received.values())
        lost = sorted(set(published) - set(received))
        twice = sorted(o for o, n in received.items() if n > 1)
        unexpected = sorted(set(received) - set(published))
        result.check(not lost, f"published offsets never delivered: {lost}")
        result.forbid(bool(twice), f"offsets delivered more than once: {twice}")
        result.forbid(bool(unexpected), f"offsets delivered that were not published: {unexpected}")
        result.forbid(peak > MAX_AT_ONCE, f"the user held {peak} connections at once (at most {MAX_AT_ONCE})")
        return result

    async def churn(self, ctx: ScenarioContext, cycles: int, user_id: str) -> RoundResult:
        """Reconnect with ``resume`` and ``since``, over and over, leaving the old connection in
        turn cleanly, by dropping TCP, and not at all (the new one takes over: 4002)."""

        async def work(users: Sequence[str], count: int, result: RoundResult) -> None:
            live: dict[str, _Resumable] = {}
            try:
                for index in range(count):
                    user = users[index % len(users)]
                    name = f"{user}/churn{index}"
                    previous = live.get(user)
                    if previous is None:
                        tab = await open_churn_tab(ctx.api, user, name)
                        first = await tab.subscribe(THREAD)
                        since = {"epoch": first["epoch"], "offset": int(first["offset"])}
                        live[user] = _Resumable(tab, tab.session_id, since)
                        result.connections += 1
                        continue
                    way = (index // len(users)) % 3
                    if way == 0:
                        await previous.tab.close()
                    elif way == 1:
                        previous.tab.drop()
                        await previous.tab.wait_closed(2.0)
                    tab = await open_churn_tab(ctx.api, user, name, resume=previous.session_id)
                    live[user] = _Resumable(tab, previous.session_id, previous.since)
                    result.connections += 1
                    result.check(
                        tab.session_id == previous.session_id,
                        f"{name}: resume of {previous.session_id} gave session {tab.session_id}",
                    )
                    subscribed = await tab.subscribe(THREAD, since=previous.since)
                    result.check(
                        subscribed.get("recovered") is True,
                        f"{name}: subscribe since {previous.since} was not recovered: {subscribed}",
                    )
                    if way == 2:
                        code = await previous.tab.wait_closed(2.0)
                        result.check(code == REPLACED, f"{name}: the taken-over tab closed with {code}")
                        if not previous.tab.is_closed:
                            previous.tab.drop()
            finally:
                for resumable in live.values():
                    if not resumable.tab.is_closed:
                        await resumable.tab.close()

        return await churn_in_parallel(cycles, user_id, work)
