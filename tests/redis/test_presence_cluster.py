"""Two instances on one Redis: presence from the leases, both instances listed, a killed one gone
within the TTL."""

import asyncio
import time

from tests.redis.cluster_clients import close_code
from tests.redis.conftest import LEASE_TTL, StartInstance
from wsguard.processes import eventually
from wsguard.processes.clients import open_socket


def test_presence_and_instances_span_the_cluster_and_a_killed_instance_leaves_within_the_ttl(
    start_instance: StartInstance,
) -> None:
    first, second = start_instance(), start_instance()
    admin = first.auth("cluster-admin", admin=True)
    token = first.token("cluster-carol")

    def instances() -> list[dict[str, object]]:
        found: list[dict[str, object]] = first.http.get("/api/admin/instances", headers=admin).json()
        return found

    listed = eventually(instances, lambda found: len(found) == 2, timeout=10, what="two instances")
    assert {i["pid"] for i in listed} == {first.pid, second.pid}, listed
    ids = {i["pid"]: str(i["instance_id"]) for i in listed}
    assert all(i["backend_up"] is True for i in listed), listed

    async def scenario() -> None:
        here = [(await open_socket(first.ws_url, token))[0] for _ in range(2)]
        there = (await open_socket(second.ws_url, token))[0]
        presence = second.http.get(
            "/api/admin/presence", params={"user_id": "cluster-carol"}, headers=admin
        ).json()
        assert presence["connections"] == 3, presence
        assert presence["instances"] == {ids[first.pid]: 2, ids[second.pid]: 1}, presence
        view = first.http.get("/api/admin/users/cluster-carol", headers=admin).json()
        by_instance = sorted((c["instance_id"], c["here"]) for c in view["connection_list"])
        assert by_instance == sorted(
            [(ids[first.pid], True), (ids[first.pid], True), (ids[second.pid], False)]
        ), view
        everyone = first.http.get("/api/admin/presence", headers=admin).json()["users"]
        assert [u["connections"] for u in everyone if u["user_id"] == "cluster-carol"] == [3], everyone
        eventually(
            instances,
            lambda found: sum(int(str(i["connections"])) for i in found) == 3,
            timeout=LEASE_TTL * 2,
        )
        dave = first.token("cluster-dave")
        dave_sockets = [(await open_socket(server.ws_url, dave))[0] for server in (first, second)]
        closed = first.http.delete("/api/admin/users/cluster-dave", headers=admin)
        assert closed.json() == {"closed": 2}
        for socket in dave_sockets:
            assert await close_code(socket) == 4003
        second.kill()
        killed_at = time.monotonic()
        eventually(instances, lambda found: len(found) == 1, timeout=LEASE_TTL + 3, what="killed one gone")
        gone_after = time.monotonic() - killed_at
        assert gone_after <= LEASE_TTL + 0.75, f"listed {gone_after:.2f}s after the kill, TTL {LEASE_TTL}s"
        eventually(
            lambda: first.http.get("/api/presence", headers={"Authorization": f"Bearer {token}"}).json(),
            lambda seen: seen["instances"] == {ids[first.pid]: 2},
            timeout=LEASE_TTL + 3,
            what="only the leases of the live instance",
        )
        del there
        for socket in here:
            await socket.close()

    asyncio.run(scenario())
