"""Who is connecting: JWT bearer tokens (and, through :class:`Identity`, any embedding's own auth)."""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.requests import HTTPConnection

from wsguard.settings import Settings


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. ``expires_at`` (epoch seconds) ends a session when it passes."""

    user_id: str
    expires_at: float | None = None
    admin: bool = False


class Unauthorized(Exception):
    """Credentials are missing or invalid; the request is answered with 401."""


Authenticate = Callable[[HTTPConnection], Awaitable[Identity]]
"""Turn an upgrade or HTTP request into an :class:`Identity`, or raise :class:`Unauthorized`."""


class TokenAuthority:
    """Verifies (and, in ``--dev``, issues) HS256 JWTs whose ``sub`` is the user id."""

    algorithms = ("HS256",)

    def __init__(self, secret: str, leeway: float) -> None:
        self._secret = secret
        self._leeway = leeway

    @classmethod
    def from_settings(cls, settings: Settings, dev_secret: str) -> "TokenAuthority":
        return cls(settings.jwt_secret or dev_secret, settings.jwt_leeway)

    def verify(self, token: str) -> Identity:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=list(self.algorithms),
                leeway=self._leeway,
                options={"require": ["sub", "exp"]},
            )
        except jwt.PyJWTError as error:
            raise Unauthorized(str(error)) from error
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("sub must be a non-empty string")
        return Identity(subject, float(claims["exp"]), claims.get("admin") is True)

    def issue(self, user_id: str, *, admin: bool = False, ttl: float = 3600.0) -> str:
        now = time.time()
        claims = {"sub": user_id, "iat": int(now), "exp": int(now + ttl)}
        if admin:
            claims["admin"] = True
        return jwt.encode(claims, self._secret, algorithm=self.algorithms[0])

    async def authenticate(self, connection: HTTPConnection) -> Identity:
        """The bearer token of ``Authorization``."""
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token")
        return self.verify(token.strip())

    def verify_refresh(self, token: str, user_id: str) -> float | None:
        """A refresh token must be valid and for the same user."""
        try:
            identity = self.verify(token)
        except Unauthorized as error:
            raise PermissionError(str(error)) from error
        if identity.user_id != user_id:
            raise PermissionError("token is for another user")
        return identity.expires_at
