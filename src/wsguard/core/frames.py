"""The wire format (docs/protocol.md section 3), one module for the server and the client.

The server parses client commands into typed values and encodes its frames as JSON text; the
client parses those frames into typed values. Command parsing never raises: a bad command becomes
a :class:`FrameError` with the protocol's error code, which the connection answers with an
``error`` frame and stays open. A server frame that breaks the protocol raises
:class:`MalformedFrame` in the client. Standard library only, so the client can import it
without the server's dependencies.
"""

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from wsguard.errors import WSGuardError
from wsguard.ids import is_thread_id

Ref = str | int | None
JSON = dict[str, Any]

_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def compact_json(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``, the same text, with one
    encoder for every call where ``json.dumps`` with arguments builds one each time (a third of
    its cost for an event's ``data``)."""
    return _COMPACT.encode(value)


def utf8_size(text: str) -> int:
    """The bytes ``text`` takes on the wire; byte limits count these, not characters."""
    return len(text) if text.isascii() else len(text.encode())


@dataclass(frozen=True, slots=True)
class FrameError:
    code: str
    message: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Since:
    """Where a thread's stream stands: its epoch and an offset (the ``since`` of ``subscribe``)."""

    epoch: str
    offset: int

    def as_since(self) -> JSON:
        """The ``since`` object of a ``subscribe`` command."""
        return {"epoch": self.epoch, "offset": self.offset}


Position = Since
"""The client's name for a :class:`Since`: the last position it saw in a thread."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    thread_id: str
    since: Since | None
    ref: Ref


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    thread_id: str
    ref: Ref


@dataclass(frozen=True, slots=True)
class Ping:
    ref: Ref


@dataclass(frozen=True, slots=True)
class Refresh:
    token: str
    ref: Ref


@dataclass(frozen=True, slots=True)
class Message:
    thread_id: str
    text: str
    ref: Ref


@dataclass(frozen=True, slots=True)
class Custom:
    """A command type the embedding application registered; ``body`` is the whole frame."""

    type: str
    body: JSON
    ref: Ref


Command = Subscribe | Unsubscribe | Ping | Refresh | Message | Custom


def _ref_of(body: JSON) -> tuple[Ref, FrameError | None]:
    ref = body.get("ref")
    if ref is None or (isinstance(ref, str | int) and not isinstance(ref, bool)):
        return ref, None
    return None, FrameError("bad_request", "ref must be a string or an integer")


def _thread_of(body: JSON, ref: Ref) -> str | FrameError:
    thread_id = body.get("thread_id")
    if not is_thread_id(thread_id):
        return FrameError("bad_request", "thread_id must match [A-Za-z0-9._:-]{1,128}", ref)
    assert isinstance(thread_id, str)
    return thread_id


def _since_of(body: JSON, ref: Ref) -> Since | FrameError | None:
    since = body.get("since")
    if since is None:
        return None
    if not isinstance(since, dict):
        return FrameError("bad_request", "since must be an object {epoch, offset}", ref)
    epoch, offset = since.get("epoch"), since.get("offset")
    if not isinstance(epoch, str) or isinstance(offset, bool) or not isinstance(offset, int):
        return FrameError("bad_request", "since needs a string epoch and an integer offset", ref)
    if offset < 0:
        return FrameError("bad_request", "since.offset must be 0 or more", ref)
    return Since(epoch, offset)


def parse_command(text: str, custom_types: frozenset[str] = frozenset()) -> Command | FrameError:
    """Turn one text frame into a command, or the error to answer it with."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return FrameError("bad_json", "frame is not valid JSON")
    if not isinstance(body, dict):
        return FrameError("bad_request", "frame must be a JSON object")
    ref, problem = _ref_of(body)
    if problem:
        return problem
    kind = body.get("type")
    if not isinstance(kind, str):
        return FrameError("bad_request", "type must be a string", ref)
    if kind == "ping":
        return Ping(ref)
    if kind in ("subscribe", "unsubscribe", "message"):
        thread_id = _thread_of(body, ref)
        if isinstance(thread_id, FrameError):
            return thread_id
        if kind == "unsubscribe":
            return Unsubscribe(thread_id, ref)
        if kind == "message":
            text_value = body.get("text")
            if not isinstance(text_value, str):
                return FrameError("bad_request", "text must be a string", ref)
            return Message(thread_id, text_value, ref)
        since = _since_of(body, ref)
        if isinstance(since, FrameError):
            return since
        return Subscribe(thread_id, since, ref)
    if kind == "refresh":
        token = body.get("token")
        if not isinstance(token, str) or not token:
            return FrameError("bad_request", "token must be a non-empty string", ref)
        return Refresh(token, ref)
    if kind in custom_types:
        return Custom(kind, body, ref)
    return FrameError("unknown_type", f"unknown type {kind[:64]!r}", ref)


def encode(frame_type: str, ref: Ref = None, **fields: Any) -> str:
    """A server frame as compact JSON text; ``ref`` is echoed only when the command carried one."""
    body: JSON = {"type": frame_type, **fields}
    if ref is not None:
        body["ref"] = ref
    return compact_json(body)


def error_frame(error: FrameError) -> str:
    return encode("error", error.ref, code=error.code, message=error.message)


@lru_cache(maxsize=2)
def _utc_second(second: int) -> str:
    """``2026-11-27T02:20:47.``: formatting it costs more than the rest of an event frame, and
    it changes once a second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))


def utc_timestamp(epoch_seconds: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-27T02:20:47.123Z``."""
    fraction, second = math.modf(epoch_seconds)
    microsecond = round(fraction * 1_000_000)  # rounded as datetime.fromtimestamp rounds
    if microsecond >= 1_000_000:
        second, microsecond = second + 1, microsecond - 1_000_000
    return f"{_utc_second(int(second))}{microsecond // 1000:03d}Z"


def event_frame(
    *,
    event: str,
    thread_id: str | None,
    run_id: str | None,
    request_id: str | None,
    offset: int | None,
    epoch: str,
    data: JSON,
    ts: float,
) -> str:
    """The ``event`` frame, encoded once per published event and shared by every recipient."""
    return encode(
        "event",
        event=event,
        thread_id=thread_id,
        run_id=run_id,
        request_id=request_id,
        offset=offset,
        epoch=epoch,
        data=data,
        ts=utc_timestamp(ts),
    )


def encode_history(thread_id: str, epoch: str, offset: int, frames: Iterable[str], complete: bool) -> str:
    """The body of ``GET /api/threads/{thread_id}/events``: the stored ``event`` frames are
    joined as they are, never parsed and encoded again."""
    head = compact_json({"thread_id": thread_id, "epoch": epoch, "offset": offset, "complete": complete})
    return head[:-1] + ',"events":[' + ",".join(frames) + "]}"


# Server frames, as the client parses them


class MalformedFrame(WSGuardError, ValueError):
    """A server frame that is not a JSON object with the fields its ``type`` requires."""


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
    ref: Ref = None


@dataclass(frozen=True)
class Unsubscribed:
    """The server's answer to ``unsubscribe``."""

    thread_id: str
    ref: Ref = None


@dataclass(frozen=True)
class Pong:
    """The server's answer to an application-level ``ping``."""

    ref: Ref = None


@dataclass(frozen=True)
class Refreshed:
    """The server accepted a ``refresh``; the session now expires at ``exp``."""

    exp: float | None
    ref: Ref = None


@dataclass(frozen=True)
class ServerError:
    """A command the server refused; the connection stays open."""

    code: str
    message: str
    ref: Ref = None


@dataclass(frozen=True)
class UnknownFrame:
    """A frame type this client does not know (a newer server, or an embedding app's own type)."""

    type: str
    raw: dict[str, Any]


Frame = Welcome | Event | Subscribed | Unsubscribed | Pong | Refreshed | ServerError | UnknownFrame


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise MalformedFrame(f"{raw.get('type')!r} frame: {key!r} must be a string, got {value!r}")
    return value


def _opt_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedFrame(f"{raw.get('type')!r} frame: {key!r} must be a string or null")
    return value


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedFrame(f"{raw.get('type')!r} frame: {key!r} must be an integer, got {value!r}")
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
        raise MalformedFrame(f"{raw.get('type')!r} frame: {key!r} must be a number, got {value!r}")
    return float(value)


def _ref(raw: dict[str, Any]) -> Ref:
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
        raise MalformedFrame(f"'event' frame: 'data' must be an object, got {data!r}")
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
        raise MalformedFrame(f"'subscribed' frame: 'recovered' must be a boolean, got {recovered!r}")
    return Subscribed(
        thread_id=_str(raw, "thread_id"),
        epoch=_str(raw, "epoch"),
        offset=_int(raw, "offset"),
        recovered=recovered,
        replayed=_opt_int(raw, "replayed") or 0,
        ref=_ref(raw),
    )


def parse_frame(text: str | bytes) -> Frame:
    """Parse one server frame; raise :class:`MalformedFrame` when it breaks the protocol."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedFrame(f"frame is not JSON: {error}") from error
    if not isinstance(raw, dict):
        raise MalformedFrame(f"frame is not a JSON object: {raw!r}")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise MalformedFrame(f"frame without a string 'type': {raw!r}")
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


@dataclass(frozen=True)
class ThreadHistory:
    """A thread's retained events after an offset (``GET /api/threads/{thread_id}/events``)."""

    thread_id: str
    epoch: str
    offset: int
    """The thread's last offset."""
    events: tuple[Event, ...]
    complete: bool
    """False when events after the offset asked for are no longer retained: reload instead."""

    @property
    def position(self) -> Position:
        """Where to subscribe from to go on without a gap: the last event returned (the rest is
        replayed), or the thread's last offset when none was."""
        last = self.events[-1].offset if self.events else None
        return Position(self.epoch, self.offset if last is None else last)


def parse_history(text: str | bytes) -> ThreadHistory:
    """Parse a history body; raise :class:`MalformedFrame` when it is not one."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedFrame(f"history is not JSON: {error}") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("events"), list):
        raise MalformedFrame("history must be an object with a list of events")
    complete = raw.get("complete")
    if not isinstance(complete, bool):
        raise MalformedFrame(f"history: 'complete' must be a boolean, got {complete!r}")
    events = []
    for item in raw["events"]:
        if not isinstance(item, dict) or item.get("type") != "event":
            raise MalformedFrame(f"history: not an event frame: {item!r}")
        events.append(_event(item))
    return ThreadHistory(
        thread_id=_str(raw, "thread_id"),
        epoch=_str(raw, "epoch"),
        offset=_int(raw, "offset"),
        events=tuple(events),
        complete=complete,
    )
