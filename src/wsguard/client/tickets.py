"""Ticket providers: a one-time ticket from ``POST /api/tickets`` before every connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from wsguard.client.reconnect import parse_retry_after
from wsguard.client.session import CredentialsRefused, TicketProvider


def http_ticket_provider(
    base_url: str,
    token: str | Callable[[], Awaitable[str]],
    *,
    timeout: float = 10.0,
) -> TicketProvider:
    """A provider that asks the server at ``base_url`` for a ticket with a Bearer ``token``.

    A refusal raises :class:`CredentialsRefused`, so that the reconnect rules treat it like a
    refused upgrade (stop on 401 and 403, wait on 429 and 503).
    """

    async def fetch_ticket() -> str:
        import httpx  # only a client that uses tickets needs it

        bearer = token if isinstance(token, str) else await token()
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as http:
            try:
                response = await http.post("/api/tickets", headers={"Authorization": f"Bearer {bearer}"})
            except httpx.TransportError as error:
                raise OSError(f"ticket request failed: {error!r}") from error
        if response.status_code != 200:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise CredentialsRefused(response.status_code, retry_after)
        ticket = response.json().get("ticket")
        if not isinstance(ticket, str):
            raise CredentialsRefused(response.status_code)
        return ticket

    return fetch_ticket
