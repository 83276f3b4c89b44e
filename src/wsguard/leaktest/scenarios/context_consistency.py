"""context_consistency: a run started over HTTP carries the HTTP response's ids on every event."""

from __future__ import annotations

from wsguard.leaktest.client import Tab, open_tab
from wsguard.leaktest.profiles import Sizes
from wsguard.leaktest.scenarios.base import RoundResult, ScenarioContext, closes_of, run_until_complete

THREAD = "context-consistency"
RUNS_PER_ROUND = 2
ID_FIELDS = ("thread_id", "run_id", "request_id")


class ContextConsistency:
    name = "context_consistency"
    description = (
        "runs started by POST /api/threads/{tid}/runs; every event carries exactly the ids "
        "the response returned, and no second set of ids exists"
    )

    async def round(self, ctx: ScenarioContext, sizes: Sizes, user_id: str) -> RoundResult:
        result = RoundResult()
        tabs: list[Tab] = []
        try:
            for index in range(max(2, sizes.tabs)):
                tab = await open_tab(ctx.api, user_id, f"{user_id}/ctx{index}")
                tabs.append(tab)
                await tab.subscribe(THREAD)
            result.connections = len(tabs)
            started: list[dict[str, str]] = []
            for number in range(RUNS_PER_ROUND):
                ids = await ctx.api.start_run(user_id, THREAD, f"context round run {number}")
                ctx.note_run(user_id, ids["run_id"])
                result.forbid(
                    ids.get("thread_id") != THREAD,
                    f"POST runs on {THREAD} returned thread_id {ids.get('thread_id')!r}",
                )
                result.forbid(
                    not ids.get("run_id") or not ids.get("request_id"),
                    f"POST runs returned no run_id or request_id: {ids}",
                )
                missing = await run_until_complete(tabs, ids["run_id"], timeout=15.0)
                result.check(
                    not missing, f"run {ids['run_id']} never completed on {closes_of(tabs, missing)}"
                )
                started.append(ids)
            run_ids = [ids["run_id"] for ids in started]
            result.forbid(len(set(run_ids)) != len(run_ids), f"two runs share a run_id: {run_ids}")
            by_run = {ids["run_id"]: ids for ids in started}
            for tab in tabs:
                for event in tab.events:
                    if event.get("thread_id") != THREAD:
                        continue
                    result.events += 1
                    expected = by_run.get(str(event.get("run_id")))
                    if expected is None:
                        result.violations.append(
                            f"{tab.name} got {event.get('event')} with run_id "
                            f"{event.get('run_id')!r}, which no POST returned"
                        )
                        continue
                    for name in ID_FIELDS:
                        result.forbid(
                            event.get(name) != expected[name],
                            f"{tab.name} got {event.get('event')} with {name} "
                            f"{event.get(name)!r}, but the POST returned {expected[name]!r}",
                        )
            for tab in tabs:
                await tab.close()
        finally:
            for tab in tabs:
                if not tab.is_closed:
                    tab.drop()
            result.tabs.extend(tabs)
        return result
