"""cleanup_race: a new connection every 0.5 s, each old one abandoned half-open.

Reaping is timed from the moment the server must have noticed: a heartbeat interval plus its
timeout after the abandoned tab last answered a ping (its last pong, or its opening). A release
counts as late only when the server still listed the connection at a look that began more than
the cleanup bound after that moment, which a faster machine would see too.

Memory while a reader stalls: the first abandoned connection is sent far more than its queue
limit. What grows by design is the thread log, which keeps the last ``--retention-events`` events
published to the thread (for any subscriber that recovers); what belongs to the stalled
connection is its unsent bytes, which must stay within the queue limit plus one event. The
server's process memory is held to the flood's half once the log's share is taken out, and only
when the scenario has the server to itself: inside comprehensive, other users flood at once.
"""

from __future__ import annotations

import asyncio
import time

from wsguard.leaktest.client import Refused, Tab, open_tab
from wsguard.leaktest.profiles import Profile, Sizes
from wsguard.leaktest.scenarios.base import RoundResult, ScenarioContext, Watcher
from wsguard.leaktest.verdict import RSS

THREAD = "cleanup-race"
SAMPLING_SLACK_S = 0.1
FLOOD_EVENT_BYTES = 32768
FRAME_OVERHEAD_BYTES = 512
"""An event frame's fields around its data: ids, offset, epoch, timestamp."""


class CleanupRace:
    name = "cleanup_race"
    description = (
        "a new connection every 0.5 s for 10 s, each old one stops answering pings: "
        "the heartbeat reaps every one within the cleanup bound of when it must have noticed, "
        "the user is never refused"
    )

    async def round(self, ctx: ScenarioContext, sizes: Sizes, user_id: str) -> RoundResult:
        result = RoundResult()
        profile = ctx.profile
        tabs: list[Tab] = []
        abandoned: dict[str, Tab] = {}
        listed_at: dict[str, float] = {}
        """When the last look that still listed the connection began."""
        gone_by: dict[str, float] = {}
        """When the first look that no longer listed it ended."""
        queued_peak: dict[str, int] = {}

        async def look() -> None:
            asked = time.monotonic()
            rows = await ctx.user_connections(user_id)
            answered = time.monotonic()
            listed = set()
            for row in rows:
                connection_id = str(row["connection_id"])
                listed.add(connection_id)
                if connection_id in abandoned:
                    listed_at[connection_id] = asked
                    queued = int(row.get("queue_bytes", 0))
                    queued_peak[connection_id] = max(queued, queued_peak.get(connection_id, 0))
            for connection_id in abandoned:
                if connection_id not in listed and connection_id not in gone_by:
                    gone_by[connection_id] = answered

        reaped_before = await _zombies_reaped(ctx)
        watcher = Watcher("the admin listing of the user's connections", look, 0.02)
        watcher.start()
        count = max(1, round(sizes.race_duration_s / sizes.race_interval_s))
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
                    abandoned[previous.connection_id] = previous
                    if len(abandoned) == 1 and sizes.flood_bytes:
                        await _flood(ctx, result, user_id, index, sizes.flood_bytes)
                tabs.append(tab)
            result.connections = len(tabs)
            noticed = {cid: tab.last_alive_at + profile.heartbeat_reap_s() for cid, tab in abandoned.items()}
            deadline = max(noticed.values(), default=0.0) + profile.cleanup_bound_s + SAMPLING_SLACK_S
            # The watcher records the releases it sees; wait for it to see them all.
            while time.monotonic() < deadline and len(gone_by) < len(abandoned):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            latency = None if ctx.load is None else ctx.load.server_latency_max_s()
            check_reaping(result, profile, latency, noticed, listed_at, gone_by)
            reaped = await _zombies_reaped(ctx) - reaped_before
            result.check(
                reaped >= len(abandoned),
                f"wsguard_zombies_reaped_total plus slow_consumer closes rose by {reaped:g}, "
                f"but {len(abandoned)} connections stopped reading",
            )
            queue_bound = profile.queue_limit_bytes + FLOOD_EVENT_BYTES + FRAME_OVERHEAD_BYTES
            overfull = {cid: peak for cid, peak in queued_peak.items() if peak > queue_bound}
            result.forbid(
                bool(overfull),
                f"connections that stopped reading held unsent bytes over the queue limit "
                f"{profile.queue_limit_bytes}: {overfull}",
            )
            if tabs:
                result.check(not tabs[-1].is_closed, f"the live connection was closed: {tabs[-1].close_code}")
                await tabs[-1].close()
        finally:
            await watcher.stop(result)
            for tab in tabs:
                if not tab.is_closed:
                    tab.drop()
            for tab in tabs:
                await tab.wait_closed(1.0)
            result.tabs.extend(tabs)
        result.events = sum(len(t.frames) for t in tabs)
        return result


def check_reaping(
    result: RoundResult,
    profile: Profile,
    server_latency_s: float | None,
    noticed: dict[str, float],
    listed_at: dict[str, float],
    gone_by: dict[str, float],
) -> None:
    """Every abandoned connection released within the cleanup bound of when the server must have
    noticed (interval + timeout after its last pong), with the server's own lag beside."""
    server = "unknown" if server_latency_s is None else f"{server_latency_s * 1000:.0f} ms"
    beside = (
        f"measured from {profile.heartbeat_reap_s():g} s (interval + timeout) after each one's "
        f"last pong; server /healthz latency max {server} this round"
    )
    never = [cid for cid in noticed if cid not in gone_by]
    result.check(
        not never,
        f"{len(never)} of {len(noticed)} abandoned connections still held "
        f"{profile.cleanup_bound_s + SAMPLING_SLACK_S:g} s after the server must have noticed, "
        f"{beside}: {never}",
    )
    late = {
        cid: round(listed_at[cid] - at, 3)
        for cid, at in noticed.items()
        if cid in gone_by and listed_at.get(cid, 0.0) - at > profile.cleanup_bound_s
    }
    result.check(
        not late, f"abandoned connections still listed this long (s) after that moment, {beside}: {late}"
    )
    resolution_s = profile.cleanup_bound_s + SAMPLING_SLACK_S
    unseen = {
        cid: (round(listed_at.get(cid, at) - at, 3), round(gone_by[cid] - at, 3))
        for cid, at in noticed.items()
        if cid in gone_by and cid not in late and gone_by[cid] - at > resolution_s
    }
    if unseen:
        result.notes.append(
            f"{len(unseen)} releases could not be timed closer than (last look that listed it, first "
            f"that did not) in s, the admin listing answering slowly or the harness stalled between "
            f"the two; not late, since no look after the bound listed them, {beside}: {unseen}"
        )
    delays = [gone_by[cid] - at for cid, at in noticed.items() if cid in gone_by]
    if delays:
        result.notes.append(
            f"{len(delays)} abandoned connections gone {min(delays):+.3f} to {max(delays):+.3f} s "
            f"from when the server must have noticed (bound +{profile.cleanup_bound_s:g} s), {beside}"
        )


async def _zombies_reaped(ctx: ScenarioContext) -> float:
    """Connections closed for not reading: by the heartbeat, or as slow consumers."""
    metrics = await ctx.sampler.metrics.scrape()
    slow = metrics.get('wsguard_connections_closed_total{reason="slow_consumer"}', 0.0)
    return metrics.get("wsguard_zombies_reaped_total", 0.0) + slow


async def _flood(ctx: ScenarioContext, result: RoundResult, user_id: str, index: int, total: int) -> None:
    """Publish far more than the queue limit to the thread a stalled connection subscribes to,
    and hold the server's memory growth meanwhile to what the thread log keeps by design plus
    half the flood (an unbounded queue keeps about all of it)."""
    before = (await ctx.sampler.metrics.scrape()).get(RSS, 0.0)
    padding = "x" * FLOOD_EVENT_BYTES
    parts = max(1, total // FLOOD_EVENT_BYTES)
    for part in range(parts):
        await ctx.api.publish(
            user_id, THREAD, "flood", {"user": user_id, "step": index, "part": part, "pad": padding}
        )
    growth = (await ctx.sampler.metrics.scrape()).get(RSS, 0.0) - before
    retained = min(parts, ctx.profile.retention_events) * (FLOOD_EVENT_BYTES + FRAME_OVERHEAD_BYTES)
    figures = (
        f"resident memory grew {growth / 1e6:.1f} MB while {total / 1e6:.1f} MB were sent to a "
        f"connection that stopped reading (queue limit {ctx.profile.queue_limit_bytes} B); the "
        f"thread log keeps {retained / 1e6:.2f} MB of it by design (the last "
        f"{ctx.profile.retention_events} events)"
    )
    if not ctx.alone:
        result.notes.append(f"{figures}; not judged: other users flood the same server at once")
        return
    result.notes.append(figures)
    result.check(
        growth - retained <= total / 2, f"{figures}, which leaves over {total / 2e6:.1f} MB for the rest"
    )
