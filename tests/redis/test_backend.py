"""The Redis backend object against a real private redis-server: atomic admission under
concurrency from several instances, lease renewal and re-creation, numbering, and recovery.

The hub side is a small recorder of what the backend asks of it; the backend, its scripts and
Redis are the real ones.
"""

import asyncio
from collections.abc import Callable, Collection

import pytest

from tests.redis.cluster_clients import AnyRedis, config_set, keys_of
from wsguard.backends.base import BackendUnavailable, Envelope
from wsguard.backends.redis import RedisBackend
from wsguard.core.frames import Since
from wsguard.core.thread_log import ThreadKey
from wsguard.processes import eventually_async
from wsguard.settings import LimitPolicy


class Recorder:
    """Stands where the hub is: records deliveries and close requests."""

    def __init__(self) -> None:
        self.delivered: list[Envelope] = []
        self.closed: list[tuple[str, bool]] = []
        self.disconnected: list[str] = []
        self.threads: list[ThreadKey] = []
        self.resets: list[ThreadKey] = []
        self.errors: list[tuple[str, BaseException]] = []
        self.commands: list[tuple[str, str, str]] = []

    def deliver(self, envelope: Envelope) -> None:
        self.delivered.append(envelope)

    def close_connection(self, connection_id: str, *, replaced: bool) -> bool:
        self.closed.append((connection_id, replaced))
        return True

    def disconnect(self, connection_id: str) -> bool:
        self.disconnected.append(connection_id)
        return True

    def subscribed_threads(self) -> Collection[ThreadKey]:
        return self.threads

    def reset_thread(self, key: ThreadKey) -> None:
        self.resets.append(key)

    def command(self, connection_id: str, user_id: str, text: str) -> None:
        self.commands.append((connection_id, user_id, text))

    def background_error(self, task: str, error: BaseException) -> None:
        self.errors.append((task, error))


def _backend(url: str, **overrides: object) -> RedisBackend:
    options: dict[str, object] = {
        "max_per_user": 20,
        "policy": LimitPolicy.EVICT_OLDEST,
        "lease_ttl": 2.0,
        "retention_events": 100,
        "retention_seconds": 60.0,
    }
    options.update(overrides)
    return RedisBackend(url, **options)  # type: ignore[arg-type]


async def _started(url: str, **overrides: object) -> tuple[RedisBackend, Recorder]:
    backend, recorder = _backend(url, **overrides), Recorder()
    await backend.start(recorder.deliver, recorder)
    assert backend.up
    return backend, recorder


async def _wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    await eventually_async(_now, lambda _: condition(), timeout=timeout, interval=0.01)


async def _now() -> None:
    return None


def test_concurrent_admissions_from_three_instances_keep_the_newest_twenty(redis_server: AnyRedis) -> None:
    redis_server.client().flushall()

    async def scenario() -> None:
        started = [await _started(redis_server.url) for _ in range(3)]
        backends = [b for b, _ in started]
        ids = [f"conn_{i:03d}" for i in range(60)]
        decisions = await asyncio.gather(
            *(backends[i % 3].admit("crowd", cid, f"ses_{i}", takeover=False) for i, cid in enumerate(ids))
        )
        assert all(d is not None and d.admitted for d in decisions)
        evicted = [c.connection_id for d in decisions if d for c in d.closes]
        assert len(evicted) == 40
        assert len(set(evicted)) == 40, "each eviction decided exactly once"
        stored: dict[bytes, bytes] = redis_server.client().hgetall(keys_of(redis_server).leases("crowd"))  # type: ignore[assignment]
        leases = {k.decode(): v.decode() for k, v in stored.items()}
        assert len(leases) == 20
        admitted_at = {cid: int(v.split()[1]) for cid, v in leases.items()}
        assert min(admitted_at.values()) > max(
            int(b._leases.get(cid).admitted_us)  # type: ignore[union-attr]
            for b in backends
            for cid in evicted
            if b._leases.get(cid) is not None and b._leases.get(cid).admitted_us  # type: ignore[union-attr]
        ), "every evicted lease was admitted before every surviving one, by Redis's clock"
        for index, (backend, recorder) in enumerate(started):
            remote_evicted = {
                c.connection_id
                for d in decisions
                if d
                for c in d.closes
                if c.instance_id == backend.instance_id
            }
            here = {c.connection_id for d in decisions if d for c in d.closes if c.here}
            expected = remote_evicted - here

            def told(r: Recorder = recorder, e: set[str] = expected) -> bool:
                return {c for c, _ in r.closed} >= e

            await _wait_for(told)
            assert all(not replaced for _, replaced in recorder.closed), f"instance {index}"
        for backend in backends:
            await backend.close()
        crowd = keys_of(redis_server).leases("crowd")
        assert redis_server.client().hlen(crowd) == 0, "close gives every lease back"

    asyncio.run(scenario())


def test_reject_policy_and_session_takeover_across_instances(redis_server: AnyRedis) -> None:
    redis_server.client().flushall()

    async def scenario() -> None:
        (a, _), (b, b_seen) = (
            await _started(redis_server.url, max_per_user=2, policy=LimitPolicy.REJECT),
            (await _started(redis_server.url, max_per_user=2, policy=LimitPolicy.REJECT)),
        )
        assert (await b.admit("r", "c1", "s1", takeover=False)).admitted  # type: ignore[union-attr]
        assert (await a.admit("r", "c2", "s2", takeover=False)).admitted  # type: ignore[union-attr]
        third = await a.admit("r", "c3", "s3", takeover=False)
        assert third is not None
        assert not third.admitted
        assert third.closes == ()
        takeover = await a.admit("r", "c4", "s1", takeover=True)
        assert takeover is not None
        assert takeover.admitted
        assert [(c.connection_id, c.replaced, c.here) for c in takeover.closes] == [("c1", True, False)]
        await _wait_for(lambda: b_seen.closed == [("c1", True)])
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_renewal_recreates_lost_leases_and_closes_what_is_over_the_limit(redis_server: AnyRedis) -> None:
    client = redis_server.client()
    client.flushall()

    async def scenario() -> None:
        (a, a_seen), (b, _) = (
            await _started(redis_server.url, max_per_user=3),
            await _started(redis_server.url, max_per_user=3),
        )
        for cid in ("a1", "a2", "a3"):
            await a.admit("lost", cid, "s", takeover=False)
        client.flushall()
        await b.admit("lost", "b1", "s", takeover=False)
        await a.renew()
        assert a_seen.closed == [("a1", False)], "the oldest lost lease does not fit any more"
        lost = keys_of(redis_server).leases("lost")
        leases = client.hgetall(lost)
        assert sorted(leases) == [b"a2", b"a3", b"b1"]
        assert client.pttl(lost) > 0, "the lease hash expires if nobody renews it"
        a.release("a1")
        for cid in ("a2", "a3"):
            a.release(cid)
        b.release("b1")
        await _wait_for(lambda: client.hlen(lost) == 0)
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_dead_instances_leases_expire_within_the_ttl(redis_server: AnyRedis) -> None:
    client = redis_server.client()
    client.flushall()

    async def scenario() -> None:
        dead, _ = await _started(redis_server.url, lease_ttl=0.6)
        for index in range(5):
            await dead.admit("orphan", f"c{index}", "s", takeover=False)
        for task in dead._tasks:
            task.cancel()
        await asyncio.gather(*dead._tasks, return_exceptions=True)
        assert client.hlen(keys_of(redis_server).leases("orphan")) == 5
        await asyncio.sleep(0.7)
        assert client.exists(keys_of(redis_server).leases("orphan")) == 0
        await dead.client.aclose()

    asyncio.run(scenario())


def test_thread_events_from_two_instances_are_numbered_without_gaps_and_delivered_once(
    redis_server: AnyRedis,
) -> None:
    redis_server.client().flushall()

    async def scenario() -> None:
        (a, a_seen), (b, b_seen) = await _started(redis_server.url), await _started(redis_server.url)
        for backend, connection_id in ((a, "on-a"), (b, "on-b")):
            decision = await backend.admit("u", connection_id, "s", takeover=False)
            assert decision is not None, "events reach instances holding the user"
            assert decision.admitted
        published = await asyncio.gather(
            *((a if i % 2 else b).publish("u", "t", "e", {"i": i}) for i in range(50)),
            a.publish("u", None, "hello", {}),
        )
        assert sorted(p.offset for p in published[:50]) == list(range(1, 51))  # type: ignore[type-var]
        for seen in (a_seen, b_seen):

            def all_arrived(s: Recorder = seen) -> bool:
                return len(s.delivered) == 51

            await _wait_for(all_arrived)
            offsets = [e.offset for e in seen.delivered if e.thread_id == "t"]
            assert offsets == list(range(1, 51)), "in order, each once"
            assert [e.offset for e in seen.delivered if e.thread_id is None] == [None]
        recovery = await b.recover("u", "t", Since(published[0].epoch, 45))
        assert recovery.recovered
        assert [r.offset for r in recovery.frames] == [46, 47, 48, 49, 50]
        assert '"offset":46,' in recovery.frames[0].frame
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_retention_bound_age_and_a_lost_dataset_make_recovery_fail(redis_server: AnyRedis) -> None:
    client = redis_server.client()
    client.flushall()

    async def scenario() -> None:
        backend, _ = await _started(redis_server.url, retention_events=5, retention_seconds=0.5)
        epoch = ""
        for i in range(10):
            epoch = (await backend.publish("u", "t", "e", {"i": i})).epoch
        assert not (await backend.recover("u", "t", Since(epoch, 2))).recovered, "trimmed to 5"
        kept = await backend.recover("u", "t", Since(epoch, 6))
        assert kept.recovered
        assert [r.offset for r in kept.frames] == [7, 8, 9, 10]
        await asyncio.sleep(0.6)
        aged = await backend.recover("u", "t", Since(epoch, 6))
        assert not aged.recovered
        assert aged.epoch == epoch
        assert aged.last_offset == 10
        nxt = await backend.publish("u", "t", "e", {})
        assert (nxt.offset, nxt.epoch) == (11, epoch), "an expired log keeps its numbering"
        client.flushall()
        lost = await backend.recover("u", "t", Since(epoch, 11))
        assert not lost.recovered
        assert lost.epoch != epoch
        assert lost.last_offset == 0
        after = await backend.publish("u", "t", "e", {})
        assert (after.offset, after.epoch) == (1, lost.epoch)
        await backend.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("loss", ["none", "went_back", "rewritten"])
def test_backfill_restarts_a_thread_whose_history_redis_lost(redis_server: AnyRedis, loss: str) -> None:
    """A failover to a replica that missed the last writes (or a restart from an append-only file
    that missed them) leaves the thread's numbering behind what subscribers were given, or on
    other events: going on would reuse offsets the subscribers drop as repeats."""
    client = redis_server.client()
    client.flushall()
    keys = keys_of(redis_server)
    meta, log = keys.thread_meta("u", "t"), keys.thread_log("u", "t")

    async def scenario() -> None:
        (a, _), (b, seen) = await _started(redis_server.url), await _started(redis_server.url)
        decision = await b.admit("u", "on-b", "s", takeover=False)
        assert decision is not None, "b holds the user: its events reach b"
        assert decision.admitted
        seen.threads = [("u", "t")]
        await b.backfill()
        epoch = ""
        for i in range(5):
            epoch = (await a.publish("u", "t", "e", {"i": i})).epoch
        await _wait_for(lambda: len(seen.delivered) == 5)
        if loss == "went_back":
            client.xdel(log, "4-0", "5-0")
            client.hset(meta, "last", 3)
        elif loss == "rewritten":
            client.delete(log)
            client.xadd(log, {"f": "another event 5", "t": "0"}, id="5-0")
        assert await b.backfill() == 0, "nothing to deliver again"
        restarted = client.hget(meta, "epoch") != epoch.encode()
        assert restarted is (loss != "none")
        after = await a.publish("u", "t", "e", {"i": "after"})
        await _wait_for(lambda: len(seen.delivered) == 6)
        if loss == "none":
            assert (after.offset, after.epoch, seen.resets) == (6, epoch, [])
        else:
            assert (after.offset, seen.resets) == (1, [("u", "t")]), "the subscribers take offset 1 again"
            assert not (await b.recover("u", "t", Since(epoch, 3))).recovered, "and `since` reloads"
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_master_that_refuses_writes_makes_publishing_unavailable(redis_server: AnyRedis) -> None:
    """``min-replicas-to-write`` with no replica in sync: Redis refuses, and publishing answers
    503 (``BackendUnavailable``) rather than an internal error; nothing is numbered."""
    redis_server.client().flushall()

    async def scenario() -> None:
        backend, _ = await _started(redis_server.url)
        config_set(redis_server, "min-replicas-to-write", "1")
        try:
            with pytest.raises(BackendUnavailable, match="NOREPLICAS"):
                await backend.publish("u", "t", "e", {})
        finally:
            config_set(redis_server, "min-replicas-to-write", "0")
        assert (await backend.publish("u", "t", "e", {})).offset == 1
        await backend.close()

    asyncio.run(scenario())
