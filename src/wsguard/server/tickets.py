"""One-time tickets, so that a browser (which cannot set headers) can connect without a token in the URL."""

import time

from wsguard.ids import TICKET, new_id
from wsguard.server.auth import Identity


class Tickets:
    """Single-use, bound to the identity that asked for them, and short-lived.

    A user holds at most ``max_per_user`` unused, unexpired tickets (0 = no cap), so that asking
    for tickets cannot grow the server without bound.
    """

    def __init__(self, ttl: float, max_per_user: int = 0) -> None:
        self.ttl = ttl
        self.max_per_user = max_per_user
        self._issued: dict[str, tuple[Identity, float]] = {}
        self._outstanding: dict[str, int] = {}

    def issue(self, identity: Identity) -> str | None:
        """A new ticket, or None when the user already holds ``max_per_user`` of them (expired
        ones count until the sweeper prunes them, within its interval)."""
        held = self._outstanding.get(identity.user_id, 0)
        if self.max_per_user and held >= self.max_per_user:
            return None
        ticket = new_id(TICKET)
        self._issued[ticket] = (identity, time.monotonic() + self.ttl)
        self._outstanding[identity.user_id] = held + 1
        return ticket

    def redeem(self, ticket: str) -> Identity | None:
        """The identity of an unused, unexpired ticket; the ticket is gone afterwards either way."""
        entry = self._issued.pop(ticket, None)
        if entry is None:
            return None
        self._forget(entry[0].user_id)
        if entry[1] < time.monotonic():
            return None
        return entry[0]

    def prune(self, now: float) -> int:
        expired = [ticket for ticket, (_, deadline) in self._issued.items() if deadline < now]
        for ticket in expired:
            identity, _ = self._issued.pop(ticket)
            self._forget(identity.user_id)
        return len(expired)

    def _forget(self, user_id: str) -> None:
        left = self._outstanding.get(user_id, 1) - 1
        if left > 0:
            self._outstanding[user_id] = left
        else:
            self._outstanding.pop(user_id, None)

    def __len__(self) -> int:
        return len(self._issued)
