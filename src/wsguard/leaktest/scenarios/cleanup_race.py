"""cleanup_race: a new connection every 0.5 s, each old one abandoned half-open.

Reaping is timed from the moment the server must have noticed: for a WebSocket, a heartbeat
interval plus its timeout after the abandoned tab last answered a ping (its last pong, or its
opening). An event stream answers no ping: the server finds a stream that stopped reading only
by its writes backing up (docs/protocol.md section 9, SSE streams and dead peers), so the
abandoned streams are sent events until the server lets them all go, and it must have noticed
them once they were sent more than a stream can hold (:func:`stream_holds_at_most`). A release
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
from collections.abc import Mapping

from wsguard.leaktest.client import Refused, Tab, open_tab
from wsguard.leaktest.profiles import Profile, Sizes
from wsguard.leaktest.scenarios.base import RoundResult, ScenarioContext, Watcher
from wsguard.leaktest.verdict import RSS
from wsguard.transport.runner import TransportOptions

THREAD = "cleanup-race"
OVERFILL_THREAD = "cleanup-race-overfill"
"""Where the streams that stopped reading are overfilled. Every stream tab subscribes to it when
it opens (once stalled, a command's answer would wait on the stream's writes), and the live one
unsubscribes before the overfill."""
OVERFILL_EVENT_BYTES = 16384
"""Half the flood's events: with megabytes of 32 KiB events every round, the server's resident
memory moves by hundreds of KB from one round to the next (the allocator's, not a leak), which
the slope over rounds of five connections takes for growth; with 16 KiB ones it stays flat."""
SAMPLING_SLACK_S = 0.1
FLOOD_EVENT_BYTES = 32768
FRAME_OVERHEAD_BYTES = 512
"""An event frame's fields around its data: ids, offset, epoch, timestamp."""
STREAM_SLACK_BYTES = 1024 * 1024
"""Beyond the server's queue and kernel buffer: the client's receive buffer and the chunk it read
last, and events in flight."""


class CleanupRace:
    name = "cleanup_race"
    description = (
        "a new connection every 0.5 s for 10 s, each old one stops reading (a socket answers no "
        "more pings, a stream's writes back up): each is released within the cleanup bound of "
        "when the server must have noticed, the user is never refused"
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
                if _noticed_by_writes(tab):
                    await tab.subscribe(OVERFILL_THREAD)
                if tabs and not tabs[-1].stalled:
                    previous = tabs[-1]
                    previous.stall()
                    abandoned[previous.connection_id] = previous
                    if len(abandoned) == 1 and sizes.flood_bytes:
                        await _flood(ctx, result, user_id, index, sizes.flood_bytes)
                tabs.append(tab)
            result.connections = len(tabs)
            if tabs and _noticed_by_writes(tabs[-1]):
                await tabs[-1].request("unsubscribe", "unsubscribed", thread_id=OVERFILL_THREAD)
            noticed, basis = await _when_noticed(ctx, result, user_id, abandoned, gone_by)
            deadline = max(noticed.values(), default=0.0) + profile.cleanup_bound_s + SAMPLING_SLACK_S
            # The watcher records the releases it sees; wait for it to see them all.
            while time.monotonic() < deadline and len(gone_by) < len(abandoned):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            latency = None if ctx.load is None else ctx.load.server_latency_max_s()
            check_reaping(result, profile, latency, noticed, listed_at, gone_by, basis=basis)
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
                result.check(not tabs[-1].is_closed, f"the live connection was {tabs[-1].describe_close()}")
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
    *,
    basis: str | None = None,
) -> None:
    """Every abandoned connection released within the cleanup bound of when the server must have
    noticed (by default interval + timeout after its last pong; ``basis`` says otherwise), with
    the server's own lag beside."""
    server = "unknown" if server_latency_s is None else f"{server_latency_s * 1000:.0f} ms"
    basis = basis or _heartbeat_basis(profile)
    beside = f"{basis}; server /healthz latency max {server} this round"
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


def _heartbeat_basis(profile: Profile) -> str:
    return f"measured from {profile.heartbeat_reap_s():g} s (interval + timeout) after each one's last pong"


async def _when_noticed(
    ctx: ScenarioContext,
    result: RoundResult,
    user_id: str,
    abandoned: Mapping[str, Tab],
    gone_by: Mapping[str, float],
) -> tuple[dict[str, float], str]:
    """When the server must have noticed each abandoned tab, and what that was measured from.

    A socket's heartbeat notices it an interval plus the timeout after its last pong. A stream's
    heartbeat is a comment, which no client answers: the server notices a stream that stopped
    reading only once its writes back up, so the streams are overfilled (on the thread they
    subscribed to for it), and noticed when that ends.
    """
    profile = ctx.profile
    noticed: dict[str, float] = {}
    streams: list[str] = []
    for connection_id, tab in abandoned.items():
        alive = tab.last_alive_at
        if alive is None:
            streams.append(connection_id)
        else:
            noticed[connection_id] = alive + profile.heartbeat_reap_s()
    if not streams:
        return noticed, _heartbeat_basis(profile)
    bound = stream_holds_at_most(profile)
    sent = await _overfill(ctx, user_id, streams, gone_by, bound)
    ended = time.monotonic()
    noticed.update(dict.fromkeys(streams, ended))
    held = [cid for cid in streams if cid not in gone_by]
    result.notes.append(
        f"{len(streams)} streams that stopped reading were sent {sent / 1e6:.1f} MB before "
        + (f"{len(held)} of them were still held" if held else "the server had let every one go")
        + f" (a stream holds at most {bound / 1e6:.1f} MB: the queue limit, the server's kernel "
        "send buffer and the socket buffers on the way)"
    )
    basis = (
        "a stream answers no ping: measured from when the streams that stopped reading had been "
        f"sent more than they can hold ({bound / 1e6:.1f} MB), or the server had let them all go"
    )
    return noticed, basis


def _noticed_by_writes(tab: Tab) -> bool:
    """Whether the server can find out that ``tab`` stopped reading only from its own writes
    backing up: a tab whose transport has no heartbeat it answers (an event stream)."""
    return tab.last_alive_at is None


def stream_holds_at_most(profile: Profile) -> int:
    """The most bytes a stream that stopped reading can take before the server must close it
    (4008): its queue limit, which counts what its transport holds too, then its kernel send
    buffer (the server sets it, and Linux doubles what is set), then what lies on the way."""
    return profile.queue_limit_bytes + 2 * TransportOptions().send_buffer_bytes + STREAM_SLACK_BYTES


async def _overfill(
    ctx: ScenarioContext, user_id: str, streams: list[str], gone_by: Mapping[str, float], bound: int
) -> int:
    """Publish to the overfill thread until the watcher saw every stream in ``streams`` let go, or
    each was sent ``bound`` bytes; the bytes sent. One event a request, the steady flow of a live
    thread, so that the socket buffers fill before the queue does, as for a reader that vanished
    (a burst passes the queue limit while they still have room)."""
    padding = "x" * OVERFILL_EVENT_BYTES
    sent = 0
    while sent < bound and any(cid not in gone_by for cid in streams):
        part = sent // OVERFILL_EVENT_BYTES
        await ctx.api.publish(
            user_id, OVERFILL_THREAD, "overfill", {"user": user_id, "part": part, "pad": padding}
        )
        sent += OVERFILL_EVENT_BYTES
    return sent


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
