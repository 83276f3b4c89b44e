"""A thread's retained events over HTTP (``GET /api/threads/{thread_id}/events``), so that an
application draws a thread first and then subscribes from where it stopped, without a gap:

    history = await client.history("chat-1")
    draw(history.events)
    await client.subscribe("chat-1", since=history.position)

httpx is imported on first use, as for tickets: a client that never asks needs only websockets.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from wsguard.client.reconnect import parse_retry_after
from wsguard.core.frames import ThreadHistory, parse_history
from wsguard.errors import WSGuardError


class HistoryRefused(WSGuardError):
    """The server answered the history request with an error status."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"history refused with HTTP {status}: {message}")
        self.status = status
        self.retry_after = retry_after


def http_base(socket_url: str) -> str:
    """The HTTP origin of a socket URL: ``ws://host:port/ws`` -> ``http://host:port``."""
    parts = urlsplit(socket_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


async def fetch_history(
    base_url: str,
    thread_id: str,
    *,
    token: str,
    since: int = 0,
    limit: int = 100,
    user_id: str | None = None,
    timeout: float = 10.0,
) -> ThreadHistory:
    """Up to ``limit`` events of the caller's thread after offset ``since`` (another user's with
    an admin ``token`` and ``user_id``). :class:`HistoryRefused` on an error status."""
    import httpx

    params: dict[str, str | int] = {"since": since, "limit": limit}
    if user_id is not None:
        params["user_id"] = user_id
    path = f"/api/threads/{quote(thread_id, safe='')}/events"
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as http:
        try:
            response = await http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        except httpx.TransportError as error:
            raise OSError(f"history request failed: {error!r}") from error
    if response.status_code != 200:
        try:
            message = str(response.json().get("error", ""))
        except ValueError:
            message = response.text[:200]
        raise HistoryRefused(
            response.status_code, message, parse_retry_after(response.headers.get("Retry-After"))
        )
    return parse_history(response.content)
