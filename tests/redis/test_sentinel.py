"""Redis Sentinel failovers while events flow, on real processes: a master, one replica and three
Sentinels (quorum 2, down after 1 s), two wsguard instances on the ``redis-sentinel://`` URL, a
publisher on one and a subscriber on the other.

- The master killed: the instances follow the Sentinels to the promoted replica (their listeners
  subscribe there, their leases are re-created there, so the per-user limit holds), and delivery
  resumes within 5 s of the promotion. Replication is asynchronous, so an event the old master
  acknowledged in its last moments may never have reached the replica: what was lost is measured
  and printed, and everything acknowledged before that window survives.
- A failover asked of the Sentinels: the old master keeps running, and keeps taking writes until
  the instances learn of the promotion. They leave it within about a second of the Sentinels
  naming the new master; what it took meanwhile is lost, and measured. A subscriber given some of
  it sees its thread restart in a new epoch rather than lose the new master's events under
  offsets it already has.

In both, a live subscriber's offsets run without a gap or a repeat in each epoch, and the last
epoch's live events are the ones Redis replays.
"""

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.redis.cluster_clients import (
    Traffic,
    lease_count,
    no_more_frames,
    open_or_refused,
    read_until_subscribed,
    subscribe,
)
from tests.redis.conftest import instance_flags
from wsguard.backends.redis.backend import MASTER_CHECK_INTERVAL
from wsguard.backends.redis.keyspace import Keys
from wsguard.processes import ServerProcess, eventually
from wsguard.processes.clients import Frame, open_socket, receive
from wsguard.processes.redis_server import RedisServer, SentinelGroup

RESUME_WITHIN = 5.0
REPLICATION_WINDOW = 1.0
"""An event acknowledged longer than this before the master died had long reached the replica
(on loopback it takes well under a millisecond): it must survive the failover."""
LIMIT = 2


@pytest.fixture
def sentinels() -> Iterator[SentinelGroup]:
    """A master, one replica and three Sentinels (quorum 2) of this test's own."""
    with SentinelGroup(sentinels=3, quorum=2, replicas=1) as group:
        yield group


@dataclass
class Run:
    """What the subscriber saw of events published through one failover."""

    traffic: Traffic
    received: list[tuple[Frame, float]] = field(default_factory=list)
    at: dict[str, float] = field(default_factory=dict)
    """began (kill or request), promoted (every Sentinel names the new master), moved (both
    instances listen on it and on the old master no more)"""
    replay: list[Frame] = field(default_factory=list)
    """What the last live epoch replays from offset 0, ending with ``subscribed``."""
    old_master_role: str = ""
    """What the old master was when the instances had left it (empty when it was dead)."""

    @property
    def accepted(self) -> dict[int, float]:
        return {n: sent_at for n, sent_at, status in self.traffic.results if status == 200}

    @property
    def live(self) -> list[int]:
        return [frame["data"]["n"] for frame, _ in self.received]

    @property
    def lost(self) -> list[int]:
        """Acknowledged, yet neither delivered live nor replayable."""
        replayed = {frame["data"]["n"] for frame in self.replay[:-1]}
        return sorted(set(self.accepted) - set(self.live) - replayed)

    def resumed(self) -> float:
        """Seconds from the promotion to the first arrival of an event published after it."""
        promoted = self.at["promoted"]
        arrivals = [at for frame, at in self.received if self.accepted.get(frame["data"]["n"], 0) > promoted]
        return min(arrivals, default=float("inf")) - promoted

    def report(self, what: str) -> None:
        statuses = Counter(status for _, _, status in self.traffic.results)
        epochs = Counter(frame["epoch"] for frame, _ in self.received)
        lost = self.lost
        windows = ", ".join(f"{self.at[k] - self.at['began']:.2f}s {k}" for k in ("promoted", "moved"))
        print(
            f"\n{what}: {windows}; delivery resumed {self.resumed():.2f}s after the promotion; "
            f"publishes {dict(statuses)}; lost {len(lost)} {lost}; live events per epoch "
            f"{sorted(epochs.values())}"
        )

    def check_numbering(self) -> None:
        """No repeat, no gap within an epoch, and the last epoch's live events are Redis's."""
        assert len(self.live) == len(set(self.live)), "no event arrives twice"
        by_epoch: dict[str, list[int]] = {}
        for frame, _ in self.received:
            by_epoch.setdefault(frame["epoch"], []).append(frame["offset"])
        for epoch, offsets in by_epoch.items():
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (epoch, offsets)
        last_epoch = self.received[-1][0]["epoch"]
        assert self.replay[-1]["recovered"], self.replay[-1]
        stored = {frame["offset"]: frame["data"]["n"] for frame in self.replay[:-1]}
        given = {f["offset"]: f["data"]["n"] for f, _ in self.received if f["epoch"] == last_epoch}
        assert all(stored[offset] == n for offset, n in given.items()), "live events are the stored ones"


def _listening(node: RedisServer) -> int:
    """The instances subscribed on ``node`` (0 once it is dead): each listens on a control
    channel of its own."""
    if node.process is None or node.process.poll() is not None:
        return 0
    with node.client() as client:
        channels: list[bytes] = client.pubsub_channels(Keys().control("*"))
    return len(channels)


async def through_failover(
    sentinels: SentinelGroup,
    a: ServerProcess,
    b: ServerProcess,
    cause: Callable[[], object],
    after: Callable[[RedisServer], Awaitable[None]] | None = None,
) -> Run:
    """Publish on ``a`` and read on ``b`` while ``cause`` starts a failover; ``after`` runs once
    the instances have moved and the events have stopped."""
    run = Run(Traffic(a, [a, b]))
    old = sentinels.master
    await asyncio.to_thread(
        eventually, lambda: _listening(old), lambda n: n == 2, timeout=10, what="both instances listening"
    )
    socket, _ = await open_socket(b.ws_url, b.token("steady"))
    await subscribe(socket, "feed")

    async def collect(seconds: float, until: asyncio.Future[Any] | None = None) -> None:
        """Read frames for ``seconds``, or until ``until`` is done if that comes first."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not (until and until.done()):
            try:
                run.received.append((await receive(socket, timeout=min(left, 0.2)), time.monotonic()))
            except TimeoutError:
                continue

    worker = threading.Thread(target=run.traffic.run, daemon=True)
    worker.start()
    await collect(1.0)
    run.at["began"] = time.monotonic()
    await asyncio.to_thread(cause)
    failover = asyncio.ensure_future(asyncio.to_thread(sentinels.wait_failover, old.port))
    await collect(40.0, failover)
    new = await failover
    run.at["promoted"] = time.monotonic()

    def both_moved() -> tuple[int, int]:
        return _listening(new), _listening(old)

    moving = asyncio.ensure_future(
        asyncio.to_thread(eventually, both_moved, lambda n: n == (2, 0), timeout=10, what="listeners moved")
    )
    await collect(15.0, moving)
    await moving
    run.at["moved"] = time.monotonic()
    if old.process is not None and old.process.poll() is None:
        with old.client() as client:
            run.old_master_role = str(client.info("replication")["role"])
    await collect(RESUME_WITHIN + 1.0)
    run.traffic.stop.set()
    await asyncio.to_thread(worker.join)
    await collect(0.5)
    assert await no_more_frames(socket)
    assert socket.close_code is None, "the subscriber's connection stayed up through the failover"
    if after is not None:
        await after(new)
    reader, _ = await open_socket(a.ws_url, a.token("steady"))
    since = {"epoch": run.received[-1][0]["epoch"], "offset": 0}
    run.replay = await read_until_subscribed(reader, "feed", since)
    await socket.close()
    await reader.close()
    return run


def test_master_killed_while_events_flow(sentinels: SentinelGroup) -> None:
    limit = ("--max-connections-per-user", str(LIMIT), "--limit-policy", "reject")
    flags = instance_flags(sentinels.url, *limit)
    outcome: dict[str, object] = {}
    with ServerProcess(*flags) as a, ServerProcess(*flags) as b:

        async def scenario() -> Run:
            held = [(await open_socket(i.ws_url, i.token("capped")))[0] for i in (a, b)]

            async def limit_holds(new: RedisServer) -> None:
                # The replicated leases expired while the Sentinels decided: the renewals
                # re-create them on the new master, and the limit counts them again.
                await asyncio.to_thread(
                    eventually, lambda: lease_count(new, "capped"), lambda n: n == LIMIT, timeout=5,
                    what="the capped user's leases on the promoted master",
                )  # fmt: skip
                outcome["third"] = await open_or_refused(a.ws_url, a.token("capped"))
                outcome["held open"] = [s.close_code is None for s in held]
                for socket in held:
                    await socket.close()

            return await through_failover(sentinels, a, b, sentinels.master.kill, limit_holds)

        run = asyncio.run(scenario())

    run.report("master killed")
    assert outcome == {"third": 4029, "held open": [True, True]}, outcome
    assert run.resumed() < RESUME_WITHIN, "delivery resumed within 5 s of the promotion"
    statuses = {status for _, _, status in run.traffic.results}
    assert statuses <= {200, 503}, statuses
    assert all(run.accepted[n] > run.at["began"] - REPLICATION_WINDOW for n in run.lost), (
        "only events acknowledged just before the master died may be lost"
    )
    after_move = [n for n, sent_at in run.accepted.items() if sent_at > run.at["moved"]]
    assert after_move, "publishing resumed"
    assert set(after_move) <= set(run.live), "every event published after the move is delivered live"
    # The one publish in flight when the master died is answered 503 although it may have run.
    assert len(set(run.live) - set(run.accepted)) <= 1
    run.check_numbering()
    assert 0 in run.traffic.up_samples, "wsguard_backend_up showed the failover"
    assert run.traffic.up_samples[-1] == 1


def test_failover_with_the_old_master_running(sentinels: SentinelGroup) -> None:
    def ask_for_failover() -> None:
        with sentinels.sentinels[0].client() as client:
            client.sentinel_failover(sentinels.service)

    flags = instance_flags(sentinels.url)
    with ServerProcess(*flags) as a, ServerProcess(*flags) as b:
        run = asyncio.run(through_failover(sentinels, a, b, ask_for_failover))

    run.report("failover asked of the Sentinels")
    moved_after = run.at["moved"] - run.at["promoted"]
    assert moved_after < MASTER_CHECK_INTERVAL + 2.0, "the instances left the old master"
    assert run.old_master_role == "master", "they left it on their own, before it was demoted"
    assert run.resumed() < RESUME_WITHIN, "delivery resumed within 5 s of the promotion"
    assert {status for _, _, status in run.traffic.results} <= {200, 503}
    assert all(run.accepted[n] < run.at["moved"] for n in run.lost), (
        "only what the old master took before the instances left it may be lost"
    )
    after_move = [n for n, sent_at in run.accepted.items() if sent_at > run.at["moved"]]
    assert set(after_move) <= set(run.live), "every event published after the move is delivered live"
    run.check_numbering()
