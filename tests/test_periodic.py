"""The periodic-task helper under real asyncio, and the loops built on it keeping their rules."""

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from wsguard.backends import MemoryBackend
from wsguard.periodic import Periodic
from wsguard.runtime.hub import Hub
from wsguard.runtime.sweeper import Sweeper
from wsguard.server.feed import FeedSampler
from wsguard.settings import Settings

WAIT = 5.0
"""The most any awaited event may take: generous, since a test waits on events, not on time."""


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def others() -> set[asyncio.Task[Any]]:
    """Every task but the test's own."""
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current}


class Counter:
    """A tick that counts its calls and sets ``reached`` at the ``goal``-th."""

    def __init__(self, goal: int) -> None:
        self.goal = goal
        self.calls = 0
        self.reached = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls >= self.goal:
            self.reached.set()


def test_it_ticks_until_stopped_and_leaves_no_task() -> None:
    async def scenario() -> None:
        counter = Counter(5)
        periodic = Periodic(0.001, counter, name="test ticker")
        assert not periodic.running
        periodic.start()
        assert periodic.running
        assert [task.get_name() for task in others()] == ["test ticker"]
        async with asyncio.timeout(WAIT):
            await counter.reached.wait()
        await periodic.stop()
        assert not periodic.running
        assert others() == set()
        stopped_at = counter.calls
        await asyncio.sleep(0.01)
        assert counter.calls == stopped_at

    run(scenario)


def test_the_first_tick_comes_at_once_or_after_one_interval() -> None:
    async def scenario() -> None:
        at_once = Counter(1)
        periodic = Periodic(3600.0, at_once, name="at once")
        periodic.start()
        async with asyncio.timeout(WAIT):
            await at_once.reached.wait()
        await periodic.stop()

        later = Counter(1)
        waiting = Periodic(3600.0, later, name="later", wait_first=True)
        waiting.start()
        for _ in range(10):
            await asyncio.sleep(0)
        assert later.calls == 0
        await waiting.stop()
        assert others() == set()

    run(scenario)


def test_the_interval_runs_from_the_end_of_one_tick_to_the_start_of_the_next() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        spans: list[tuple[float, float]] = []
        busy = 0
        overlapped = False
        done = asyncio.Event()

        async def slow() -> None:
            nonlocal busy, overlapped
            busy += 1
            overlapped = overlapped or busy > 1
            started = loop.time()
            await asyncio.sleep(0.02)
            spans.append((started, loop.time()))
            busy -= 1
            if len(spans) == 4:
                done.set()

        periodic = Periodic(0.03, slow, name="slow")
        periodic.start()
        async with asyncio.timeout(WAIT):
            await done.wait()
        await periodic.stop()
        assert not overlapped
        resolution = 2 * time.get_clock_info("monotonic").resolution
        for (_, ended), (started, _) in itertools.pairwise(spans):
            assert started - ended >= 0.03 - resolution

    run(scenario)


def test_stop_cancels_a_tick_in_progress() -> None:
    async def scenario() -> None:
        entered, cancelled = asyncio.Event(), asyncio.Event()

        async def hangs() -> None:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        periodic = Periodic(0.001, hangs, name="hangs")
        periodic.start()
        async with asyncio.timeout(WAIT):
            await entered.wait()
        await periodic.stop()
        assert cancelled.is_set()
        assert others() == set()

    run(scenario)


def test_a_surviving_error_goes_to_on_error_and_the_ticks_go_on() -> None:
    async def scenario() -> None:
        seen: list[Exception] = []
        counter = Counter(4)

        async def fails_twice() -> None:
            await counter()
            if counter.calls <= 2:
                raise OSError(f"tick {counter.calls}")

        periodic = Periodic(0.001, fails_twice, name="flaky", survive=(OSError,), on_error=seen.append)
        periodic.start()
        async with asyncio.timeout(WAIT):
            await counter.reached.wait()
        await periodic.stop()
        assert [str(error) for error in seen] == ["tick 1", "tick 2"]
        assert others() == set()

    run(scenario)


def test_a_surviving_error_is_logged_with_its_traceback_by_default(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        counter = Counter(2)

        async def fails_once() -> None:
            await counter()
            if counter.calls == 1:
                raise ValueError("bad tick")

        periodic = Periodic(0.001, fails_once, name="logged", survive=(ValueError,))
        periodic.start()
        async with asyncio.timeout(WAIT):
            await counter.reached.wait()
        await periodic.stop()

    with caplog.at_level(logging.ERROR, logger="wsguard"):
        run(scenario)
    (record,) = caplog.records
    assert record.getMessage() == "logged: a tick failed"
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "bad tick"


def test_any_other_error_ends_the_loop_and_stop_raises_it() -> None:
    async def scenario() -> None:
        counter = Counter(1)
        handled: list[Exception] = []

        async def breaks() -> None:
            await counter()
            raise KeyError("broken")

        periodic = Periodic(0.001, breaks, name="breaks", survive=(OSError,), on_error=handled.append)
        periodic.start()
        (task,) = others()
        async with asyncio.timeout(WAIT):
            await asyncio.wait([task])
        assert others() == set()
        assert counter.calls == 1
        assert periodic.running
        with pytest.raises(KeyError, match="broken"):
            await periodic.stop()
        assert handled == []
        assert not periodic.running
        await periodic.stop()

    run(scenario)


def test_start_twice_runs_one_task_and_it_starts_again_after_stop() -> None:
    async def scenario() -> None:
        await Periodic(1.0, Counter(1), name="never started").stop()
        counter = Counter(1)
        periodic = Periodic(0.001, counter, name="again")
        periodic.start()
        periodic.start()
        assert len(others()) == 1
        await periodic.stop()
        periodic.start()
        async with asyncio.timeout(WAIT):
            await counter.reached.wait()
        await periodic.stop()
        assert others() == set()

    run(scenario)


def test_cancelling_the_caller_of_stop_is_not_swallowed() -> None:
    async def scenario() -> None:
        entered, asked, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def slow_to_stop() -> None:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                asked.set()
                await release.wait()
                raise

        periodic = Periodic(0.001, slow_to_stop, name="slow to stop")
        periodic.start()
        async with asyncio.timeout(WAIT):
            await entered.wait()
        (ticker,) = others()
        stopper = asyncio.create_task(periodic.stop())
        async with asyncio.timeout(WAIT):
            await asked.wait()
        stopper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopper
        release.set()
        async with asyncio.timeout(WAIT):
            await asyncio.wait([ticker])
        assert ticker.cancelled()
        assert others() == set()

    run(scenario)


def test_stop_ends_a_loop_whose_tick_lost_the_cancellation() -> None:
    """Python 3.11's ``asyncio.wait_for`` returns its result and drops the cancellation when both
    arrive in one loop turn (redis-py awaits its writes with it): the loop must still end."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        gates: list[asyncio.Future[None]] = []
        waiting = asyncio.Event()

        async def write_like_redis_py() -> None:
            gate: asyncio.Future[None] = loop.create_future()
            gates.append(gate)
            waiting.set()
            await asyncio.wait_for(gate, 3600)

        periodic = Periodic(0.001, write_like_redis_py, name="losing ticker")
        periodic.start()
        async with asyncio.timeout(WAIT):
            await waiting.wait()
        gates[0].set_result(None)
        async with asyncio.timeout(WAIT):
            await periodic.stop()  # cancels in the turn the tick's write completed
        assert others() == set()
        assert len(gates) == 1, "the loop ticked again after it was stopped"

    run(scenario)


def test_the_sweeper_logs_a_failing_chore_and_keeps_sweeping(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        swept = asyncio.Event()
        calls = 0

        def fails(now: float) -> None:
            raise RuntimeError("chore broke")

        def counts(now: float) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:
                swept.set()

        sweeper = Sweeper(0.001, [fails, counts])
        sweeper.start()
        assert [task.get_name() for task in others()] == ["wsguard sweeper"]
        async with asyncio.timeout(WAIT):
            await swept.wait()
        await sweeper.stop()
        assert others() == set()

    with caplog.at_level(logging.ERROR, logger="wsguard"):
        run(scenario)
    assert {record.getMessage() for record in caplog.records} == {"sweeper chore failed"}
    assert len(caplog.records) >= 3


def test_the_dashboard_sampler_skips_a_beat_on_an_os_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        sampler = FeedSampler(Hub(Settings(), MemoryBackend(10, 10.0)), interval=0.01)
        real = sampler.sample
        attempts = 0
        sampled = asyncio.Event()

        def unreadable_at_first() -> None:
            nonlocal attempts
            attempts += 1
            if attempts <= 2:
                raise OSError("too many open files")
            real()
            sampled.set()

        monkeypatch.setattr(sampler, "sample", unreadable_at_first)
        sampler.start()
        assert [task.get_name() for task in others()] == ["wsguard dashboard sampler"]
        async with asyncio.timeout(WAIT):
            await sampled.wait()
        await sampler.stop()
        assert others() == set()
        assert len(sampler.history()) >= 1

    run(scenario)
