"""How loaded the load generator (this process) and the server were during a round.

A verdict is only worth something if the generator kept its own schedule. A generator whose
event loop lags answers the server's pings late (and the server then rightly reaps its live
tabs as half-open), sends its requests late and sees releases late: what it then reports is its
own overload, not the server's failure. So every round measures:

- the generator's event-loop lag: how late a timer of :data:`TICK_S` fires, the largest and the
  99th percentile;
- the CPU of the generator and of the server processes, as a share of one core;
- the server's responsiveness while the round's clients run: ``GET /healthz`` round trips from a
  thread of their own, an upper bound of the server's own loop lag (plus loopback and
  scheduling). The probe's connection is closed before the settle check, which counts the
  server's file descriptors.

A round whose generator lag passed its allowance (:func:`lag_allowance_s`) is inconclusive.

The generator's own garbage collector would otherwise be its largest source of lag: a full
collection walks every object the run keeps (each tab's frames, every round's records), and
during a churn round those ran to 200 ms on a 2-core machine, twice a ``prod`` round's
allowance (freezing the older objects did not help: the round's own connections fill the
oldest generation). So the collector is paused while a round runs, and collects the round's
garbage before the next one starts, outside any timing.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil

from wsguard.periodic import Periodic

TICK_S = 0.01
"""How often the generator's loop-lag probe wakes up."""
HEALTH_EVERY_S = 0.05
"""How often the server's ``/healthz`` latency is taken."""
LAG_SHARE = 0.5
"""The share of the shorter of the cleanup bound and the heartbeat timeout that the generator's
loop may lag before its round proves nothing."""


def lag_allowance_s(cleanup_bound_s: float, heartbeat_timeout_s: float) -> float:
    """The largest generator loop lag a round tolerates.

    A pong later than the heartbeat timeout makes the server close a live tab, and an
    observation later than the cleanup bound cannot tell a late release from a late look: half
    of the shorter of the two leaves the other half to the server.
    """
    return LAG_SHARE * min(cleanup_bound_s, heartbeat_timeout_s)


@dataclass(frozen=True)
class LoadFigures:
    """The load of one round: the generator's loop lag and CPU, the server's CPU and latency."""

    duration_s: float
    generator_lag_max_s: float
    generator_lag_p99_s: float
    generator_cpu: float
    server_cpu: float | None
    server_latency_max_s: float | None
    server_latency_p99_s: float | None

    def describe(self) -> str:
        server = "server CPU unknown" if self.server_cpu is None else f"server CPU {self.server_cpu:.0%}"
        if self.server_latency_max_s is not None and self.server_latency_p99_s is not None:
            server += (
                f", server /healthz latency max {_ms(self.server_latency_max_s)} "
                f"(p99 {_ms(self.server_latency_p99_s)})"
            )
        return (
            f"generator loop lag max {_ms(self.generator_lag_max_s)} "
            f"(p99 {_ms(self.generator_lag_p99_s)}), generator CPU {self.generator_cpu:.0%}, {server}"
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _p99(values: Sequence[float]) -> float:
    if len(values) < 2:
        return max(values, default=0.0)
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _cpu_seconds(processes: Sequence[psutil.Process]) -> float | None:
    try:
        return sum(p.cpu_times().user + p.cpu_times().system for p in processes)
    except psutil.Error:
        return None


class _HealthProbe(threading.Thread):
    """``GET /healthz`` round trips, from a thread so that the generator's own lag stays out."""

    def __init__(self, base_urls: Sequence[str]) -> None:
        super().__init__(name="leaktest-health-probe", daemon=True)
        self._addresses = [urlsplit(url) for url in base_urls]
        self._halt = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        connections = [
            http.client.HTTPConnection(a.hostname or "127.0.0.1", a.port or 80, timeout=10.0)
            for a in self._addresses
        ]
        try:
            while not self._halt.is_set():
                for connection in connections:
                    started = time.monotonic()
                    try:
                        connection.request("GET", "/healthz")
                        connection.getresponse().read()
                    except (OSError, http.client.HTTPException):
                        connection.close()
                        continue
                    self.latencies.append(time.monotonic() - started)
                self._halt.wait(HEALTH_EVERY_S)
        finally:
            for connection in connections:
                connection.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15.0)


class LoadMonitor:
    """Measures one round's load from :meth:`start` to :meth:`stop`."""

    def __init__(self, base_urls: Sequence[str], server_pids: Sequence[int] | None) -> None:
        self._base_urls = list(base_urls)
        self._server = [psutil.Process(pid) for pid in server_pids] if server_pids else []
        self._generator = psutil.Process()
        self._lags: list[float] = []
        self._lag_probe = Periodic(TICK_S, self._note_lag, name="leaktest-loop-lag")
        self._slept_from: float | None = None
        """When the probe's last sleep began; None until its first tick, which only sets it."""
        self._probe: _HealthProbe | None = None
        self._started = 0.0
        self._generator_cpu = 0.0
        self._server_cpu: float | None = None
        self._collector_was_on = True

    def start(self) -> None:
        self._collector_was_on = gc.isenabled()
        gc.collect()
        gc.disable()
        self._started = time.monotonic()
        self._generator_cpu = _cpu_seconds([self._generator]) or 0.0
        self._server_cpu = _cpu_seconds(self._server) if self._server else None
        self._lag_probe.start()
        self._probe = _HealthProbe(self._base_urls)
        self._probe.start()

    async def _note_lag(self) -> None:
        """How much later than :data:`TICK_S` after the last tick this one came. Nothing in it
        awaits, so the next sleep starts at the moment it notes."""
        now = asyncio.get_running_loop().time()
        if self._slept_from is not None:
            self._lags.append(max(0.0, now - self._slept_from - TICK_S))
        self._slept_from = now

    def server_latency_max_s(self) -> float | None:
        """The largest ``/healthz`` round trip so far this round."""
        latencies = self._probe.latencies if self._probe is not None else []
        return max(latencies) if latencies else None

    async def stop_probing_server(self) -> None:
        """Stop the ``/healthz`` probe and close its connection (the clients are gone)."""
        if self._probe is not None and self._probe.is_alive():
            await asyncio.to_thread(self._probe.stop)

    async def stop(self) -> LoadFigures:
        duration = max(time.monotonic() - self._started, 1e-9)
        if self._collector_was_on:
            gc.enable()
        await self._lag_probe.stop()
        await self.stop_probing_server()
        latencies = self._probe.latencies if self._probe is not None else []
        generator_now = _cpu_seconds([self._generator]) or 0.0
        server_now = _cpu_seconds(self._server) if self._server else None
        server_cpu = None
        if server_now is not None and self._server_cpu is not None:
            server_cpu = (server_now - self._server_cpu) / duration
        return LoadFigures(
            duration_s=duration,
            generator_lag_max_s=max(self._lags, default=0.0),
            generator_lag_p99_s=_p99(self._lags),
            generator_cpu=(generator_now - self._generator_cpu) / duration,
            server_cpu=server_cpu,
            server_latency_max_s=max(latencies) if latencies else None,
            server_latency_p99_s=_p99(latencies) if latencies else None,
        )


async def starve_generator(block_s: float, every_s: float = 1.0) -> None:
    """Block this process's event loop for ``block_s`` seconds every ``every_s``: a deliberately
    overloaded load generator, for proving that the harness then says inconclusive."""
    while True:
        await asyncio.sleep(every_s)
        until = time.monotonic() + block_s
        while time.monotonic() < until:
            pass
