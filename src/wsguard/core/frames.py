"""The wire format: client commands parsed into typed values, server frames encoded as JSON text.

Parsing never raises: a bad frame becomes a :class:`FrameError` with the protocol's error code,
which the connection answers with an ``error`` frame and stays open.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from wsguard.ids import is_thread_id

Ref = str | int | None
JSON = dict[str, Any]


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
    epoch: str
    offset: int


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
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def error_frame(error: FrameError) -> str:
    return encode("error", error.ref, code=error.code, message=error.message)


def utc_timestamp(epoch_seconds: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-27T02:20:47.123Z``."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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
