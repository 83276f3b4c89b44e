"""Immutable contexts, built once where a request enters and passed down unchanged."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """Who a connection is, fixed at the upgrade. The connection id is its only identity."""

    connection_id: str
    session_id: str
    user_id: str
    opened_at: float
    expires_at: float | None
    client_address: str | None
    user_agent: str | None = None
    transport: str = "websocket"
    """``websocket``, or ``sse`` for an event stream."""


@dataclass(frozen=True, slots=True)
class RunContext:
    """The ids of one agent run, created by the request that starts it and carried by every event."""

    user_id: str
    thread_id: str
    run_id: str
    request_id: str


@dataclass(frozen=True, slots=True)
class EventIds:
    """The run and request ids an event carries, each None when none: what a publisher outside a
    run gives (a :class:`RunContext` carries both)."""

    run_id: str | None = None
    request_id: str | None = None
