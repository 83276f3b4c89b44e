"""Parsing never raises: every bad frame maps to the documented error code."""

import json

import pytest

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
