"""One-time tickets, so that a browser (which cannot set headers) can connect without a token in the URL.

The backend keeps them (in this process, or in Redis where every instance can redeem them);
here is what a ticket stands for: the whole :class:`Identity` the upgrade needs, as JSON, so
that no instance ever unpickles what another wrote.
"""

import json
import logging
from typing import Any

from wsguard import ids
from wsguard.backends.base import Backend
from wsguard.server.auth import Identity

logger = logging.getLogger("wsguard")

IDENTITY_FORMAT = 1
"""Bumped if a ticket's identity changes shape; an instance refuses a format it does not know."""


def identity_to_json(identity: Identity) -> str:
    """Every field of :class:`Identity`, named one by one: a field added there must be added here
    (a test compares the two), never carried by accident."""
    body: dict[str, Any] = {
        "v": IDENTITY_FORMAT,
        "user_id": identity.user_id,
        "expires_at": identity.expires_at,
        "admin": identity.admin,
    }
    return json.dumps(body, separators=(",", ":"))


def identity_from_json(text: str) -> Identity:
    """The identity :func:`identity_to_json` wrote; ValueError for anything else."""
    body = json.loads(text)
    if not isinstance(body, dict) or body.get("v") != IDENTITY_FORMAT:
        raise ValueError("not a ticket identity of a known format")
    user_id, expires_at, admin = body.get("user_id"), body.get("expires_at"), body.get("admin")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("user_id must be a non-empty string")
    if expires_at is not None and (not isinstance(expires_at, int | float) or isinstance(expires_at, bool)):
        raise ValueError("expires_at must be a number or null")
    if not isinstance(admin, bool):
        raise ValueError("admin must be a boolean")
    return Identity(user_id, None if expires_at is None else float(expires_at), admin)


class Tickets:
    """Single-use, bound to the identity that asked for them, and short-lived.

    A user holds at most ``max_per_user`` unused, unexpired tickets (0 = no cap), so that asking
    for tickets cannot grow the server (or Redis) without bound. Both calls raise
    :class:`~wsguard.backends.base.BackendUnavailable` when the backend cannot answer.
    """

    def __init__(self, backend: Backend, ttl: float, max_per_user: int = 0) -> None:
        self._backend = backend
        self.ttl = ttl
        self.max_per_user = max_per_user

    async def issue(self, identity: Identity) -> str | None:
        """A new ticket, or None when the user already holds ``max_per_user`` of them."""
        ticket = ids.new_id(ids.TICKET)
        payload = identity_to_json(identity)
        backend, user_id = self._backend, identity.user_id
        kept = await backend.issue_ticket(ticket, user_id, payload, self.ttl, self.max_per_user)
        return ticket if kept else None

    async def redeem(self, ticket: str) -> Identity | None:
        """The identity of an unused, unexpired ticket; the ticket is gone afterwards either way.
        Something that is not shaped like a ticket is refused without asking the backend."""
        if not ids.is_id(ticket, ids.TICKET):
            return None
        payload = await self._backend.redeem_ticket(ticket)
        if payload is None:
            return None
        try:
            return identity_from_json(payload)
        except ValueError as error:
            logger.warning("a ticket's identity cannot be read (%s): refused", error)
            return None
