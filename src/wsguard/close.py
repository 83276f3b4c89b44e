"""Close codes of docs/protocol.md section 6: what the server sends, and what a client does after each.

One table for the server, the transport and the client. It imports nothing beyond the standard
library, so that the client can use it without the server's dependencies.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


NORMAL = Close(1000, "normal")
GOING_AWAY = Close(1001, "going_away")
UNSUPPORTED_DATA = Close(1003, "unsupported_data")
POLICY_VIOLATION = Close(1008, "policy_violation")
TOO_BIG = Close(1009, "too_big")
INTERNAL_ERROR = Close(1011, "internal_error")
HEARTBEAT_TIMEOUT = Close(1011, "heartbeat_timeout")
SUPERSEDED = Close(4001, "superseded")
REPLACED = Close(4002, "replaced")
DISCONNECTED_BY_SERVER = Close(4003, "disconnected_by_server")
SLOW_CONSUMER = Close(4008, "slow_consumer")
TOO_MANY_CONNECTIONS = Close(4029, "too_many_connections")
TOKEN_EXPIRED = Close(4401, "token_expired")

NO_STATUS = 1005
"""A close frame without a code (RFC 6455); never sent on the wire."""
ABNORMAL = 1006
"""No close frame at all: the TCP connection was lost (RFC 6455); never sent on the wire."""


class OnClose(StrEnum):
    """What a client should do after a close code: the last column of docs/protocol.md section 6."""

    STOP = "stop"
    BACKOFF = "backoff"
    RANDOM_DELAY = "random_delay"
    """Reconnect after a random delay (the server is shutting down; spread the reconnections)."""
    NEW_CREDENTIALS = "new_credentials"
    """Reconnect only with a new token or ticket."""


@dataclass(frozen=True, slots=True)
class ClientRule:
    on_close: OnClose
    why: str


_STOP, _BACKOFF = OnClose.STOP, OnClose.BACKOFF
CLIENT_RULES: Mapping[int, ClientRule] = MappingProxyType(
    {
        NORMAL.code: ClientRule(_STOP, "the server closed the connection normally"),
        GOING_AWAY.code: ClientRule(OnClose.RANDOM_DELAY, "the server is shutting down"),
        1002: ClientRule(_STOP, "protocol error (a client bug)"),
        UNSUPPORTED_DATA.code: ClientRule(_STOP, "the server refused a binary frame"),
        NO_STATUS: ClientRule(_BACKOFF, "closed without a code"),
        ABNORMAL: ClientRule(_BACKOFF, "the network dropped the connection"),
        1007: ClientRule(_STOP, "invalid UTF-8 (a client bug)"),
        POLICY_VIOLATION.code: ClientRule(_STOP, "policy violation: too many commands"),
        TOO_BIG.code: ClientRule(_STOP, "a frame was larger than the server allows"),
        INTERNAL_ERROR.code: ClientRule(_BACKOFF, "heartbeat timeout or internal error"),
        1012: ClientRule(_BACKOFF, "the server is restarting"),
        1013: ClientRule(_BACKOFF, "try again later"),
        1014: ClientRule(_BACKOFF, "bad gateway"),
        SUPERSEDED.code: ClientRule(
            _STOP, "superseded: the per-user connection limit evicted this connection"
        ),
        REPLACED.code: ClientRule(_STOP, "replaced: another connection resumed this session"),
        DISCONNECTED_BY_SERVER.code: ClientRule(_STOP, "disconnected by the server's administrator"),
        SLOW_CONSUMER.code: ClientRule(_BACKOFF, "slow consumer: resubscribing from the last offset"),
        TOO_MANY_CONNECTIONS.code: ClientRule(
            _STOP, "too many connections: the per-user limit refused this one"
        ),
        TOKEN_EXPIRED.code: ClientRule(OnClose.NEW_CREDENTIALS, "token expired"),
    }
)
"""Every close code a client may see, with what to do after it; a code not here: stop."""

CLIENT_CLOSED = "client_closed"
CONNECTION_LOST = "connection_lost"

_NO_CLOSE_FRAME = frozenset({NO_STATUS, ABNORMAL})


def peer_close_label(code: int, reason: str) -> str:
    """The metric label for a socket that ended without the server asking it to."""
    if code == HEARTBEAT_TIMEOUT.code and reason == HEARTBEAT_TIMEOUT.reason:
        return HEARTBEAT_TIMEOUT.reason
    if code == TOO_BIG.code:
        return TOO_BIG.reason
    if code in _NO_CLOSE_FRAME:
        return CONNECTION_LOST
    return CLIENT_CLOSED
