"""The dashboard's sampler: its figures, and a history that allocates nothing as it fills."""

import asyncio
import contextlib
import gc
import os
import socket
import subprocess
import sys
from typing import Any

import psutil
import pytest

from wsguard.backends import MemoryBackend
from wsguard.runtime.hub import Hub
from wsguard.server.feed import HISTORY_SECONDS, FeedSampler, p99_bound
from wsguard.settings import Settings
from wsguard.transport.descriptors import descriptor_count, open_descriptors


def test_sampling_leaves_no_object_behind_and_keeps_fifteen_minutes() -> None:
    async def scenario() -> None:
        hub = Hub(Settings(), MemoryBackend(10, 10.0))
        sampler = FeedSampler(hub, interval=10.0)  # 90 samples kept: the same rings, filled sooner
        kept = int(HISTORY_SECONDS / sampler.interval)
        hub.metrics.closed.labels("client_closed").inc(3)
        hub.metrics.closed.labels("slow_consumer").inc(2)
        hub.metrics.cleanup_seconds.observe(0.003)
        for _ in range(50):
            sampler.sample()
        gc.collect()
        before = sys.getallocatedblocks()
        for _ in range(3 * kept):
            sampler.sample()
        gc.collect()
        grown = sys.getallocatedblocks() - before
        assert grown < 20, f"{grown} blocks kept by {3 * kept} samples"
        history = sampler.history()
        assert len(history) == kept
        assert [s.t for s in history] == sorted(s.t for s in history)
        latest = sampler.latest()
        assert latest == history[-1]
        assert latest.closes == {"client_closed": 3.0, "slow_consumer": 2.0}
        assert latest.slow_consumer_closes == 2.0
        assert latest.connections == 0
        assert latest.tasks >= 1
        assert latest.cleanup_p99_ms is None  # the observation is older than the minute's window

    asyncio.run(scenario())


def test_p99_bound_is_the_bucket_holding_ninety_nine_percent_of_the_window() -> None:
    bounds = [0.001, 0.01, 0.1, float("inf")]
    assert p99_bound([0, 0, 0, 0], [0, 0, 0, 0], bounds) is None
    assert p99_bound([5, 5, 5, 5], [5, 104, 105, 105], bounds) == 0.01
    assert p99_bound([0, 0, 0, 0], [0, 98, 100, 100], bounds) == 0.1
    assert p99_bound([0, 0, 0, 0], [100, 100, 100, 100], bounds) == 0.001


def test_the_sampled_descriptors_are_the_process_s_open_ones() -> None:
    async def scenario() -> None:
        sampler = FeedSampler(Hub(Settings(), MemoryBackend(10, 10.0)), interval=10.0)
        sampler.sample()
        before = sampler.latest().fds
        opened = [socket.socket() for _ in range(40)]
        try:
            sampler.sample()
            assert sampler.latest().fds == before + 40
        finally:
            for sock in opened:
                sock.close()
        sampler.sample()
        assert sampler.latest().fds == before

    asyncio.run(scenario())


@pytest.mark.parametrize("sized", [True, False], ids=["directory size", "directory listing"])
def test_open_descriptors_counts_each_one(sized: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux 6.2 and later give the count as the directory's size; older kernels give 0, and
    the directory is listed (it then counts the descriptor the listing itself holds)."""
    if sized and os.stat("/proc/self/fd").st_size == 0:
        pytest.skip("this kernel does not give /proc/self/fd's count as its size (Linux < 6.2)")
    if not sized:
        real_stat = os.stat

        def unsized(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            result = real_stat(path, *args, **kwargs)
            if path != "/proc/self/fd":
                return result
            return os.stat_result((*result[:6], 0, *result[7:]))

        monkeypatch.setattr(os, "stat", unsized)
    before = open_descriptors()
    assert before is not None
    with contextlib.ExitStack() as stack:
        for _ in range(25):
            stack.enter_context(socket.socket())
        assert open_descriptors() == before + 25
    assert open_descriptors() == before
    assert before == len(os.listdir("/proc/self/fd")) - (1 if sized else 0)


def test_another_process_s_descriptors_are_counted_as_psutil_counts_them() -> None:
    """The leak harness counts its servers' descriptors from outside them."""
    script = (
        "import socket, sys; held = [socket.socket() for _ in range(30)]; print(flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()
        process = psutil.Process(child.pid)
        counted = descriptor_count(process)
        assert counted == process.num_fds()
        assert counted >= 30
    finally:
        child.kill()
        child.wait()
