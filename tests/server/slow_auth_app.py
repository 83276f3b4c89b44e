"""A server whose authentication takes as long as the ``X-Auth-Delay`` header asks (seconds),
so that a test can start the drain, or drop the client, while an upgrade is still being
admitted."""

import asyncio

from starlette.requests import HTTPConnection

from wsguard import Settings, WSGuard
from wsguard.processes import script_parser
from wsguard.server.auth import Identity
from wsguard.server.run import run_server


def main() -> None:
    parser = script_parser()
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--max-connections", type=int, default=0)
    args = parser.parse_args()
    settings = Settings(
        host=args.host,
        port=args.port,
        dev=args.dev,
        drain_timeout=args.drain_timeout,
        max_connections=args.max_connections,
    )

    async def slow_authenticate(connection: HTTPConnection) -> Identity:
        await asyncio.sleep(float(connection.headers.get("x-auth-delay", "0")))
        return await guard.tokens.authenticate(connection)

    guard = WSGuard(settings, authenticate=slow_authenticate)
    run_server(guard.app(), settings, guard.drain, guard.stop_admitting)


if __name__ == "__main__":
    main()
