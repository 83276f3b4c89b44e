"""cold_start_burst: 25 connections at 15 per second against a limit of 20."""

from __future__ import annotations

import asyncio
import time

from wsguard.leaktest.client import Refused, Tab, open_tab
from wsguard.leaktest.profiles import Sizes
from wsguard.leaktest.scenarios.base import RoundResult, ScenarioContext, paced

SUPERSEDED = 4001


class ColdStartBurst:
    name = "cold_start_burst"
    description = (
        "25 connections at 15/s, limit 20: never more than 20, the 5 oldest closed with 4001, "
        "no other failure"
    )

    async def round(self, ctx: ScenarioContext, sizes: Sizes, user_id: str) -> RoundResult:
        result = RoundResult()
        opened: dict[int, Tab] = {}
        errors: dict[int, str] = {}

        async def attempt(index: int) -> None:
            try:
                opened[index] = await open_tab(ctx.api, user_id, f"{user_id}/burst{index}")
            except Refused as refused:
                errors[index] = f"HTTP {refused.status}"
            except Exception as error:
                errors[index] = f"{type(error).__name__}: {error}"

        peak_seen = 0.0
        watching = True

        async def watch_peak() -> None:
            nonlocal peak_seen
            while watching:
                ids = await ctx.user_connection_ids(user_id)
                peak_seen = max(peak_seen, len(ids))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch_peak())
        try:
            await paced(sizes.burst_connections, sizes.burst_rate, attempt)
            result.connections = sizes.burst_connections
            result.check(not errors, f"attempts failed other than by 4001: {errors}")
            limit = _limit(opened)
            excess = max(0, sizes.burst_connections - limit)
            order = sorted(opened.values(), key=lambda tab: tab.opened_at)
            oldest, newest = order[:excess], order[excess:]
            for tab in oldest:
                await tab.wait_closed(2.0)
            settle = time.monotonic() + ctx.profile.cleanup_bound_s
            # Give the server the cleanup bound to (wrongly) close one of the newest.
            while time.monotonic() < settle and not any(t.is_closed for t in newest):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            evicted = [t.name for t in oldest if t.close_code != SUPERSEDED]
            result.check(
                not evicted,
                f"the {excess} oldest were not all closed with 4001: "
                + ", ".join(f"{t.name}={t.close_code}" for t in oldest),
            )
            wrongly = [f"{t.name}={t.close_code}" for t in newest if t.is_closed]
            result.check(not wrongly, f"newest connections were closed: {wrongly}")
            result.events = sum(len(t.frames) for t in opened.values())
        finally:
            watching = False
            await watcher
            await asyncio.gather(*(tab.close() for tab in opened.values() if not tab.is_closed))
            result.tabs.extend(opened.values())
        limit = _limit(opened)
        result.check(
            peak_seen <= limit,
            f"the user held {peak_seen:g} connections at once, over the limit of {limit}",
        )
        return result


def _limit(opened: dict[int, Tab]) -> int:
    """The server's per-user limit, from any welcome frame."""
    for tab in opened.values():
        return int(tab.welcome["limits"]["max_connections_per_user"])
    return 20
