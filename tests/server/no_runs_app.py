"""An embedding that turns the demo runs off (``CommandHooks(demo_runs=False)``): neither the
``message`` command nor ``POST /api/threads/{id}/runs`` may start one."""

import argparse

from wsguard import CommandHooks, Settings, WSGuard
from wsguard.server.run import run_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dev", action="store_true")
    args = parser.parse_args()
    settings = Settings(host=args.host, port=args.port, dev=args.dev)
    guard = WSGuard(settings, hooks=CommandHooks(demo_runs=False))
    run_server(guard.app(), settings, guard.drain)


if __name__ == "__main__":
    main()
