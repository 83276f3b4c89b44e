"""Who is online: a user's connections per instance, and the instances of a cluster.

One source of truth each: the local registry on one process; on Redis, the cluster's leases
(the same records admission counts), never a second table that could disagree with them.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Presence:
    """One user's open connections: how many, and on which instances."""

    user_id: str
    connections: int
    instances: Mapping[str, int] = field(default_factory=dict)

    @property
    def online(self) -> bool:
        return self.connections > 0

    def as_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "online": self.online,
            "connections": self.connections,
            "instances": dict(self.instances),
        }


def presence_of(user_id: str, instances: Mapping[str, int]) -> Presence:
    held = {instance: count for instance, count in instances.items() if count}
    return Presence(user_id, sum(held.values()), held)


@dataclass(frozen=True, slots=True)
class LeasedConnection:
    """A connection as the cluster's lease records it (on any instance)."""

    connection_id: str
    user_id: str
    instance_id: str
    session_id: str
    opened_at: float


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What one instance reports about itself (on Redis, under a key that expires with it)."""

    instance_id: str
    host: str
    pid: int
    started_at: float
    version: str
    connections: int
    users: int
    rss_bytes: int
    backend_up: bool
    reported_at: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "InstanceInfo":
        return cls(
            instance_id=str(body["instance_id"]),
            host=str(body["host"]),
            pid=int(body["pid"]),
            started_at=float(body["started_at"]),
            version=str(body["version"]),
            connections=int(body["connections"]),
            users=int(body["users"]),
            rss_bytes=int(body["rss_bytes"]),
            backend_up=bool(body["backend_up"]),
            reported_at=float(body["reported_at"]),
        )


class ClusterDirectory(Protocol):
    """A clustered backend's view of every instance; each call may raise ``BackendUnavailable``."""

    @property
    def instance_id(self) -> str: ...

    async def leases_of(self, user_id: str) -> list[LeasedConnection]:
        """The user's live leases, oldest first."""
        ...

    async def lease_counts(self) -> dict[str, dict[str, int]]:
        """user id -> instance id -> live leases, for every user online anywhere."""
        ...

    async def instances(self) -> list[InstanceInfo]:
        """The instances whose registration has not expired."""
        ...

    async def register(self, info: InstanceInfo, ttl: float) -> None:
        """Publish this instance's report for ``ttl`` seconds."""
        ...

    async def unregister(self, instance_id: str) -> None: ...

    async def disconnect(self, instance_id: str, connection_id: str) -> bool:
        """Ask the instance to close its connection with 4003; False when no instance listens."""
        ...

    async def forward_command(self, instance_id: str, connection_id: str, user_id: str, text: str) -> bool:
        """Hand a command for one of its streams to the instance; False when no instance listens."""
        ...
