"""``DELETE /api/admin/users/{user_id}/connections`` closes the user's connections on every
instance (it used to close only those of the instance the request reached, which behind a load
balancer was a matter of luck); the listing beside it stays this instance's."""

import asyncio

from tests.redis.cluster_clients import close_code
from tests.redis.conftest import LEASE_TTL, StartInstance
from wsguard.processes.clients import open_socket


def test_disconnecting_a_user_reaches_the_connections_on_the_other_instance(
    start_instance: StartInstance,
) -> None:
    a, b = start_instance(), start_instance()
    admin = a.auth("operator", admin=True)
    token = a.token("kicked-everywhere")

    async def scenario() -> None:
        sockets = [(await open_socket(instance.ws_url, token))[0] for instance in (a, b, b)]
        listed = a.http.get("/api/admin/users/kicked-everywhere/connections", headers=admin).json()
        assert len(listed) == 1, "the listing is this instance's (its unsent bytes are known here only)"
        closed = a.http.delete("/api/admin/users/kicked-everywhere/connections", headers=admin)
        assert closed.status_code == 200, closed.text
        assert closed.json() == {"closed": 3}
        assert [await close_code(socket) for socket in sockets] == [4003, 4003, 4003]

    asyncio.run(scenario())
    for instance in (a, b):
        instance.wait_idle(timeout=LEASE_TTL * 2)
