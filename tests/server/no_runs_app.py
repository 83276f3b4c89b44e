"""An embedding that turns the demo runs off (``CommandHooks(demo_runs=False)``): neither the
``message`` command nor ``POST /api/threads/{id}/runs`` may start one."""

from wsguard import CommandHooks, WSGuard
from wsguard.processes import script_settings
from wsguard.server.run import run_server


def main() -> None:
    settings = script_settings()
    guard = WSGuard(settings, hooks=CommandHooks(demo_runs=False))
    run_server(guard.app(), settings, guard.drain)


if __name__ == "__main__":
    main()
