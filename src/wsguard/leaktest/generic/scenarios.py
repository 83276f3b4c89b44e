"""The generic scenarios: what clients do to an application in one round.

Each returns the round's :class:`RoundResult`; the runner then requires every probe count back at
its baseline. The stalled reader also measures the application's memory while it stalls.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from wsguard.leaktest.generic.peers import Peer, leave_all, open_peer
from wsguard.leaktest.generic.target import GenericSizes, GenericTarget
from wsguard.leaktest.generic.verdict import stall_growth_leak
from wsguard.leaktest.results import CHURN, ROUNDS
from wsguard.leaktest.sampling import MetricsProbe
from wsguard.leaktest.scenarios.base import RoundResult
from wsguard.leaktest.verdict import CountLeak

CHURN_WORKERS = 8
SETTLED_SCRAPES = 3


@dataclass
class GenericRound:
    """What a round may use: the target, the sizes, the probe and a source of fresh identities."""

    target: GenericTarget
    sizes: GenericSizes
    probe: MetricsProbe
    index: int
    numbers: itertools.count[int] = field(default_factory=itertools.count)
    leaks: list[CountLeak] = field(default_factory=list)

    def fresh_identity(self) -> str:
        return self.target.identity_of(f"r{self.index}c{next(self.numbers)}")


Play = Callable[[GenericRound], Awaitable[RoundResult]]


@dataclass(frozen=True)
class GenericScenario:
    name: str
    description: str
    play: Play
    phase: str = ROUNDS


async def _open_many(ctx: GenericRound, identities: list[str]) -> tuple[list[Peer], RoundResult]:
    result = RoundResult()
    opened = await asyncio.gather(*(open_peer(ctx.target, i) for i in identities), return_exceptions=True)
    peers = [p for p in opened if isinstance(p, Peer)]
    for identity, outcome in zip(identities, opened, strict=True):
        if isinstance(outcome, BaseException):
            result.failures.append(f"{identity} could not connect: {type(outcome).__name__}: {outcome}")
    result.connections = len(peers)
    return peers, result


async def connect_close(ctx: GenericRound) -> RoundResult:
    """Clients of their own identities connect, stay a moment, then half close, half drop TCP."""
    peers, result = await _open_many(ctx, [ctx.fresh_identity() for _ in range(ctx.sizes.clients)])
    await asyncio.sleep(ctx.sizes.hold_s)
    await leave_all(peers)
    return result


async def same_identity(ctx: GenericRound) -> RoundResult:
    """Many connections of one identity at once (tabs, devices, a reconnect before the old one
    is noticed gone), then half close, half drop TCP."""
    identity = ctx.fresh_identity()
    peers, result = await _open_many(ctx, [identity] * ctx.sizes.clients)
    await asyncio.sleep(ctx.sizes.hold_s)
    await leave_all(peers)
    return result


async def churn(ctx: GenericRound) -> RoundResult:
    """``churn_cycles`` connect-and-leave cycles over a few parallel clients, for the memory slope."""
    share, extra = divmod(ctx.sizes.churn_cycles, CHURN_WORKERS)

    async def work(worker: int, cycles: int) -> RoundResult:
        done = RoundResult()
        for cycle in range(cycles):
            identity = ctx.fresh_identity()
            try:
                peer = await open_peer(ctx.target, identity)
            except Exception as error:
                done.failures.append(f"{identity} could not connect: {type(error).__name__}: {error}")
                return done
            await peer.leave(clean=(worker + cycle) % 2 == 0)
            done.connections += 1
        return done

    outcomes = await asyncio.gather(
        *(work(w, share + (1 if w < extra else 0)) for w in range(CHURN_WORKERS)),
    )
    result = RoundResult()
    for worker, outcome in enumerate(outcomes):
        result.absorb(outcome, f"churn worker {worker}")
    return result


async def stalled_reader(ctx: GenericRound) -> RoundResult:
    """A reader stops reading while a talker makes the application send it ``stall_messages``
    messages; the memory the application gains meanwhile must stay under its bound.

    An application that sends to each client in turn stops reading the talker once the stalled
    reader's buffers are full (one slow client stalls them all); the talker then stops too, and
    the bound is taken of what the application accepted.
    """
    sizes = ctx.sizes
    result = RoundResult()
    reader = await open_peer(ctx.target, ctx.fresh_identity(), receive_buffer=sizes.stall_receive_buffer)
    talker = await open_peer(ctx.target, ctx.fresh_identity())
    result.connections = 2
    try:
        reader.stall()
        before = await ctx.probe.settled(SETTLED_SCRAPES)
        accepted = 0
        for number in range(sizes.stall_messages):
            message = ctx.target.message(talker.identity, number, sizes.message_bytes)
            try:
                async with asyncio.timeout(sizes.stall_send_timeout_s):
                    sent = await talker.send(message)
                if not sent:
                    break
            except TimeoutError:
                break
            accepted += 1
        await _until_quiet(talker, sizes.stall_send_timeout_s)
        during = await ctx.probe.settled(SETTLED_SCRAPES)
        result.events = talker.received
        if talker.received == 0:
            result.failures.append(
                f"the application sent the talker nothing back for the {accepted} messages it sent; "
                "this scenario needs an application that sends what a client sends on to every "
                "client (a chat room): set the message with --broadcast, or leave stalled_reader out"
            )
            return result
        leak = stall_growth_leak(
            before,
            during,
            accepted * sizes.message_bytes,
            sizes.stall_growth_fraction,
            sizes.stall_floor_bytes,
        )
        if leak is not None:
            ctx.leaks.append(leak)
    finally:
        reader.drop()
        await reader.wait_closed(2.0)
        talker.drop()
        await talker.wait_closed(2.0)
    return result


async def _until_quiet(peer: Peer, quiet_s: float) -> None:
    """Wait until ``peer`` has received nothing new for ``quiet_s`` seconds."""
    seen = -1
    while peer.received != seen and not peer.is_closed:
        seen = peer.received
        await asyncio.sleep(quiet_s)


async def broadcast_disconnect(ctx: GenericRound) -> RoundResult:
    """Clients send a burst that the application broadcasts, and leave at once (half close, half
    drop TCP) while it is still broadcasting, as a talker keeps it busy."""
    sizes = ctx.sizes
    talker = await open_peer(ctx.target, ctx.fresh_identity())
    leavers, result = await _open_many(ctx, [ctx.fresh_identity() for _ in range(sizes.leavers)])
    result.connections += 1
    stop = asyncio.Event()

    async def talk() -> None:
        number = 0
        while not stop.is_set():
            if not await talker.send(ctx.target.message(talker.identity, number, sizes.message_bytes)):
                return
            number += 1
            if number % 10 == 0:
                await asyncio.sleep(0)

    talking = asyncio.create_task(talk())
    try:
        await talker.wait_received(sizes.leaver_messages, sizes.reply_timeout_s)

        async def burst_and_leave(index: int, peer: Peer) -> None:
            for number in range(sizes.leaver_messages):
                if not await peer.send(ctx.target.message(peer.identity, number, sizes.message_bytes)):
                    break
            await peer.leave(clean=index % 2 == 0)

        await asyncio.gather(*(burst_and_leave(i, p) for i, p in enumerate(leavers)))
        settled_at = talker.received
        await talker.wait_received(settled_at + sizes.leaver_messages, sizes.reply_timeout_s)
    finally:
        stop.set()
        await talking
        result.events = talker.received
        await talker.close()
    return result


GENERIC_SCENARIOS: dict[str, GenericScenario] = {
    scenario.name: scenario
    for scenario in (
        GenericScenario("connect_close", "clients connect and leave, half with a close frame, half by "
                        "dropping TCP", connect_close),
        GenericScenario("same_identity", "many connections of one identity at once, then all leave",
                        same_identity),
        GenericScenario("stalled_reader", "a reader stops reading while the application sends to it",
                        stalled_reader),
        GenericScenario("broadcast_disconnect", "clients leave while the application broadcasts to them",
                        broadcast_disconnect),
        GenericScenario("churn", "hundreds of connect-and-leave cycles per round: the memory slope",
                        churn, CHURN),
    )
}  # fmt: skip
GENERIC_SCENARIO_NAMES: tuple[str, ...] = tuple(GENERIC_SCENARIOS)
DEFAULT_GENERIC_SCENARIOS: tuple[str, ...] = GENERIC_SCENARIO_NAMES
