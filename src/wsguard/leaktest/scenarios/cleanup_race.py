"""cleanup_race: a new connection every 0.5 s, each old one abandoned half-open."""

from __future__ import annotations

import asyncio
import contextlib
import time

from wsguard.leaktest.client import Refused, Tab, open_tab
from wsguard.leaktest.profiles import Sizes
from wsguard.leaktest.scenarios.base import RoundResult, ScenarioContext
from wsguard.leaktest.verdict import RSS

THREAD = "cleanup-race"
SAMPLING_SLACK_S = 0.1
FLOOD_EVENT_BYTES = 32768


class CleanupRace:
    name = "cleanup_race"
    description = (
        "a new connection every 0.5 s for 10 s, each old one stops answering pings: "
        "the heartbeat reaps every one in time, the user is never refused"
    )

    async def round(self, ctx: ScenarioContext, sizes: Sizes, user_id: str) -> RoundResult:
        result = RoundResult()
        tabs: list[Tab] = []
        stalled_at: dict[str, float] = {}
        released_at: dict[str, float] = {}
        queued_peak: dict[str, int] = {}
        watching = True

        async def watch_releases() -> None:
            while watching:
                with contextlib.suppress(Exception):
                    rows = await ctx.user_connections(user_id)
                    open_ids = {row["connection_id"] for row in rows}
                    for row in rows:
                        if row["connection_id"] in stalled_at:
                            queued = int(row.get("queue_bytes", 0))
                            queued_peak[row["connection_id"]] = max(
                                queued, queued_peak.get(row["connection_id"], 0)
                            )
                    now = time.monotonic()
                    for connection_id in stalled_at:
                        if connection_id not in open_ids and connection_id not in released_at:
                            released_at[connection_id] = now
                await asyncio.sleep(0.02)

        reaped_before = await _zombies_reaped(ctx)
        watcher = asyncio.create_task(watch_releases())
        count = max(1, round(sizes.race_duration_s / sizes.race_interval_s))
        reap_bound = ctx.profile.heartbeat_reap_s() + ctx.profile.cleanup_bound_s
        try:
            started = time.monotonic()
            for index in range(count):
                await asyncio.sleep(max(0.0, started + index * sizes.race_interval_s - time.monotonic()))
                try:
                    tab = await open_tab(ctx.api, user_id, f"{user_id}/race{index}", receive_buffer=4096)
                except Refused as refused:
                    result.failures.append(f"connection {index} refused with HTTP {refused.status}")
                    continue
                await tab.subscribe(THREAD)
                if tabs and not tabs[-1].stalled:
                    previous = tabs[-1]
                    previous.stall()
                    stalled_at[previous.connection_id] = time.monotonic()
                    if len(stalled_at) == 1 and sizes.flood_bytes:
                        growth = await _flood(ctx, user_id, index, sizes.flood_bytes)
                        result.check(
                            growth <= sizes.flood_bytes / 2,
                            f"resident memory grew {growth / 1e6:.1f} MB while "
                            f"{sizes.flood_bytes / 1e6:.1f} MB were sent to a connection "
                            f"that stopped reading (queue limit {ctx.profile.queue_limit_bytes} B)",
                        )
                tabs.append(tab)
            result.connections = len(tabs)
            deadline = time.monotonic() + reap_bound + SAMPLING_SLACK_S
            # The watcher records releases seen on the server; wait for it to see them all.
            while time.monotonic() < deadline and len(released_at) < len(stalled_at):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            late = {
                cid: round(released_at[cid] - at, 3)
                for cid, at in stalled_at.items()
                if cid in released_at and released_at[cid] - at > reap_bound + SAMPLING_SLACK_S
            }
            never = [cid for cid in stalled_at if cid not in released_at]
            result.check(
                not never,
                f"{len(never)} of {len(stalled_at)} abandoned connections still held "
                f"{reap_bound:g} s after they stopped answering: {never}",
            )
            result.check(not late, f"abandoned connections released late (s): {late}")
            reaped = await _zombies_reaped(ctx) - reaped_before
            result.check(
                reaped >= len(stalled_at),
                f"wsguard_zombies_reaped_total plus slow_consumer closes rose by {reaped:g}, "
                f"but {len(stalled_at)} connections stopped reading",
            )
            queue_bound = ctx.profile.queue_limit_bytes + FLOOD_EVENT_BYTES
            overfull = {cid: peak for cid, peak in queued_peak.items() if peak > queue_bound}
            result.check(
                not overfull,
                f"connections that stopped reading held unsent bytes over the queue limit "
                f"{ctx.profile.queue_limit_bytes}: {overfull}",
            )
            if tabs:
                result.check(not tabs[-1].is_closed, f"the live connection was closed: {tabs[-1].close_code}")
                await tabs[-1].close()
        finally:
            watching = False
            await watcher
            for tab in tabs:
                if not tab.is_closed:
                    tab.drop()
            for tab in tabs:
                await tab.wait_closed(1.0)
            result.tabs.extend(tabs)
        result.events = sum(len(t.frames) for t in tabs)
        return result


async def _zombies_reaped(ctx: ScenarioContext) -> float:
    """Connections closed for not reading: by the heartbeat, or as slow consumers."""
    metrics = await ctx.sampler.metrics.scrape()
    slow = metrics.get('wsguard_connections_closed_total{reason="slow_consumer"}', 0.0)
    return metrics.get("wsguard_zombies_reaped_total", 0.0) + slow


async def _flood(ctx: ScenarioContext, user_id: str, index: int, total: int) -> float:
    """Publish far more than the queue limit to the thread a stalled connection subscribes to.

    Returns how much the server's resident memory grew meanwhile: a bounded queue keeps that
    near nothing, an unbounded one by about what was sent.
    """
    before = (await ctx.sampler.metrics.scrape()).get(RSS, 0.0)
    padding = "x" * FLOOD_EVENT_BYTES
    for part in range(max(1, total // FLOOD_EVENT_BYTES)):
        await ctx.api.publish(
            user_id, THREAD, "flood", {"user": user_id, "step": index, "part": part, "pad": padding}
        )
    after = (await ctx.sampler.metrics.scrape()).get(RSS, 0.0)
    return after - before
