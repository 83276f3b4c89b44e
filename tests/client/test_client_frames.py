"""Server frames parse into typed objects, and frames that break the protocol are refused."""

import json
from typing import Any

import pytest

from wsguard.client import (
    Event,
    MalformedFrame,
    Pong,
    Refreshed,
    ServerError,
    Subscribed,
    UnknownFrame,
    Unsubscribed,
    Welcome,
    parse_frame,
)


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def test_welcome() -> None:
    parsed = parse_frame(
        frame(
            type="welcome",
            connection_id="c1",
            session_id="s1",
            user_id="alice",
            heartbeat={"interval": 20, "timeout": 20.5},
            limits={"max_connections_per_user": 20, "max_message_bytes": 65536},
        )
    )
    assert parsed == Welcome("c1", "s1", "alice", 20.0, 20.5, 20, 65536)


def test_thread_event_and_user_level_event() -> None:
    thread_event = parse_frame(
        frame(
            type="event",
            event="agent_started",
            thread_id="t1",
            run_id="r1",
            request_id="q1",
            offset=1,
            epoch="e1",
            data={"step": 0},
            ts="2026-01-01T00:00:00Z",
        )
    )
    assert thread_event == Event(
        "agent_started", "t1", "r1", "q1", 1, "e1", {"step": 0}, "2026-01-01T00:00:00Z"
    )
    user_event = parse_frame(frame(type="event", event="notice", data={}, epoch="e0"))
    assert isinstance(user_event, Event)
    assert (user_event.thread_id, user_event.offset, user_event.run_id) == (None, None, None)


def test_replies_keep_their_ref() -> None:
    assert parse_frame(
        frame(
            type="subscribed",
            thread_id="t",
            epoch="e",
            offset=0,
            recovered=False,
            replayed=0,
            ref=3,
        )
    ) == Subscribed("t", "e", 0, False, 0, 3)
    assert parse_frame(frame(type="unsubscribed", thread_id="t", ref="x")) == Unsubscribed("t", "x")
    assert parse_frame(frame(type="pong", ref=1)) == Pong(1)
    assert parse_frame(frame(type="refreshed", exp=1700000000)) == Refreshed(1700000000.0)
    assert parse_frame(frame(type="error", code="bad_request", message="no", ref=2)) == ServerError(
        "bad_request", "no", 2
    )


def test_unknown_types_are_kept_not_refused() -> None:
    parsed = parse_frame(frame(type="custom", value=1))
    assert parsed == UnknownFrame("custom", {"type": "custom", "value": 1})


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        frame(kind="welcome"),
        frame(type="welcome", connection_id="c", session_id=5, user_id="u"),
        frame(type="event", event="x", offset="1"),
        frame(type="event", event="x", offset=True),
        frame(type="event", event="x", data=[1]),
        frame(type="subscribed", thread_id="t", epoch="e", offset=1, recovered="no"),
    ],
)
def test_frames_that_break_the_protocol_are_refused(text: str) -> None:
    with pytest.raises(MalformedFrame):
        parse_frame(text)
