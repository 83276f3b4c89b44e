"""A server whose socket writes fail with an unexpected error for one frame: the application
command ``poison`` replies with it. The writer task must not die silently: the connection is
closed with 1011 ``internal_error`` (and the error logged), like a reader's failure."""

import argparse
from typing import Any

from starlette.websockets import WebSocket

from wsguard import CommandHooks, ConnectionContext, Settings, WSGuard
from wsguard.server.run import run_server

POISON = "poisoned-frame"
_send_text = WebSocket.send_text


async def _failing_send_text(self: WebSocket, data: str) -> None:
    if POISON in data:
        raise ValueError("an unexpected failure while writing")
    await _send_text(self, data)


async def poison(context: ConnectionContext, frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "poison", "text": POISON}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dev", action="store_true")
    args = parser.parse_args()
    WebSocket.send_text = _failing_send_text  # type: ignore[method-assign,assignment]
    settings = Settings(host=args.host, port=args.port, dev=args.dev)
    guard = WSGuard(settings, hooks=CommandHooks(custom={"poison": poison}))
    run_server(guard.app(), settings, guard.drain)


if __name__ == "__main__":
    main()
