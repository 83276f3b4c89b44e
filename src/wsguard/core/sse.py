"""The Server-Sent Events wire format of a stream, without I/O (docs/protocol.md section 2).

Each message is one frame of the WebSocket protocol on one ``data:`` line (frames are compact
JSON: they hold no newline), with an ``id:`` line for the frames that move a thread's position.
A comment line is the heartbeat; a ``close`` message carries a server-side close's code.
"""

import json

from wsguard.close import Close

HEARTBEAT = b":\n\n"
"""A comment: keeps proxies from timing the stream out, and shows the client it is alive."""

STREAM_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)
"""The stream's response headers: ``X-Accel-Buffering: no`` stops nginx from buffering it."""

POSITION_FRAMES = ('{"type":"event",', '{"type":"subscribed",', '{"type":"unsubscribed",')
"""The frames after which a thread's position changes: they carry an ``id:``."""


def message(frame: str, event_id: str | None = None) -> bytes:
    """One SSE message of ``frame``, with ``event_id`` as its ``id:`` when given."""
    if event_id is None:
        return f"data: {frame}\n\n".encode()
    return f"id: {event_id}\ndata: {frame}\n\n".encode()


def close_message(reason: Close) -> bytes:
    """The last message of a stream the server closes."""
    frame = json.dumps({"type": "close", "code": reason.code, "reason": reason.reason}, separators=(",", ":"))
    return message(frame)


def moves_position(frame: str) -> bool:
    """Whether ``frame`` changes where one of the stream's threads stands."""
    return frame.startswith(POSITION_FRAMES)
