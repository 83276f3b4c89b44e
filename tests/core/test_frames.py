"""Parsing never raises: every bad frame maps to the documented error code."""

import json

import pytest

from wsguard.client.tracking import ThreadTracker
from wsguard.core import frames
from wsguard.core.frames import FrameError, Since, Subscribe


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_request"),
        ('{"type": 3}', "bad_request"),
        ('{"type": "subscribe"}', "bad_request"),
        ('{"type": "subscribe", "thread_id": "has space"}', "bad_request"),
        ('{"type": "subscribe", "thread_id": "t", "since": {"epoch": "e"}}', "bad_request"),
        ('{"type": "subscribe", "thread_id": "t", "since": {"epoch": "e", "offset": -1}}', "bad_request"),
        ('{"type": "ping", "ref": [1]}', "bad_request"),
        ('{"type": "ping", "ref": true}', "bad_request"),
        ('{"type": "launch"}', "unknown_type"),
        ('{"type": "message", "thread_id": "t"}', "bad_request"),
        ('{"type": "refresh", "token": ""}', "bad_request"),
        ("[" * 100_000, "bad_json"),
    ],
)
def test_bad_frames_get_their_error_code(text: str, code: str) -> None:
    parsed = frames.parse_command(text)
    assert isinstance(parsed, FrameError)
    assert parsed.code == code


def test_subscribe_with_since_and_ref() -> None:
    text = '{"type": "subscribe", "thread_id": "a.b:c-1", "since": {"epoch": "e", "offset": 4}, "ref": 7}'
    assert frames.parse_command(text) == Subscribe("a.b:c-1", Since("e", 4), 7)


def test_errors_echo_the_ref() -> None:
    parsed = frames.parse_command('{"type": "nope", "ref": "r1"}')
    assert isinstance(parsed, FrameError)
    assert json.loads(frames.error_frame(parsed))["ref"] == "r1"


def test_registered_custom_types_pass_through() -> None:
    parsed = frames.parse_command('{"type": "typing", "x": 1}', frozenset({"typing"}))
    assert isinstance(parsed, frames.Custom)
    assert parsed.body["x"] == 1


def test_what_the_server_encodes_the_client_parses_into_the_same_values() -> None:
    sent = frames.event_frame(
        event="tool_completed",
        thread_id="t.1",
        run_id="run_1",
        request_id="req_1",
        offset=7,
        epoch="e1",
        data={"tool": "search", "text": "é"},
        ts=1_700_000_000.25,
    )
    assert frames.parse_frame(sent) == frames.Event(
        event="tool_completed",
        thread_id="t.1",
        run_id="run_1",
        request_id="req_1",
        offset=7,
        epoch="e1",
        data={"tool": "search", "text": "é"},
        ts="2023-11-14T22:13:20.250Z",
    )
    refusal = frames.error_frame(FrameError("bad_request", "thread_id is missing", ref=3))
    assert frames.parse_frame(refusal) == frames.ServerError("bad_request", "thread_id is missing", 3)
    assert frames.parse_frame(frames.encode("pong", "p1")) == frames.Pong("p1")


def test_what_the_client_subscribes_with_the_server_parses_into_the_same_position() -> None:
    tracker = ThreadTracker()
    position = frames.Position("e1", 41)
    tracker.subscribe("t.1", since=position)
    command = tracker.subscribe_command("t.1")
    assert frames.parse_command(json.dumps(command)) == Subscribe("t.1", position, None)
