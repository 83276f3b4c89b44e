"""One process's one-time tickets: the memory backend's store, with the clock passed in.

A ticket's payload is opaque here (the server serializes the identity it stands for), so the
memory and Redis backends keep the same thing.
"""


class TicketTable:
    """Single-use, short-lived tickets, at most ``max_per_user`` unused ones per user.

    Expired tickets count toward the cap until :meth:`prune` drops them (the sweeper's chore),
    so that issuing never has to scan the table.
    """

    def __init__(self) -> None:
        self._issued: dict[str, tuple[str, str, float]] = {}
        """Ticket -> (user id, payload, deadline on the caller's clock)."""
        self._outstanding: dict[str, int] = {}

    def issue(self, ticket: str, user_id: str, payload: str, deadline: float, max_per_user: int) -> bool:
        """Keep ``ticket`` until ``deadline``; False (nothing kept) when the user already holds
        ``max_per_user`` of them (0 = no cap)."""
        held = self._outstanding.get(user_id, 0)
        if max_per_user and held >= max_per_user:
            return False
        self._issued[ticket] = (user_id, payload, deadline)
        self._outstanding[user_id] = held + 1
        return True

    def redeem(self, ticket: str, now: float) -> str | None:
        """The payload of an unused, unexpired ticket; the ticket is gone afterwards either way."""
        entry = self._issued.pop(ticket, None)
        if entry is None:
            return None
        user_id, payload, deadline = entry
        self._forget(user_id)
        return None if deadline < now else payload

    def prune(self, now: float) -> int:
        """Drop the expired tickets; how many."""
        expired = [ticket for ticket, (_, _, deadline) in self._issued.items() if deadline < now]
        for ticket in expired:
            user_id, _, _ = self._issued.pop(ticket)
            self._forget(user_id)
        return len(expired)

    def _forget(self, user_id: str) -> None:
        left = self._outstanding.get(user_id, 1) - 1
        if left > 0:
            self._outstanding[user_id] = left
        else:
            self._outstanding.pop(user_id, None)

    def __len__(self) -> int:
        return len(self._issued)
