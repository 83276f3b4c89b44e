"""Presence answers: who is online, from the cluster's leases when there are any and the backend
answers, else from this instance's registry (the same records that admission counts)."""

import contextlib
from collections import Counter

from wsguard.backends.base import Backend, BackendUnavailable
from wsguard.backends.presence import Presence, presence_of
from wsguard.core.registry import Registry


class PresenceAnswers:
    """Reads presence; it holds no record of its own."""

    __slots__ = ("_backend", "_instance_id", "_registry")

    def __init__(self, backend: Backend, registry: Registry, instance_id: str) -> None:
        self._backend = backend
        self._registry = registry
        self._instance_id = instance_id

    async def of_user(self, user_id: str) -> Presence:
        """How many connections the user holds, per instance."""
        directory = self._backend.directory
        if directory is not None and self._backend.up:
            with contextlib.suppress(BackendUnavailable):
                leases = await directory.leases_of(user_id)
                return presence_of(user_id, Counter(lease.instance_id for lease in leases))
        return presence_of(user_id, {self._instance_id: len(self._registry.handles_of(user_id))})

    async def online_users(self) -> list[Presence]:
        """Every user online (cluster-wide on Redis), most connections first."""
        directory = self._backend.directory
        counts: dict[str, dict[str, int]] | None = None
        if directory is not None and self._backend.up:
            with contextlib.suppress(BackendUnavailable):
                counts = await directory.lease_counts()
        if counts is None:
            counts = {}
            for handle in self._registry.handles():
                mine = counts.setdefault(handle.user_id, {self._instance_id: 0})
                mine[self._instance_id] += 1
        found = [presence_of(user_id, instances) for user_id, instances in counts.items()]
        return sorted(found, key=lambda p: (-p.connections, p.user_id))
