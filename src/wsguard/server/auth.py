"""Who is connecting: JWT bearer tokens (and, through :class:`Identity`, any embedding's own auth)."""

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.requests import HTTPConnection

from wsguard.server.keys import JwksFile, KeySource, PublicKeyFile, SecretKey, VerificationKey
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


VERIFIED_TOKENS = 4096
"""How many verified tokens are remembered at most (the oldest verification goes first)."""

RECHECK_SECONDS = 60.0
"""How long a verified token is remembered before its signature is checked again."""


class TokenAuthority:
    """Verifies JWTs whose ``sub`` is the user id and whose ``exp`` is required; in ``--dev`` it
    also issues HS256 tokens with a secret of its own."""

    def __init__(
        self,
        sources: list[KeySource],
        leeway: float,
        issuing_secret: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sources = sources
        self._clock = clock
        self._leeway = leeway
        self._issuing_secret = issuing_secret
        self._verified: OrderedDict[str, tuple[float, Identity]] = OrderedDict()
        """Token -> (when its signature was checked, monotonic; its identity), oldest first."""

    @classmethod
    def from_settings(cls, settings: Settings, dev_secret: str) -> "TokenAuthority":
        """Keys from the settings; with ``--dev`` and no secret, the random dev secret too."""
        sources: list[KeySource] = []
        if settings.jwt_public_key:
            sources.append(PublicKeyFile(settings.jwt_public_key))
        if settings.jwks_file:
            sources.append(JwksFile(settings.jwks_file))
        secret = settings.jwt_secret or (dev_secret if settings.dev else None)
        if secret:
            sources.append(SecretKey(secret))
        return cls(sources, settings.jwt_leeway, secret if settings.dev else None)

    def verify(self, token: str) -> Identity:
        """The identity of a valid token; a reconnect storm re-using one token verifies it once.

        Verified tokens are remembered for at most a minute (so a key removed from a JWKS file
        stops working within a minute); expiry is checked on every use.
        """
        now = self._clock()
        remembered = self._verified.get(token)
        if remembered is not None and now - remembered[0] < RECHECK_SECONDS:
            identity = remembered[1]
        else:
            identity = self._verify_signature(token)
            self._verified[token] = (now, identity)
            self._verified.move_to_end(token)
            if len(self._verified) > VERIFIED_TOKENS:
                self._verified.popitem(last=False)
        if identity.expires_at is not None and identity.expires_at <= time.time() - self._leeway:
            raise Unauthorized("Signature has expired")
        return identity

    def prune(self, now: float) -> int:
        """Forget the tokens verified more than a minute ago (the sweeper's chore): a token in
        use is checked again anyway, and one no longer used is held by nothing."""
        stale = 0
        while self._verified:
            token, (checked_at, _) = next(iter(self._verified.items()))
            if now - checked_at < RECHECK_SECONDS:
                break
            del self._verified[token]
            stale += 1
        return stale

    def __len__(self) -> int:
        """How many verified tokens are remembered."""
        return len(self._verified)

    def _verify_signature(self, token: str) -> Identity:
        if len(self._sources) == 1 and isinstance(self._sources[0], SecretKey | PublicKeyFile):
            return self._decode(token, self._sources[0].key)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise Unauthorized(str(error)) from error
        for source in self._sources:
            found = source.key_for(header)
            if found is not None:
                return self._decode(token, found)
        raise Unauthorized(f"no key for a token signed with {str(header.get('alg'))[:16]}")

    def _decode(self, token: str, found: VerificationKey) -> Identity:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                found.key,
                algorithms=list(found.algorithms),
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
        """A dev token; only a ``--dev`` server has a secret to sign with."""
        if self._issuing_secret is None:
            raise RuntimeError("tokens are issued only in --dev")
        now = time.time()
        claims: dict[str, Any] = {"sub": user_id, "iat": int(now), "exp": int(now + ttl)}
        if admin:
            claims["admin"] = True
        return jwt.encode(claims, self._issuing_secret, algorithm="HS256")

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
