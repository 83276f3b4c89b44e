"""Presence on one instance: the admin endpoints, a user's own presence, closing from the admin API."""

import asyncio

from wsguard.processes import ServerProcess, eventually
from wsguard.processes.clients import open_socket


def test_presence_follows_connections_and_needs_admin_rights_except_for_oneself(
    server: ServerProcess,
) -> None:
    admin = server.auth("presence-admin", admin=True)
    token = server.token("presence-alice")
    mine = {"Authorization": f"Bearer {token}"}

    def presence(user_id: str) -> dict[str, object]:
        response = server.http.get("/api/admin/presence", params={"user_id": user_id}, headers=admin)
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body

    async def scenario() -> None:
        assert presence("presence-alice") == {
            "user_id": "presence-alice", "online": False, "connections": 0, "instances": {},
        }  # fmt: skip
        sockets = [(await open_socket(server.ws_url, token))[0] for _ in range(3)]
        seen = presence("presence-alice")
        assert seen["connections"] == 3, seen
        assert seen["online"] is True
        instances = seen["instances"]
        assert isinstance(instances, dict)
        assert list(instances.values()) == [3], seen
        own = server.http.get("/api/presence", headers=mine).json()
        assert own == seen
        everyone = server.http.get("/api/admin/presence", headers=admin).json()
        assert {"user_id": "presence-alice", "online": True, "connections": 3, "instances": instances} in (
            everyone["users"]
        )
        assert (
            server.http.get("/api/admin/presence", params={"user_id": "x"}, headers=mine).status_code == 403
        )
        assert server.http.get("/api/admin/presence", params={"user_id": "x"}).status_code == 401
        assert server.http.get("/api/presence").status_code == 401
        await sockets[0].close()
        await sockets[1].close()
        eventually(
            lambda: presence("presence-alice")["connections"], lambda n: n == 1, timeout=5, what="1 left"
        )
        await sockets[2].close()
        eventually(
            lambda: presence("presence-alice")["online"], lambda on: on is False, timeout=5, what="offline"
        )

    asyncio.run(scenario())


def test_user_view_lists_each_connection_and_closes_one_with_4003(server: ServerProcess) -> None:
    admin = server.auth("presence-admin", admin=True)
    token = server.token("presence-bob")

    async def scenario() -> None:
        opened = [await open_socket(server.ws_url, token) for _ in range(2)]
        sockets = [socket for socket, _ in opened]
        welcomes = [welcome for _, welcome in opened]
        view = server.http.get("/api/admin/users/presence-bob", headers=admin).json()
        listed = view["connection_list"]
        assert [c["connection_id"] for c in listed] == [w["connection_id"] for w in welcomes]
        assert all(c["client_address"] == "127.0.0.1" and c["here"] for c in listed), listed
        assert all(c["user_agent"].startswith("Python/") for c in listed), listed
        target = listed[1]["connection_id"]
        as_bob = {"Authorization": f"Bearer {token}"}
        assert server.http.get("/api/admin/users/presence-bob", headers=as_bob).status_code == 403
        closed = server.http.delete(f"/api/admin/connections/{target}", headers=admin)
        assert closed.json() == {"closed": 1}
        await sockets[1].wait_closed()
        assert sockets[1].close_code == 4003
        assert sockets[0].close_code is None
        again = server.http.delete(f"/api/admin/connections/{target}", headers=admin)
        assert again.status_code == 404
        await sockets[0].close()

    asyncio.run(scenario())


def test_instances_lists_this_one(server: ServerProcess) -> None:
    admin = server.auth("presence-admin", admin=True)
    assert server.http.get("/api/admin/leakcheck", headers=admin).json() is None
    assert server.http.get("/api/admin/leakcheck.html", headers=admin).status_code == 404
    instances = server.http.get("/api/admin/instances", headers=admin).json()
    assert len(instances) == 1
    assert instances[0]["pid"] == server.pid
    assert instances[0]["rss_bytes"] > 1_000_000
    assert instances[0]["backend_up"] is True
