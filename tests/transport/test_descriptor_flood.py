"""Floods of unfinished request heads against a server with few descriptors (``prlimit``):
one address cannot lock the others out, and near its limit the server refuses at once."""

from __future__ import annotations

import asyncio
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.transport.edge_support import (
    UNFINISHED_HEAD,
    back_to,
    close_all,
    connect_as,
    descriptors,
    edge_server,
    exchange,
    open_heads,
    stream_a_run,
)
from wsguard.processes import ServerProcess, eventually
from wsguard.transport.descriptors import reserve_for

REFUSED = 'wsguard_http_refused_total{{reason="{}"}}'
FLOODER = "127.0.0.4"


@pytest.fixture(autouse=True)
def _enough_descriptors_here() -> None:
    """The flooding side needs its own thousands of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 10000:
        pytest.skip(f"the test process may open only {hard} descriptors")
    if soft != resource.RLIM_INFINITY and soft < 10000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _soft_limit_of(server: ServerProcess) -> int:
    for line in Path(f"/proc/{server.pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/<pid>/limits")


def test_one_address_flooding_4200_heads_does_not_lock_out_another(tmp_path: Path) -> None:
    """4,096 descriptors; 127.0.0.4 (not a trusted proxy) holds 4,200 unfinished heads and keeps
    opening more, while clients from 127.0.0.2 connect and stream a run. (127.0.0.1, the
    tests' own HTTP client, is a trusted proxy by default.)"""
    log = tmp_path / "server.log"
    with edge_server(nofile="4096", log_path=str(log)) as server:
        tokens = [server.token(f"user{index}") for index in range(20)]
        flood = open_heads(server.port, 4200, source=FLOODER)
        stop = threading.Event()
        more: list[object] = []

        def keep_flooding() -> None:
            while not stop.is_set() and len(more) < 4000:
                more.extend(open_heads(server.port, 50, source=FLOODER))

        flooder = threading.Thread(target=keep_flooding)
        flooder.start()
        try:
            connect_seconds, names = asyncio.run(_clients_from_another_address(server, tokens))
            held = descriptors(server)
        finally:
            stop.set()
            flooder.join()
            close_all(flood)
            close_all(more)  # type: ignore[arg-type]
        p50 = statistics.median(connect_seconds)
        p99 = statistics.quantiles(connect_seconds, n=100, method="inclusive")[98]
        print(f"\nconnect from 127.0.0.2 during the flood: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
        assert names[-1] == "agent_completed"
        assert p50 < 0.5, connect_seconds
        assert max(connect_seconds) < 5.0, connect_seconds
        assert held < 4096 - reserve_for(4096), f"the flood brought the server to {held} descriptors"
        metrics = server.metrics()
        assert metrics[REFUSED.format("pending_per_address")] >= 4200 - 256
        assert metrics[REFUSED.format("descriptors")] == 0
    assert "out of system resource" not in log.read_text()


async def _clients_from_another_address(
    server: ServerProcess, tokens: list[str]
) -> tuple[list[float], list[str]]:
    """Connect once with each token from 127.0.0.2, one after another; the first streams a run."""
    seconds = []
    names: list[str] = []
    for index, token in enumerate(tokens):
        started = time.monotonic()
        client = await connect_as(server, f"user{index}", source="127.0.0.2", token=token)
        seconds.append(time.monotonic() - started)
        try:
            if index == 0:
                names = await stream_a_run(client)
        finally:
            await client.close()
    return seconds, names


def test_near_the_descriptor_limit_new_connections_are_refused_at_once_and_readyz_says_so(
    tmp_path: Path,
) -> None:
    """1,024 descriptors, soft limit 512 at start; the flood comes from a trusted proxy address
    (127.0.0.1 by default), so only the descriptor reserve stands in its way."""
    log = tmp_path / "server.log"
    with edge_server("--header-timeout", "60", nofile="512:1024", log_path=str(log)) as server:
        assert _soft_limit_of(server) == 1024, "serve did not raise its soft limit to the hard limit"
        reserve = reserve_for(1024)
        baseline = descriptors(server)
        heads = open_heads(server.port, 1024 - 2 * reserve - baseline + 8)
        try:
            eventually(
                lambda: descriptors(server),
                lambda count: count >= 1024 - 2 * reserve + 4,
                timeout=10.0,
                what="the flood held by the server",
            )
            with httpx.Client(base_url=server.base_url, timeout=5.0) as probe:
                readyz = probe.get("/readyz", headers={"Connection": "close"})
            assert readyz.status_code == 503, readyz.text
            assert "descriptors" in readyz.text

            heads += open_heads(server.port, 2 * reserve)
            refused = exchange(server.port, UNFINISHED_HEAD, timeout=1.0)
            assert refused.closed, f"a connection past the reserve was left waiting: {refused}"
            assert refused.data == b""
            assert descriptors(server) < 1024 - reserve // 2
        finally:
            close_all(heads)
        back_to(server, baseline, timeout=5.0)
        assert server.http.get("/readyz").status_code == 200
        assert server.metrics()[REFUSED.format("descriptors")] >= reserve

        async def afterwards() -> list[str]:
            client = await connect_as(server, "dora")
            try:
                return await stream_a_run(client)
            finally:
                await client.close()

        assert asyncio.run(afterwards())[-1] == "agent_completed"
    text = log.read_text()
    assert "out of system resource" not in text, "accept() ran out of descriptors: the accept loop stalled"
    assert "soft limit 512, raised to 1024 (hard limit 1024)" in text


def test_raising_the_soft_limit_logs_both_limits() -> None:
    code = (
        "import logging; logging.basicConfig(level=logging.INFO, format='%(message)s'); "
        "from wsguard.transport.descriptors import raise_soft_limit; print(raise_soft_limit())"
    )
    result = subprocess.run(
        ["prlimit", "--nofile=256:1024", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(256, 1024)"
    assert "soft limit 256, raised to 1024 (hard limit 1024)" in result.stderr
