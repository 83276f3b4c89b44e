"""An embedding with its own ``authenticate`` (no JWT anywhere) and a ticket lifetime of its own,
for the tests of what instances on one Redis share: tickets and sessions.

The caller is whoever ``X-User`` names; ``X-Expires-In`` (seconds) gives the identity an expiry,
``X-Admin: 1`` makes it an admin.
"""

import time

from starlette.requests import HTTPConnection

from wsguard import Settings, WSGuard
from wsguard.processes import script_parser
from wsguard.server.auth import Identity, Unauthorized
from wsguard.server.run import run_server


async def authenticate(connection: HTTPConnection) -> Identity:
    user = connection.headers.get("x-user")
    if not user:
        raise Unauthorized("missing X-User")
    expires_in = connection.headers.get("x-expires-in")
    expires_at = time.time() + float(expires_in) if expires_in else None
    return Identity(user, expires_at, connection.headers.get("x-admin") == "1")


def main() -> None:
    parser = script_parser()
    parser.add_argument("--backend", required=True)
    parser.add_argument("--ticket-ttl", type=float, default=30.0)
    parser.add_argument("--max-tickets-per-user", type=int, default=100)
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    args = parser.parse_args()
    settings = Settings(
        host=args.host,
        port=args.port,
        dev=args.dev,
        backend=args.backend,
        ticket_ttl=args.ticket_ttl,
        max_tickets_per_user=args.max_tickets_per_user,
        lease_ttl=args.lease_ttl,
        jwt_leeway=0.0,
        connect_rate_per_user=0.0,
        ticket_rate_per_user=0.0,
    )
    guard = WSGuard(settings, authenticate=authenticate)
    run_server(guard.app(), settings, guard.drain, guard.stop_admitting)


if __name__ == "__main__":
    main()
