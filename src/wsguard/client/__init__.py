"""An asyncio client for wsguard servers: reconnects, resumes its session and replays by offset.

    async with wsguard.client.connect(url, token=token) as client:
        await client.subscribe("thread-1")
        async for item in client:
            ...

Sans-I/O parts, usable on their own: :class:`ReconnectPolicy` (reconnect or stop, and when)
and :class:`ThreadTracker` (resubscription positions and duplicate dropping).
"""

from wsguard.client.history import HistoryRefused, fetch_history
from wsguard.client.outcome import ClientClosed, ClosedReason
from wsguard.client.reconnect import Decision, ReconnectPolicy, parse_retry_after
from wsguard.client.session import (
    Client,
    CommandError,
    ConnectionLost,
    CredentialsRefused,
    Item,
    connect,
)
from wsguard.client.tickets import http_ticket_provider
from wsguard.client.tracking import RecoveryFailed, ThreadTracker
from wsguard.core.frames import (
    Event,
    Frame,
    MalformedFrame,
    Pong,
    Position,
    Refreshed,
    ServerError,
    Subscribed,
    ThreadHistory,
    UnknownFrame,
    Unsubscribed,
    Welcome,
    parse_frame,
)

__all__ = [
    "Client",
    "ClientClosed",
    "ClosedReason",
    "CommandError",
    "ConnectionLost",
    "CredentialsRefused",
    "Decision",
    "Event",
    "Frame",
    "HistoryRefused",
    "Item",
    "MalformedFrame",
    "Pong",
    "Position",
    "ReconnectPolicy",
    "RecoveryFailed",
    "Refreshed",
    "ServerError",
    "Subscribed",
    "ThreadHistory",
    "ThreadTracker",
    "UnknownFrame",
    "Unsubscribed",
    "Welcome",
    "connect",
    "fetch_history",
    "http_ticket_provider",
    "parse_frame",
    "parse_retry_after",
]
