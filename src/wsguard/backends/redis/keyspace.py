"""Redis key and channel names. User ids are percent-encoded, so no id can reach another's keys.

On a Redis Cluster (``hash_tags``), the user part of every per-user name is a hash tag,
``{<user>}``, so that all of one user's keys and their event channel hash to one slot: the
scripts that touch several of them, and publish on the channel, stay atomic on one node. A
percent-encoded id never holds a brace, so the tag is exactly the user. On a single Redis the
names stay as they always were, so that instances of an earlier version and this one share
their leases and threads during a rolling upgrade.
"""

import hashlib
from dataclasses import dataclass
from urllib.parse import quote, unquote


def _user(user_id: str) -> str:
    return quote(user_id, safe="")


def ticket_digest(ticket: str) -> str:
    """What Redis knows a ticket by: its SHA-256, so that reading Redis (a SCAN, MONITOR, a
    dump) gives no ticket that could be redeemed."""
    return hashlib.sha256(ticket.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Keys:
    """Every name the backend uses, under one prefix (several deployments may share a Redis)."""

    prefix: str = "wsguard"
    hash_tags: bool = False
    """Wrap the user in ``{}`` (a Redis Cluster hash tag): one slot per user."""

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"a key prefix must not hold braces (they are hash tags): {self.prefix!r}")

    def _tagged(self, user_id: str) -> str:
        encoded = _user(user_id)
        return f"{{{encoded}}}" if self.hash_tags else encoded

    def leases(self, user_id: str) -> str:
        """Hash: connection id -> lease (expiry, admission time, instance, session)."""
        return f"{self.prefix}:u:{self._tagged(user_id)}:leases"

    def lease_pattern(self) -> str:
        return f"{self.prefix}:u:*:leases"

    def thread_meta(self, user_id: str, thread_id: str) -> str:
        """Hash: the thread's epoch and last offset (outlives its events)."""
        return f"{self.prefix}:t:{self._tagged(user_id)}:{thread_id}:meta"

    def thread_log(self, user_id: str, thread_id: str) -> str:
        """Stream of the thread's retained events, with ids ``<offset>-0``."""
        return f"{self.prefix}:t:{self._tagged(user_id)}:{thread_id}:log"

    def idempotency(self, user_id: str, thread_id: str | None, key: str) -> str:
        """String: the offset and epoch of the first event published with idempotency ``key`` on
        the thread (or, thread None, to the user), kept for the idempotency window. In the user's
        slot on a cluster, so that the publish script checks and sets it atomically; the key is
        hashed, so its length and content never reach a key name."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        scope = (
            f"t:{self._tagged(user_id)}:{thread_id}"
            if thread_id is not None
            else f"u:{self._tagged(user_id)}"
        )
        return f"{self.prefix}:{scope}:idem:{digest}"

    def user_epoch(self, user_id: str) -> str:
        """The epoch carried by the user's user-level events. On a single Redis, one for the whole
        dataset; on a cluster, one per user, in the user's slot (a global key would live in another
        slot than the user's channel, and would say nothing of the node that holds the user)."""
        if self.hash_tags:
            return f"{self.prefix}:u:{self._tagged(user_id)}:epoch"
        return f"{self.prefix}:epoch"

    def user_events(self, user_id: str) -> str:
        """The pub/sub channel of one user's events: held by the instances with a connection of
        that user, and only by them."""
        return f"{self.user_events_prefix}{self._tagged(user_id)}"

    @property
    def user_events_prefix(self) -> str:
        return f"{self.prefix}:events:u:"

    def control(self, instance_id: str) -> str:
        """The pub/sub channel on which one instance is told to close its connections."""
        return f"{self.prefix}:control:{instance_id}"

    def instance(self, instance_id: str) -> str:
        """String: one instance's JSON report, expiring unless the instance renews it."""
        return f"{self.prefix}:instance:{instance_id}"

    def instance_pattern(self) -> str:
        return f"{self.prefix}:instance:*"

    def ticket(self, digest: str) -> str:
        """String: one unused ticket's user and payload, expiring with the ticket. A key of its
        own (its own slot on a cluster): redeeming knows only the ticket."""
        return f"{self.prefix}:ticket:{digest}"

    def user_tickets(self, user_id: str) -> str:
        """Sorted set: the user's unused tickets (digests) by expiry, for the per-user cap."""
        return f"{self.prefix}:u:{self._tagged(user_id)}:tickets"

    def shared_key(self, name: str) -> str:
        """String: a secret every instance uses (the session-signing key), set once."""
        return f"{self.prefix}:key:{name}"

    def user_of_leases(self, key: str) -> str:
        """The user id whose lease hash ``key`` is (the inverse of :meth:`leases`)."""
        tagged = key[len(self.prefix) + len(":u:") : -len(":leases")]
        if self.hash_tags:
            tagged = tagged.removeprefix("{").removesuffix("}")
        return unquote(tagged)
