"""A text's frame is serialized once and written to every connection that sends the same text."""

from __future__ import annotations

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.protocol import State
from websockets.server import ServerProtocol

from wsguard.transport.protocol import _SharedFrame


def _sent_by_websockets(text: str, *, deflate: bool = False) -> bytes:
    conn = ServerProtocol()
    conn.state = State.OPEN
    if deflate:
        conn.extensions = [PerMessageDeflate(False, False, 15, 15)]
    conn.send_text(text.encode())
    return b"".join(conn.data_to_send())


@pytest.mark.parametrize("text", ["", "welcome", "é" * 40, "x" * 200, "y" * 70_000])
def test_the_shared_frame_is_what_the_websockets_state_machine_sends(text: str) -> None:
    shared = _SharedFrame()
    frame = shared.of(text)
    assert frame == _sent_by_websockets(text)
    assert shared.of(text) is frame


def test_another_text_gets_its_own_frame_and_only_one_is_kept() -> None:
    shared = _SharedFrame()
    first, second = "a" * 10, "b" * 10
    assert shared.of(first) == _sent_by_websockets(first)
    assert shared.of(second) == _sent_by_websockets(second)
    assert shared.of(first) == _sent_by_websockets(first)


def test_a_compressed_connections_frame_is_its_own_so_it_is_never_shared() -> None:
    text = "z" * 2000
    assert _sent_by_websockets(text, deflate=True) != _SharedFrame().of(text)
