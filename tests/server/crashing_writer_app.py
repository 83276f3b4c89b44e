"""A server whose socket writes fail with an unexpected error for one frame: the application
command ``poison`` replies with it. The write must not fail silently (whether the frame is
written at once or by a writer task): the connection is closed with 1011 ``internal_error``
(and the error logged), like a reader's failure."""

from typing import Any

from uvicorn._types import ASGISendEvent

from wsguard import CommandHooks, ConnectionContext, WSGuard
from wsguard.processes import script_settings
from wsguard.server.run import run_server
from wsguard.transport.protocol import GuardedWebSocketProtocol

POISON = "poisoned-frame"
_send_message = GuardedWebSocketProtocol.send_message
_send_text_frame = GuardedWebSocketProtocol.send_text_frame


def _failing_send_message(self: GuardedWebSocketProtocol, message: ASGISendEvent) -> None:
    if POISON in str(message.get("text")):
        raise ValueError("an unexpected failure while writing")
    _send_message(self, message)


def _failing_send_text_frame(self: GuardedWebSocketProtocol, text: str) -> None:
    """The direct write's path (a frame written at once, not by a writer task)."""
    if POISON in text:
        raise ValueError("an unexpected failure while writing")
    _send_text_frame(self, text)


async def poison(context: ConnectionContext, frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "poison", "text": POISON}


def main() -> None:
    GuardedWebSocketProtocol.send_message = _failing_send_message  # type: ignore[method-assign]
    GuardedWebSocketProtocol.send_text_frame = _failing_send_text_frame  # type: ignore[method-assign]
    settings = script_settings()
    guard = WSGuard(settings, hooks=CommandHooks(custom={"poison": poison}))
    run_server(guard.app(), settings, guard.drain)


if __name__ == "__main__":
    main()
