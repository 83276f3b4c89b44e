"""comprehensive: every scenario at once for many users, on the same thread names."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from wsguard.leaktest.profiles import Sizes
from wsguard.leaktest.scenarios.base import RoundResult, Scenario, ScenarioContext
from wsguard.leaktest.scenarios.cleanup_race import CleanupRace
from wsguard.leaktest.scenarios.cold_start_burst import ColdStartBurst
from wsguard.leaktest.scenarios.context_consistency import ContextConsistency
from wsguard.leaktest.scenarios.multi_tab import MultiTab
from wsguard.leaktest.scenarios.reconnect_cycles import ReconnectCycles

PARTS: tuple[Scenario, ...] = (
    MultiTab(),
    ContextConsistency(),
    ColdStartBurst(),
    ReconnectCycles(),
    CleanupRace(),
)


class Comprehensive:
    name = "comprehensive"
    description = (
        "all five scenarios at once for many users on the same thread names: "
        "no event reaches another user, every count returns to 0"
    )

    async def round(self, ctx: ScenarioContext, sizes: Sizes, user_id: str) -> RoundResult:
        jobs: list[tuple[str, Scenario]] = [
            (f"{user_id}-{number}-{part.name}", part)
            for number in range(sizes.comprehensive_users)
            for part in PARTS
        ]
        shared = replace(ctx, alone=False)
        outcomes = await asyncio.gather(
            *(part.round(shared, sizes, user) for user, part in jobs), return_exceptions=True
        )
        result = RoundResult()
        for (user, _), outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                result.failures.append(f"{user}: {type(outcome).__name__}: {outcome}")
                continue
            result.absorb(outcome, user)
            result.violations.extend(isolation_failures(ctx, user, outcome))
        return result


def isolation_failures(ctx: ScenarioContext, user_id: str, outcome: RoundResult) -> list[str]:
    """Events on ``user_id``'s tabs that belong to another user: by marker or by run id."""
    own_runs = ctx.runs_by_user.get(user_id, set())
    foreign_runs = {run for other, runs in ctx.runs_by_user.items() if other != user_id for run in runs}
    failures: list[str] = []
    for tab in outcome.tabs:
        for event in tab.events:
            data = event.get("data")
            marker = data.get("user") if isinstance(data, dict) else None
            run_id = event.get("run_id")
            if marker is not None and marker != user_id:
                failures.append(f"{user_id}: {tab.name} got an event published for {marker}")
            elif run_id in foreign_runs and run_id not in own_runs:
                failures.append(f"{user_id}: {tab.name} got an event of another user's run {run_id}")
    return failures
