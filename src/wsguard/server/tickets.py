"""One-time tickets, so that a browser (which cannot set headers) can connect without a token in the URL."""

import time

from wsguard.ids import TICKET, new_id
from wsguard.server.auth import Identity


class Tickets:
    """Single-use, bound to the identity that asked for them, and short-lived."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._issued: dict[str, tuple[Identity, float]] = {}

    def issue(self, identity: Identity) -> str:
        ticket = new_id(TICKET)
        self._issued[ticket] = (identity, time.monotonic() + self.ttl)
        return ticket

    def redeem(self, ticket: str) -> Identity | None:
        """The identity of an unused, unexpired ticket; the ticket is gone afterwards either way."""
        entry = self._issued.pop(ticket, None)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def prune(self, now: float) -> int:
        expired = [ticket for ticket, (_, deadline) in self._issued.items() if deadline < now]
        for ticket in expired:
            del self._issued[ticket]
        return len(expired)

    def __len__(self) -> int:
        return len(self._issued)
