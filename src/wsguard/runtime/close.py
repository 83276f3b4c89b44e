"""Close codes and reasons of PROTOCOL.md section 6, and the metric label of each way a socket ends."""

from dataclasses import dataclass


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

CLIENT_CLOSED = "client_closed"
CONNECTION_LOST = "connection_lost"

_NO_CLOSE_FRAME = frozenset({1005, 1006})


def peer_close_label(code: int, reason: str) -> str:
    """The metric label for a socket that ended without the server asking it to."""
    if code == HEARTBEAT_TIMEOUT.code and reason == HEARTBEAT_TIMEOUT.reason:
        return HEARTBEAT_TIMEOUT.reason
    if code == TOO_BIG.code:
        return TOO_BIG.reason
    if code in _NO_CLOSE_FRAME:
        return CONNECTION_LOST
    return CLIENT_CLOSED
