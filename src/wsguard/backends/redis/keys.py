"""Redis key and channel names. User ids are percent-encoded, so no id can reach another's keys."""

from dataclasses import dataclass
from urllib.parse import quote, unquote


def _user(user_id: str) -> str:
    return quote(user_id, safe="")


@dataclass(frozen=True, slots=True)
class Keys:
    """Every name the backend uses, under one prefix (several deployments may share a Redis)."""

    prefix: str = "wsguard"

    def leases(self, user_id: str) -> str:
        """Hash: connection id -> lease (expiry, admission time, instance, session)."""
        return f"{self.prefix}:u:{_user(user_id)}:leases"

    def lease_pattern(self) -> str:
        return f"{self.prefix}:u:*:leases"

    def thread_meta(self, user_id: str, thread_id: str) -> str:
        """Hash: the thread's epoch and last offset (outlives its events)."""
        return f"{self.prefix}:t:{_user(user_id)}:{thread_id}:meta"

    def thread_log(self, user_id: str, thread_id: str) -> str:
        """Stream of the thread's retained events, with ids ``<offset>-0``."""
        return f"{self.prefix}:t:{_user(user_id)}:{thread_id}:log"

    @property
    def epoch(self) -> str:
        """The dataset's epoch, carried by user-level events."""
        return f"{self.prefix}:epoch"

    @property
    def events(self) -> str:
        """The pub/sub channel every instance listens to for events."""
        return f"{self.prefix}:events"

    def control(self, instance_id: str) -> str:
        """The pub/sub channel on which one instance is told to close its connections."""
        return f"{self.prefix}:control:{instance_id}"

    def instance(self, instance_id: str) -> str:
        """String: one instance's JSON report, expiring unless the instance renews it."""
        return f"{self.prefix}:instance:{instance_id}"

    def instance_pattern(self) -> str:
        return f"{self.prefix}:instance:*"

    def user_of_leases(self, key: str) -> str:
        """The user id whose lease hash ``key`` is (the inverse of :meth:`leases`)."""
        return unquote(key[len(self.prefix) + len(":u:") : -len(":leases")])
