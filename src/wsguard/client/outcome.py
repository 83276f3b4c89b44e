"""Why a client stopped, as data the application can branch on."""

from __future__ import annotations

from dataclasses import dataclass

from wsguard.errors import WSGuardError


@dataclass(frozen=True)
class ClosedReason:
    """Why the client stopped for good.

    ``code`` and ``reason`` are the last close code and reason (1006 when the network dropped
    the connection), ``http_status`` and ``retry_after`` the last refused upgrade, ``why`` the
    rule that decided to stop, and ``by_client`` whether the application asked to close.
    """

    why: str
    code: int | None = None
    reason: str = ""
    http_status: int | None = None
    retry_after: float | None = None
    by_client: bool = False


class ClientClosed(WSGuardError):
    """The client stopped (or never connected); ``reason`` says why."""

    def __init__(self, reason: ClosedReason) -> None:
        super().__init__(reason.why)
        self.reason = reason
