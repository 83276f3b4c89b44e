"""multi_tab: one user, eight tabs on one thread, a run streams, the tabs close or vanish."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from wsguard.leaktest.client import Tab, open_tab
from wsguard.leaktest.profiles import Sizes
from wsguard.leaktest.scenarios.base import (
    RoundResult,
    ScenarioContext,
    churn_in_parallel,
    closes_of,
    duplicates,
    offsets_of,
    open_churn_tab,
    run_until_complete,
)

THREAD = "multi-tab"


class MultiTab:
    name = "multi_tab"
    description = (
        "8 tabs 0.1 s apart on one thread; a run streams; half close, half drop TCP; "
        "every tab gets every event once"
    )

    async def round(self, ctx: ScenarioContext, sizes: Sizes, user_id: str) -> RoundResult:
        result = RoundResult()
        tabs: list[Tab] = []
        try:
            for index in range(sizes.tabs):
                if index:
                    await asyncio.sleep(sizes.tab_gap_s)
                tab = await open_tab(ctx.api, user_id, f"{user_id}/tab{index}")
                tabs.append(tab)
                await tab.subscribe(THREAD)
            result.connections = len(tabs)
            run = await ctx.api.start_run(user_id, THREAD, "multi-tab round")
            ctx.note_run(user_id, run["run_id"])
            missing = await run_until_complete(tabs, run["run_id"], timeout=15.0)
            result.check(not missing, f"run {run['run_id']} never completed on {closes_of(tabs, missing)}")
            reference = sorted(set().union(*(offsets_of(t, THREAD, run["run_id"]) for t in tabs)))
            for tab in tabs:
                got = offsets_of(tab, THREAD, run["run_id"])
                repeated = duplicates(got)
                result.forbid(bool(repeated), f"{tab.name} got offsets {repeated} twice")
                lost = sorted(set(reference) - set(got))
                result.check(not lost, f"{tab.name} missed offsets {lost} ({tab.describe_close()})")
                result.events += len(got)
            for index, tab in enumerate(tabs):
                if index % 2 == 0:
                    await tab.close()
                else:
                    tab.drop()
            for tab in tabs:
                await tab.wait_closed(2.0)
        finally:
            for tab in tabs:
                if not tab.is_closed:
                    tab.drop()
            result.tabs.extend(tabs)
        return result

    async def churn(self, ctx: ScenarioContext, cycles: int, user_id: str) -> RoundResult:
        """A tab's life, over and over: open, subscribe, then close (even cycles) or drop TCP."""

        async def work(users: Sequence[str], count: int, result: RoundResult) -> None:
            for index in range(count):
                user = users[index % len(users)]
                tab = await open_churn_tab(ctx.api, user, f"{user}/churn{index}")
                try:
                    await tab.subscribe(THREAD)
                    if index % 2 == 0:
                        await tab.close()
                    else:
                        tab.drop()
                        await tab.wait_closed(2.0)
                finally:
                    if not tab.is_closed:
                        tab.drop()
                result.connections += 1

        return await churn_in_parallel(cycles, user_id, work)
