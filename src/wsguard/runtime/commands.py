"""What the server does with each client command of docs/protocol.md section 3."""

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wsguard.context import ConnectionContext
from wsguard.core import frames
from wsguard.core.frames import Custom, FrameError, Message, Ping, Refresh, Subscribe, Unsubscribe
from wsguard.runtime.connection import Connection
from wsguard.runtime.demo import new_run, start_demo_run
from wsguard.runtime.hub import Hub

logger = logging.getLogger("wsguard")

AuthorizeSubscribe = Callable[[ConnectionContext, str], Awaitable[bool]]
"""May this connection subscribe to this thread of its own user? (embedding hook)"""

CustomCommand = Callable[[ConnectionContext, dict[str, Any]], Awaitable[dict[str, Any] | None]]
"""An application's own command: gets the frame, returns a reply frame (with ``type``) or None."""

VerifyRefresh = Callable[[str, str], float | None]
"""Check a refresh token for a user id; returns its expiry or raises ``PermissionError``."""


@dataclass(frozen=True)
class CommandHooks:
    """What an embedding application may plug into the command path."""

    authorize_subscribe: AuthorizeSubscribe | None = None
    """Decides each ``subscribe``: False answers ``error`` ``unauthorized`` and keeps the
    connection open. None allows every thread of the connection's own user."""
    custom: Mapping[str, CustomCommand] | None = None
    """Command types of the application's own, each to its handler; the reply frame goes back
    with the command's ``ref``."""
    verify_refresh: VerifyRefresh | None = None
    """Checks a ``refresh`` command's token. Called with the token and the connection's user id
    (a plain function, not a coroutine), it returns the session's new expiry (epoch seconds; None
    for no expiry) or raises ``PermissionError``, whose message goes back in ``error``
    ``unauthorized``. Left None, wsguard checks the token as a JWT of its own keys when it
    authenticates the upgrades itself; with an ``authenticate`` of the application's own, whose
    tokens only the application can check, every ``refresh`` is refused (``unauthorized``,
    "refresh is not enabled here") unless this is given."""
    demo_runs: bool = True
    """The built-in demo run. False turns it off: ``message`` is answered with ``error``
    ``unknown_type``, ``POST /api/threads/{thread_id}/runs`` with 404."""


class Commands:
    """Parses one frame and carries it out; a bad frame is answered with ``error``, never raised."""

    def __init__(self, hub: Hub, hooks: CommandHooks) -> None:
        self.hub = hub
        self.hooks = hooks
        self._custom_types = frozenset(hooks.custom or ())

    async def handle(self, connection: Connection, text: str) -> None:
        command = frames.parse_command(text, self._custom_types)
        if isinstance(command, FrameError):
            connection.send(frames.error_frame(command))
            return
        if isinstance(command, Ping):
            connection.send(frames.encode("pong", command.ref))
        elif isinstance(command, Subscribe):
            await self._subscribe(connection, command)
        elif isinstance(command, Unsubscribe):
            self.hub.unsubscribe(connection, command.thread_id)
            connection.send(frames.encode("unsubscribed", command.ref, thread_id=command.thread_id))
        elif isinstance(command, Message):
            self._message(connection, command)
        elif isinstance(command, Refresh):
            self._refresh(connection, command)
        elif isinstance(command, Custom):
            await self._custom(connection, command)

    async def _subscribe(self, connection: Connection, command: Subscribe) -> None:
        if not connection.state.may_subscribe(command.thread_id):
            limit = connection.limits.max_subscriptions
            error = FrameError(
                "too_many_subscriptions", f"at most {limit} threads per connection", command.ref
            )
            connection.send(frames.error_frame(error))
            return
        authorize = self.hooks.authorize_subscribe
        if authorize is not None and not await authorize(connection.context, command.thread_id):
            error = FrameError("unauthorized", "subscription refused", command.ref)
            connection.send(frames.error_frame(error))
            return
        await self.hub.subscribe(connection, command.thread_id, command.since, command.ref)

    def _message(self, connection: Connection, command: Message) -> None:
        if not self.hooks.demo_runs:
            error = FrameError("unknown_type", "message is not enabled here", command.ref)
            connection.send(frames.error_frame(error))
            return
        run = new_run(connection.user_id, command.thread_id)
        if not start_demo_run(self.hub, run, command.text):
            error = FrameError("rate_limited", "too many runs at once", command.ref)
            connection.send(frames.error_frame(error))

    def _refresh(self, connection: Connection, command: Refresh) -> None:
        verify = self.hooks.verify_refresh
        try:
            if verify is None:
                raise PermissionError("refresh is not enabled here")
            expires_at = verify(command.token, connection.user_id)
        except PermissionError as refused:
            error = FrameError("unauthorized", str(refused), command.ref)
            connection.send(frames.error_frame(error))
            return
        self.hub.extend_expiry(connection, expires_at)
        connection.send(frames.encode("refreshed", command.ref, exp=expires_at))

    async def _custom(self, connection: Connection, command: Custom) -> None:
        assert self.hooks.custom is not None
        reply = await self.hooks.custom[command.type](connection.context, command.body)
        if reply is not None:
            body = dict(reply)
            kind = str(body.pop("type", command.type))
            connection.send(frames.encode(kind, command.ref, **body))
