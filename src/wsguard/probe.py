"""A leak probe for any ASGI application: WebSocket scopes, tasks, descriptors and memory.

Wrap an application (FastAPI, Starlette, Django Channels' ``ProtocolTypeRouter``, any ASGI
callable) to have it serve, where it is explicitly enabled, a Prometheus text endpoint with what
``wsguard leakcheck`` needs to tell whether a connection left something behind::

    app.add_middleware(ProbeMiddleware, counts={"active_connections": lambda: len(manager.active)})

It is enabled by ``enabled=True`` or by ``WSGUARD_PROBE=1`` in the environment; otherwise it
passes every scope through untouched and serves nothing. It imports no web framework.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wsguard.transport.descriptors import descriptor_count

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Count = Callable[[], float]

ENABLE_ENV = "WSGUARD_PROBE"
DEFAULT_PATH = "/_wsguard/metrics"

SCOPES_OPEN = "wsguard_probe_websocket_scopes_open"
SCOPES_OPENED = "wsguard_probe_websocket_scopes_opened_total"
TASKS = "wsguard_probe_asyncio_tasks"
APP_COUNT = "wsguard_probe_app_count"
FDS = "process_open_fds"
RSS = "process_resident_memory_bytes"
BLOCKS = "wsguard_python_allocated_blocks"
"""The names the leak harness reads; the last three are the names wsguard's own server uses."""

_NAMED_COUNTS: dict[str, Count] = {}
"""Counts named by every probe of the process that has been called, so that an outer probe (the
one the leak harness adds around an application) reports the counts an inner one was given. A
probe adds its counts on its first call (the lifespan startup or the first request), so that of
two applications built in one module only the one being served reports."""


def app_count_key(name: str) -> str:
    """The flat sample key of the application count ``name``."""
    return f'{APP_COUNT}{{name="{name}"}}'


def enabled_by_environment(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``WSGUARD_PROBE`` asks for the probe (``1``, ``true``, ``yes`` or ``on``)."""
    value = (environ if environ is not None else os.environ).get(ENABLE_ENV, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


class _Collector(Collector):
    """One scrape of the probe's series, computed when scraped."""

    def __init__(self, probe: ProbeMiddleware) -> None:
        self._probe = probe

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(SCOPES_OPEN, "WebSocket scopes whose application call has not returned.",
                                self._probe.scopes_open)  # fmt: skip
        yield CounterMetricFamily(SCOPES_OPENED.removesuffix("_total"), "WebSocket scopes started.",
                                  self._probe.scopes_opened)  # fmt: skip
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:
            tasks = 0
        yield GaugeMetricFamily(TASKS, "asyncio tasks alive in the serving loop.", tasks)
        process = psutil.Process()
        with process.oneshot():
            yield GaugeMetricFamily(FDS, "Open file descriptors of the process.", descriptor_count(process))
            yield GaugeMetricFamily(RSS, "Resident memory of the process.", process.memory_info().rss)
        yield GaugeMetricFamily(BLOCKS, "sys.getallocatedblocks(), the exact allocation count.",
                                sys.getallocatedblocks())  # fmt: skip
        counts = GaugeMetricFamily(APP_COUNT, "Counts the application names itself.", labels=["name"])
        for name, count in sorted(_NAMED_COUNTS.items()):
            counts.add_metric([name], float(count()))
        yield counts


class ProbeMiddleware:
    """Counts WebSocket scopes and serves the probe's metrics at ``path`` when enabled.

    ``counts`` maps a name to a callable returning how many of something the application holds
    (connections in its manager, entries of its dicts); the harness requires each back at its
    baseline once the clients are gone. A scrape with ``?collect_garbage=1`` collects garbage
    before counting allocated blocks, so that the count is exact.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        counts: Mapping[str, Count] | None = None,
        path: str = DEFAULT_PATH,
        enabled: bool | None = None,
    ) -> None:
        if not path.startswith("/"):
            raise ValueError(f"the probe path must start with '/', got {path!r}")
        self.app = app
        self.path = path
        self.enabled = enabled_by_environment() if enabled is None else enabled
        self.scopes_open = 0
        self.scopes_opened = 0
        self._counts = dict(counts or {})
        self._counts_added = False
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled:
            await self.app(scope, receive, send)
            return
        if not self._counts_added:
            _NAMED_COUNTS.update(self._counts)
            self._counts_added = True
        if scope["type"] == "websocket":
            self.scopes_open += 1
            self.scopes_opened += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.scopes_open -= 1
        elif scope["type"] == "http" and scope["path"] == self.path:
            await self._serve_metrics(scope, send)
        else:
            await self.app(scope, receive, send)

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("collect_garbage") == ["1"]:
            gc.collect()
        body = generate_latest(self._registry)
        headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def instrument(
    app: ASGIApp,
    *,
    counts: Mapping[str, Count] | None = None,
    path: str = DEFAULT_PATH,
    enabled: bool | None = None,
) -> ASGIApp:
    """``app`` wrapped in a :class:`ProbeMiddleware` when enabled, else ``app`` itself."""
    on = enabled_by_environment() if enabled is None else enabled
    return ProbeMiddleware(app, counts=counts, path=path, enabled=True) if on else app
