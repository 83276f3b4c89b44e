"""cold_start_burst: 25 connections at 15 per second against a limit of 20."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Sequence

from wsguard.leaktest.client import Refused, Tab, open_tab
from wsguard.leaktest.profiles import Sizes
from wsguard.leaktest.scenarios.base import (
    RoundResult,
    ScenarioContext,
    Watcher,
    churn_in_parallel,
    open_churn_tab,
    paced,
)

SUPERSEDED = 4001
CHURN_USERS_PER_WORKER = 2
"""Each churn user is first filled to the limit, which evicts nothing: few users keep that share
of a round's connections small, enough of them keep each under the server's connect rate."""


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

        async def look() -> None:
            nonlocal peak_seen
            peak_seen = max(peak_seen, await ctx.user_connections_at_once(user_id))

        watcher = Watcher("the admin listing of the user's connections", look, 0.01)
        watcher.start()
        try:
            await paced(sizes.burst_connections, sizes.burst_rate, attempt)
            result.connections = sizes.burst_connections
            result.check(not errors, f"attempts failed other than by 4001: {errors}")
            limit = _limit(opened.values())
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
            await watcher.stop(result)
            await asyncio.gather(*(tab.close() for tab in opened.values() if not tab.is_closed))
            result.tabs.extend(opened.values())
        limit = _limit(opened.values())
        result.forbid(
            peak_seen > limit,
            f"the user held {peak_seen:g} connections at once, over the limit of {limit}",
        )
        return result

    async def churn(self, ctx: ScenarioContext, cycles: int, user_id: str) -> RoundResult:
        """Hold each user at the limit and open one more, over and over: each of those admissions
        evicts that user's oldest connection, which must close with 4001 (and no other one).

        The round's ``cycles`` connections include the ones that first fill each user to the limit.
        """

        async def work(users: Sequence[str], count: int, result: RoundResult) -> None:
            held: dict[str, deque[Tab]] = {user: deque() for user in users}
            try:
                for user in users:
                    tabs = held[user]
                    tabs.append(await open_churn_tab(ctx.api, user, f"{user}/fill0"))
                    limit = _limit(tabs)
                    while len(tabs) < limit:
                        tabs.append(await open_churn_tab(ctx.api, user, f"{user}/fill{len(tabs)}"))
                    result.connections += limit
                for index in range(max(0, count - result.connections)):
                    user = users[index % len(users)]
                    tabs = held[user]
                    tab = await open_churn_tab(ctx.api, user, f"{user}/churn{index}")
                    result.connections += 1
                    oldest = tabs.popleft()
                    tabs.append(tab)
                    code = await oldest.wait_closed(2.0)
                    result.check(
                        code == SUPERSEDED, f"{tab.name}: the oldest, {oldest.name}, closed with {code}"
                    )
                    if not oldest.is_closed:
                        oldest.drop()
                wrongly = [f"{t.name}={t.close_code}" for tabs in held.values() for t in tabs if t.is_closed]
                result.check(not wrongly, f"connections other than the oldest were closed: {wrongly}")
            finally:
                await asyncio.gather(*(t.close() for tabs in held.values() for t in tabs if not t.is_closed))

        return await churn_in_parallel(cycles, user_id, work, CHURN_USERS_PER_WORKER)


def _limit(tabs: Iterable[Tab]) -> int:
    """The server's per-user limit, from any welcome frame."""
    for tab in tabs:
        return int(tab.welcome["limits"]["max_connections_per_user"])
    return 20
