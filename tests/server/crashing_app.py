"""A server whose application command ``crash`` raises, to show that a bug in a handler closes
only that connection, with 1011 ``internal_error``, and leaks nothing."""

from typing import Any

from wsguard import CommandHooks, ConnectionContext, WSGuard
from wsguard.processes import script_settings
from wsguard.server.run import run_server


async def crash(context: ConnectionContext, frame: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("a bug in the application's handler")


def main() -> None:
    settings = script_settings()
    guard = WSGuard(settings, hooks=CommandHooks(custom={"crash": crash}))
    run_server(guard.app(), settings, guard.drain)


if __name__ == "__main__":
    main()
