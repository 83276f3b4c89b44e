"""Typed server frames (PROTOCOL.md section 3), parsed once at the edge: nothing else reads JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class FrameError(ValueError):
    """A server frame that is not a JSON object with the fields its ``type`` requires."""


@dataclass(frozen=True)
class Position:
    """Where a thread's stream stands: its epoch and the last offset seen in it."""

    epoch: str
    offset: int

    def as_since(self) -> dict[str, Any]:
        """The ``since`` object of a ``subscribe`` command."""
        return {"epoch": self.epoch, "offset": self.offset}


@dataclass(frozen=True)
class Welcome:
    """First frame of every connection: who the server says we are."""

    connection_id: str
    session_id: str
    user_id: str
    heartbeat_interval: float | None
    heartbeat_timeout: float | None
    max_connections_per_user: int | None
    max_message_bytes: int | None


@dataclass(frozen=True)
class Event:
    """One event for this user; ``offset`` and ``thread_id`` are ``None`` for user-level events."""

    event: str
    thread_id: str | None
    run_id: str | None
    request_id: str | None
    offset: int | None
    epoch: str | None
    data: dict[str, Any]
    ts: str | None


@dataclass(frozen=True)
class Subscribed:
    """The server's answer to ``subscribe``, sent after any replayed events."""

    thread_id: str
    epoch: str
    offset: int
    recovered: bool
    replayed: int
    ref: str | int | None = None


@dataclass(frozen=True)
class Unsubscribed:
    """The server's answer to ``unsubscribe``."""

    thread_id: str
    ref: str | int | None = None


@dataclass(frozen=True)
class Pong:
    """The server's answer to an application-level ``ping``."""

    ref: str | int | None = None


@dataclass(frozen=True)
class Refreshed:
    """The server accepted a ``refresh``; the session now expires at ``exp``."""

    exp: float | None
    ref: str | int | None = None


@dataclass(frozen=True)
class ServerError:
    """A command the server refused; the connection stays open."""

    code: str
    message: str
    ref: str | int | None = None


@dataclass(frozen=True)
class UnknownFrame:
    """A frame type this client does not know (a newer server, or an embedding app's own type)."""

    type: str
    raw: dict[str, Any]


Frame = Welcome | Event | Subscribed | Unsubscribed | Pong | Refreshed | ServerError | UnknownFrame


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise FrameError(f"{raw.get('type')!r} frame: {key!r} must be a string, got {value!r}")
    return value


def _opt_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise FrameError(f"{raw.get('type')!r} frame: {key!r} must be a string or null")
    return value


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError(f"{raw.get('type')!r} frame: {key!r} must be an integer, got {value!r}")
    return value


def _opt_int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    return _int(raw, key)


def _opt_number(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise FrameError(f"{raw.get('type')!r} frame: {key!r} must be a number, got {value!r}")
    return float(value)


def _ref(raw: dict[str, Any]) -> str | int | None:
    value = raw.get("ref")
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def _section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _welcome(raw: dict[str, Any]) -> Welcome:
    heartbeat = _section(raw, "heartbeat")
    limits = _section(raw, "limits")
    return Welcome(
        connection_id=_str(raw, "connection_id"),
        session_id=_str(raw, "session_id"),
        user_id=_str(raw, "user_id"),
        heartbeat_interval=_opt_number(heartbeat, "interval"),
        heartbeat_timeout=_opt_number(heartbeat, "timeout"),
        max_connections_per_user=_opt_int(limits, "max_connections_per_user"),
        max_message_bytes=_opt_int(limits, "max_message_bytes"),
    )


def _event(raw: dict[str, Any]) -> Event:
    data = raw.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FrameError(f"'event' frame: 'data' must be an object, got {data!r}")
    return Event(
        event=_str(raw, "event"),
        thread_id=_opt_str(raw, "thread_id"),
        run_id=_opt_str(raw, "run_id"),
        request_id=_opt_str(raw, "request_id"),
        offset=_opt_int(raw, "offset"),
        epoch=_opt_str(raw, "epoch"),
        data=data,
        ts=_opt_str(raw, "ts"),
    )


def _subscribed(raw: dict[str, Any]) -> Subscribed:
    recovered = raw.get("recovered")
    if not isinstance(recovered, bool):
        raise FrameError(f"'subscribed' frame: 'recovered' must be a boolean, got {recovered!r}")
    return Subscribed(
        thread_id=_str(raw, "thread_id"),
        epoch=_str(raw, "epoch"),
        offset=_int(raw, "offset"),
        recovered=recovered,
        replayed=_opt_int(raw, "replayed") or 0,
        ref=_ref(raw),
    )


def parse_frame(text: str | bytes) -> Frame:
    """Parse one server frame; raise :class:`FrameError` when it breaks the protocol."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise FrameError(f"frame is not JSON: {error}") from error
    if not isinstance(raw, dict):
        raise FrameError(f"frame is not a JSON object: {raw!r}")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise FrameError(f"frame without a string 'type': {raw!r}")
    if kind == "welcome":
        return _welcome(raw)
    if kind == "event":
        return _event(raw)
    if kind == "subscribed":
        return _subscribed(raw)
    if kind == "unsubscribed":
        return Unsubscribed(thread_id=_str(raw, "thread_id"), ref=_ref(raw))
    if kind == "pong":
        return Pong(ref=_ref(raw))
    if kind == "refreshed":
        return Refreshed(exp=_opt_number(raw, "exp"), ref=_ref(raw))
    if kind == "error":
        return ServerError(code=_str(raw, "code"), message=str(raw.get("message", "")), ref=_ref(raw))
    return UnknownFrame(type=kind, raw=raw)
