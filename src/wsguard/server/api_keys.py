"""API keys for the server API: ``POST /api/publish`` and every ``/api/admin/*`` endpoint.

A key stands for a service, not a user: it opens no socket and gets no ticket. It comes as
``X-API-Key: KEY`` or ``Authorization: apikey KEY``. A presented key is compared with every
configured one, always all of them, in constant time (their SHA-256 digests, so neither which
key matched nor a key's length shows in the timing); several keys are accepted at once, so a
key is rotated by adding the new one, moving the callers, then removing the old one.
``--api-key-file`` is read again when it changes. Every key is handed to the log redaction.
"""

import hashlib
import hmac
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection

from wsguard import logs
from wsguard.server.auth import Identity, Unauthorized
from wsguard.settings import Settings, api_key_problem

logger = logging.getLogger("wsguard")

API_KEY_IDENTITY = Identity("api-key", None, admin=True)
"""Who a valid key is to the endpoints: an admin with no user id of its own."""
FILE_CHECK_SECONDS = 1.0
"""How often, at most, ``--api-key-file`` is looked at for a change."""


def read_key_file(path: str) -> tuple[str, ...]:
    """One key a line; blank lines and ``#`` comment lines left out. ValueError naming a bad line."""
    keys = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        problem = api_key_problem(key)
        if problem is not None:
            raise ValueError(f"line {number}: {problem}")
        keys.append(key)
    return tuple(keys)


def presented_key(headers: Headers) -> str | None:
    """The key of ``X-API-Key``, else of ``Authorization: apikey``; None when neither is there.

    One pass over the raw headers (their names are lower case in ASGI), the first of each name
    counting, as ``Headers.get`` takes it: every admin request without a key, a bearer token's
    too, asks, and ``Headers.get`` raises and catches a ``KeyError`` for an absent name."""
    authorization: bytes | None = None
    for name, value in headers.raw:
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
        if name == b"authorization" and authorization is None:
            authorization = value
    scheme, _, rest = (authorization or b"").decode("latin-1").partition(" ")
    return rest.strip() if scheme.lower() == "apikey" else None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ApiKeys:
    def __init__(
        self, keys: Sequence[str] = (), path: str | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """OSError or ValueError when ``path`` cannot be read or holds a bad key."""
        self._given = tuple(keys)
        self._path = path
        self._clock = clock
        self._checked_at = -math.inf
        self._mtime: float | None = None
        self._digests: tuple[bytes, ...] = ()
        self._use(read_key_file(path) if path else ())
        if path:
            self._mtime = os.stat(path).st_mtime

    @classmethod
    def from_settings(cls, settings: Settings) -> "ApiKeys":
        return cls(settings.api_keys, settings.api_key_file)

    def __len__(self) -> int:
        return len(self._digests)

    def _use(self, from_file: tuple[str, ...]) -> None:
        keys = self._given + from_file
        logs.hide(keys)
        self._digests = tuple(_digest(key) for key in keys)

    def identify(self, connection: HTTPConnection) -> Identity | None:
        """The API key's identity; None without one; :class:`Unauthorized` for a wrong one."""
        presented = presented_key(connection.headers)
        if presented is None:
            return None
        self._reload_if_changed()
        wanted = _digest(presented)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(wanted, digest)
        if not matched:
            logger.debug("API key refused: it is none of the %d configured", len(self._digests))
            raise Unauthorized("invalid API key")
        return API_KEY_IDENTITY

    def _reload_if_changed(self) -> None:
        now = self._clock()
        if self._path is None or now - self._checked_at < FILE_CHECK_SECONDS:
            return
        self._checked_at = now
        try:
            mtime = os.stat(self._path).st_mtime
            if mtime == self._mtime:
                return
            self._mtime = mtime  # a bad file is reported once, not on every check
            self._use(read_key_file(self._path))
            logger.info("API keys read again from %s: %d in all", self._path, len(self._digests))
        except (OSError, ValueError) as error:
            if self._mtime is not None:
                logger.warning("keeping the previous API keys: cannot read %s: %s", self._path, error)
            if isinstance(error, OSError):
                self._mtime = None
