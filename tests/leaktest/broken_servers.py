"""Deliberately leaky wsguard servers, for proving that the leak harness catches leaks.

Run as ``python tests/leaktest/broken_servers.py NAME <serve flags>``: the real server, with one
bug patched into its internals in this process, then ``wsguard serve``. These live in the test
suite only, never in the package.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from uuid import uuid4

from wsguard import close
from wsguard.backends.base import Envelope
from wsguard.context import ConnectionContext
from wsguard.core.connection import ConnectionLimits
from wsguard.core.registry import Admission, Handle
from wsguard.runtime.connection import Connection, ConnectionHooks, Socket, TextHandler
from wsguard.runtime.hub import Hub
from wsguard.runtime.sse import EventStream

_original_forget = Hub._forget
_original_run = Connection.run
_original_deliver = Hub.deliver
_original_connection_init = Connection.__init__
_original_close_released = Hub._close_released

FORGOTTEN: list[asyncio.Task[None]] = []
"""Where ``uncancelled_task`` keeps the heartbeat tasks that nothing cancels."""
KEPT: list[tuple[object]] = []
"""Where ``leaks_one_object`` keeps its one small tuple per admitted connection."""
EVICTED: list[tuple[object]] = []
"""Where ``leaks_on_eviction`` keeps its one small tuple per connection evicted by the limit."""


@contextmanager
def _release_swapped(hub: Hub, swap: Callable[[Handle], Handle | None]) -> Iterator[None]:
    """For the duration, ``hub.registry.release(h)`` releases ``swap(h)`` instead (None: nothing)."""
    registry = hub.registry
    real_release = registry.release

    def release(handle: Handle) -> bool:
        other = swap(handle)
        return False if other is None else real_release(other)

    registry.release = release  # type: ignore[method-assign]
    try:
        yield
    finally:
        del registry.release


def recomputed_key() -> None:
    """The seed's bug: cleanup looks the connection up by ids generated a second time."""

    def forget(self: Hub, connection: Connection) -> None:
        regenerated = replace(connection.handle, connection_id=f"{connection.user_id}:{uuid4().hex}")
        with _release_swapped(self, lambda handle: regenerated):
            _original_forget(self, connection)

    Hub._forget = forget  # type: ignore[method-assign]


def forgets_vanished() -> None:
    """The disconnect path forgets to release when the client vanishes without a close frame."""

    def forget(self: Hub, connection: Connection) -> None:
        if connection.closed_label == close.CONNECTION_LOST:
            with _release_swapped(self, lambda handle: None):
                _original_forget(self, connection)
            return
        _original_forget(self, connection)

    Hub._forget = forget  # type: ignore[method-assign]


def uncancelled_task() -> None:
    """Every connection starts a heartbeat task that nothing ever cancels."""

    async def run(self: Connection, on_text: TextHandler) -> None:
        async def heartbeat() -> None:
            await asyncio.Event().wait()

        FORGOTTEN.append(asyncio.create_task(heartbeat()))
        await _original_run(self, on_text)

    Connection.run = run  # type: ignore[method-assign]


def unbounded_queue() -> None:
    """The send queue to a client that stops reading grows without a bound (no 4008)."""

    def send(self: Connection, frame: str) -> None:
        if self.close_request is not None:
            return
        self._enqueue(frame)

    Connection.send = send  # type: ignore[method-assign]


def registry_per_event() -> None:
    """A delivery record is kept in the registry for every published event, and never dropped."""

    def deliver(self: Hub, envelope: Envelope) -> None:
        _original_deliver(self, envelope)
        key = (envelope.user_id, f"{envelope.thread_id}#{envelope.offset}")
        subscribers = self._threads.get((envelope.user_id, envelope.thread_id or ""), {})
        self._threads[key] = dict(subscribers) or {"event": None}  # type: ignore[dict-item]

    Hub.deliver = deliver  # type: ignore[method-assign]


def leaks_one_object() -> None:
    """Every admitted connection leaves one small tuple behind in a module-level list.

    The tuple holds only the limits that every connection shares, so it is exactly one allocated
    block per connection cycle, and nothing that any count would show.
    """

    def init(self: Connection, *args: Any, **kwargs: Any) -> None:
        _original_connection_init(self, *args, **kwargs)
        KEPT.append((self.limits,))

    Connection.__init__ = init  # type: ignore[method-assign]


def leaks_on_eviction() -> None:
    """Every connection that the per-user limit evicts (4001) leaves one small tuple behind.

    Like ``leaks_one_object``, one allocated block per eviction and nothing any count would show;
    connections that end any other way leave nothing.
    """

    def close_released(self: Hub, admission: Admission) -> None:
        _original_close_released(self, admission)
        EVICTED.extend((close.SUPERSEDED,) for _ in admission.evicted)

    Hub._close_released = close_released  # type: ignore[method-assign]


def stream_outlives_its_client() -> None:
    """``GET /sse`` never ends its connection when the client goes: the stream's read ignores
    the disconnect, so the stream stays registered, counted and written to (uvicorn drops the
    writes to a closed response without an error) until the server closes it itself."""

    async def receive(self: EventStream) -> MutableMapping[str, Any]:
        never: asyncio.Future[MutableMapping[str, Any]] = asyncio.get_running_loop().create_future()
        return await never

    EventStream.receive = receive  # type: ignore[method-assign]


UNBOUNDED = 2**62
"""A queue limit and a write timeout (seconds) that nothing reaches."""


def stream_unbounded_queue() -> None:
    """An event stream's send queue grows without a bound and its writes never time out: a
    stream that stops reading is never closed as a slow consumer (4008). Sockets keep their
    limits."""

    def init(
        self: Connection,
        context: ConnectionContext,
        handle: Handle,
        socket: Socket,
        limits: ConnectionLimits,
        hooks: ConnectionHooks,
    ) -> None:
        if isinstance(socket, EventStream):
            limits = replace(limits, queue_limit_bytes=UNBOUNDED, write_timeout=float(UNBOUNDED))
        _original_connection_init(self, context, handle, socket, limits, hooks)

    Connection.__init__ = init  # type: ignore[method-assign]


ADMIN_LISTING = "/api/admin/users/{user_id}/connections"
FAILED_LISTINGS = 1


def admin_listing_fails_at_first() -> None:
    """The admin listing of a user's connections answers 500 to its first request.

    Nothing leaks: this proves that a scenario whose watcher depends on that listing fails
    rather than passing on no data (a suppressed probe error made "at most 2 at once" vacuous).
    """
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import BaseRoute, Route

    from wsguard.server import guard, http
    from wsguard.server.api import Api

    original = http.http_routes
    failed = 0

    def routes(api: Api) -> list[BaseRoute]:
        found = original(api)
        listing = next(
            r
            for r in found
            if isinstance(r, Route) and r.path == ADMIN_LISTING and "GET" in (r.methods or ())
        )

        async def failing_at_first(request: Request) -> Response:
            nonlocal failed
            if failed < FAILED_LISTINGS:
                failed += 1
                return PlainTextResponse("admin listing broken", status_code=500)
            response: Response = await listing.endpoint(request)
            return response

        return [Route(ADMIN_LISTING, failing_at_first, methods=["GET"]) if r is listing else r for r in found]

    setattr(guard, "http_routes", routes)  # noqa: B010 - the name guard.py looks up


BUGS: dict[str, Callable[[], None]] = {
    "recomputed_key": recomputed_key,
    "forgets_vanished": forgets_vanished,
    "uncancelled_task": uncancelled_task,
    "unbounded_queue": unbounded_queue,
    "registry_per_event": registry_per_event,
    "leaks_one_object": leaks_one_object,
    "leaks_on_eviction": leaks_on_eviction,
    "admin_listing_fails_at_first": admin_listing_fails_at_first,
    "stream_outlives_its_client": stream_outlives_its_client,
    "stream_unbounded_queue": stream_unbounded_queue,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BUGS:
        print(f"usage: broken_servers.py {{{','.join(BUGS)}}} <serve flags>", file=sys.stderr)
        return 2
    BUGS[argv[0]]()
    from wsguard.cli import main as wsguard_main

    return wsguard_main(["serve", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
