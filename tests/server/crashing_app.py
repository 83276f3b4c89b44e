"""A server whose application command ``crash`` raises, to show that a bug in a handler closes
only that connection, with 1011 ``internal_error``, and leaks nothing."""

import argparse
from typing import Any

from wsguard import CommandHooks, ConnectionContext, Settings, WSGuard
from wsguard.server.run import run_server


async def crash(context: ConnectionContext, frame: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("a bug in the application's handler")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dev", action="store_true")
    args = parser.parse_args()
    settings = Settings(host=args.host, port=args.port, dev=args.dev)
    guard = WSGuard(settings, hooks=CommandHooks(custom={"crash": crash}))
    run_server(guard.app(), settings, guard.drain)


if __name__ == "__main__":
    main()
